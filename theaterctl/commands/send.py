from __future__ import annotations

import click

from ..app import App, json_option, read_message, resolve_actor
from ..completion import complete_actor
from ..output import emit_json


@click.command("send", short_help="Send a one-way message (no reply).")
@click.argument("actor", shell_complete=complete_actor)
@click.argument("message")
@json_option
@click.pass_obj
def command(app: App, actor: str, message: str) -> None:
    """Send MESSAGE (JSON, '-' for stdin, '@file') to ACTOR, one way.

    Returns once the message is stored in the actor's mailbox.

    \b
    Examples:
      theaterctl send counter '{"type": "increment", "amount": 2}'
      theaterctl send counter @message.json
    """
    msg = read_message(message)
    app.client().call("send", actor=resolve_actor(app, actor), msg=msg, timeout=app.timeout)
    if app.json:
        emit_json({"sent": True, "actor": actor, "size": len(msg)})
