from __future__ import annotations

import click

from ..app import App, decode_reply, json_option, read_message, resolve_actor
from ..completion import complete_actor
from ..output import emit_json, emit_payload


@click.command("request", short_help="Ask an actor and print its reply.")
@click.argument("actor", shell_complete=complete_actor)
@click.argument("message")
@json_option
@click.pass_obj
def command(app: App, actor: str, message: str) -> None:
    """Send MESSAGE (JSON, '-' for stdin, '@file') to ACTOR and print the reply as JSON.

    \b
    Examples:
      theaterctl request counter '{"type": "get"}'
      echo '{"type": "get"}' | theaterctl request counter - --timeout 5
    """
    msg = read_message(message)
    reply = decode_reply(app.client().call("request", actor=resolve_actor(app, actor), msg=msg,
                                           timeout=app.timeout))
    if app.json and not isinstance(reply, bytes):
        emit_json(reply)
    else:
        emit_payload(reply)
