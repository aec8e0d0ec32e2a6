from __future__ import annotations

import click

from ..app import App, decode_reply, json_option
from ..completion import complete_actor
from ..output import emit_json, emit_payload


@click.command("state")
@click.argument("actor", shell_complete=complete_actor)
@json_option
@click.pass_obj
def command(app: App, actor: str) -> None:
    """Print ACTOR's current state as JSON."""
    result = app.client().call("state", actor=actor)
    value = decode_reply(result["state"])
    if app.json and not isinstance(value, bytes):
        emit_json(value)
    else:
        emit_payload(value)
