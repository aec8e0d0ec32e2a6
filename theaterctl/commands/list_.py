from __future__ import annotations

import click

from ..app import App, json_option
from ..output import STATUS_STYLES, emit_json, human_duration, table


@click.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include stopped actors.")
@json_option
@click.pass_obj
def command(app: App, show_all: bool) -> None:
    """List actors: name, id, status, messages handled, chain length."""
    actors = app.client().call("list", all=show_all or None)
    if app.json:
        emit_json(actors)
        return
    rows = []
    for a in actors:
        status = a["status"]
        busy = a.get("busy")
        if busy:
            status = f"{status} (busy in {busy['handler']} for {human_duration(busy['seconds'])})"
        rows.append([a["name"], a["id"], status, a["handled"], a["chain_length"], a.get("mailbox", 0)])
    table(("NAME", "ID", "STATUS", "HANDLED", "CHAIN", "MAILBOX"), rows, styles={2: STATUS_STYLES})
