from __future__ import annotations

import click

from ..app import App, read_message, json_option
from ..completion import complete_actor


@click.command("channel")
@click.argument("actor", shell_complete=complete_actor)
@click.argument("initial_message", default="{}", required=False)
@click.option("--linger", type=click.FloatRange(min=0), default=1.0, show_default=True, metavar="SECONDS",
              help="After input ends, keep printing replies until the channel is quiet this long (at most 10x).")
@json_option
@click.pass_obj
def command(app: App, actor: str, initial_message: str, linger: float) -> None:
    """Open a channel to ACTOR and talk on it: one JSON message per line.

    INITIAL_MESSAGE (default {}) may be JSON, '-' for stdin or '@file'.
    Messages from the actor are printed as they arrive: pretty JSON on a
    terminal, one compact JSON document per line otherwise.  EOF (Ctrl-D),
    Ctrl-C or a /close line closes the channel and exits 0; so does the actor
    closing it.
    """
    initial = read_message(initial_message, "INITIAL_MESSAGE")
    from ..session import run_session

    run_session(app.socket, actor, initial, app.timeout, linger)
