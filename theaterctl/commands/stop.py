from __future__ import annotations

import click

from ..app import App, json_option, resolve_actor
from ..completion import complete_actor
from ..output import emit_json, emit_text


@click.command("stop", short_help="Stop an actor (its chain is kept).")
@click.argument("actor", shell_complete=complete_actor)
@json_option
@click.pass_obj
def command(app: App, actor: str) -> None:
    """Stop ACTOR (name, id or id prefix); its chain is kept.

    \b
    Examples:
      theaterctl stop counter
      theaterctl stop 16990a91
    """
    result = app.client().call("stop", actor=resolve_actor(app, actor))
    if app.json:
        emit_json(result)
    else:
        dropped = result.get("dropped") or 0
        note = f" ({dropped} accepted message{'' if dropped == 1 else 's'} never handled, dropped)" if dropped else ""
        emit_text(f"stopped {result['name']}{note}")
