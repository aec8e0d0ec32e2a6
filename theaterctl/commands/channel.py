from __future__ import annotations

import sys

import click

from ..app import App, json_option, read_message, resolve_actor
from ..completion import complete_actor


@click.command("channel", short_help="Open a channel and talk on it, line by line.")
@click.argument("actor", shell_complete=complete_actor)
@click.argument("initial_message", default="{}", required=False)
@click.option("--linger", type=click.FloatRange(min=0), default=1.0, show_default=True, metavar="SECONDS",
              help="After input ends, keep printing replies until the channel is quiet this long (at most 10x).")
@click.option("--pretty", is_flag=True, help="Print incoming messages as indented JSON (default: one line each).")
@click.option("--skip-bad-lines", is_flag=True,
              help="Piped: skip a line that is not JSON (with a note) instead of ending with exit 2.")
@json_option
@click.pass_obj
def command(app: App, actor: str, initial_message: str, linger: float, pretty: bool, skip_bad_lines: bool) -> int:
    """Open a channel to ACTOR and talk on it: one JSON message per line.

    INITIAL_MESSAGE (default {}) may be JSON, '-' for stdin or '@file'.
    Messages from the actor are printed as they arrive, one compact JSON
    document per line (--pretty indents them).  On a terminal you type at a
    prompt with line editing and a history per actor (kept under the data
    directory), and messages appear above the line you are typing.  Piped,
    each input line is sent as it is; a line that is not JSON ends the
    session with exit 2 (--skip-bad-lines skips it).

    EOF (Ctrl-D) or a /close line closes the channel and exits 0, as does the
    actor closing it; Ctrl-C closes it and exits 130.  A status line says why
    the channel closed.

    \b
    Examples:
      theaterctl channel chatroom '{"join": "ada"}'
      printf '{"n":1}\\n{"n":2}\\n' | theaterctl channel echo
    """
    initial = read_message(initial_message, "INITIAL_MESSAGE")
    target = resolve_actor(app, actor)
    app.close()  # the session opens its own connection
    interactive = sys.stdin.isatty() and sys.stdout.isatty()
    from ..session import run_session

    return run_session(app.socket, target, initial, app.timeout, linger, pretty=pretty,
                       skip_bad_lines=skip_bad_lines, interactive=interactive, home=app.home)
