from __future__ import annotations

import click

from ..app import App, json_option
from ..completion import complete_actor
from ..output import emit_json, emit_text


@click.command("stop")
@click.argument("actor", shell_complete=complete_actor)
@json_option
@click.pass_obj
def command(app: App, actor: str) -> None:
    """Stop ACTOR (name or id); its chain is kept."""
    result = app.client().call("stop", actor=actor)
    if app.json:
        emit_json(result)
    else:
        dropped = result.get("dropped") or 0
        note = f" ({dropped} accepted message{'' if dropped == 1 else 's'} never handled, dropped)" if dropped else ""
        emit_text(f"stopped {result['name']}{note}")
