from __future__ import annotations

import click

from ..app import App, json_option, resolve_actor
from ..completion import complete_actor
from ..output import emit_json, emit_text


@click.command("restart", short_help="Stop and start an actor again (same id, name, state).")
@click.argument("actor", shell_complete=complete_actor)
@json_option
@click.pass_obj
def command(app: App, actor: str) -> None:
    """Restart ACTOR (running, stopped or failed): a fresh module with the same id, name
    and last state; messages it had accepted and not handled are handled after it.

    \b
    Examples:
      theaterctl restart counter
    """
    result = app.client().call("restart", actor=resolve_actor(app, actor))
    if app.json:
        emit_json(result)
    else:
        emit_text(f"restarted {result['name']}")
