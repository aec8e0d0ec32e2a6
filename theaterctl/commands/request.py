from __future__ import annotations

import click

from ..app import App, decode_reply, read_message, json_option
from ..completion import complete_actor
from ..output import emit_json, emit_payload


@click.command("request")
@click.argument("actor", shell_complete=complete_actor)
@click.argument("message")
@json_option
@click.pass_obj
def command(app: App, actor: str, message: str) -> None:
    """Send MESSAGE (JSON, '-' for stdin, '@file') to ACTOR and print the reply as JSON."""
    msg = read_message(message)
    reply = decode_reply(app.client().call("request", actor=actor, msg=msg, timeout=app.timeout))
    if app.json and not isinstance(reply, bytes):
        emit_json(reply)
    else:
        emit_payload(reply)
