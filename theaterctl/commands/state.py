from __future__ import annotations

import click

from ..app import App, decode_reply, json_option, resolve_actor
from ..completion import complete_actor
from ..output import emit_json, emit_payload


@click.command("state", short_help="Print an actor's current state.")
@click.argument("actor", shell_complete=complete_actor)
@json_option
@click.pass_obj
def command(app: App, actor: str) -> None:
    """Print ACTOR's current state as JSON (stopped actors keep their last state).

    \b
    Examples:
      theaterctl state counter
      theaterctl state counter | jq .count
    """
    result = app.client().call("state", actor=resolve_actor(app, actor))
    value = decode_reply(result["state"])
    if app.json and not isinstance(value, bytes):
        emit_json(value)
    else:
        emit_payload(value)
