from __future__ import annotations

import click

from ..app import App, json_option, table_options
from ..output import Column, emit_json, human_duration, is_tty, note, short_id, table

COLUMNS = (
    Column("CHANNEL"), Column("OPENER", flex=True, min_width=8), Column("TARGET", flex=True, min_width=8),
    Column("TO TARGET", drop=2, right=True), Column("TO OPENER", drop=2, right=True), Column("AGE", drop=1),
)


@click.command("channels", short_help="List open channels.")
@table_options
@json_option
@click.pass_obj
def command(app: App) -> None:
    """List open channels: id, the two ends, messages each way, age.

    \b
    Examples:
      theaterctl channels
      theaterctl channels --json
    """
    channels = app.client().call("channels")
    if app.json:
        emit_json(channels)
        return
    if not channels and is_tty():
        note("no open channels; open one with: theaterctl channel ACTOR")
        return
    short = is_tty() and not app.wide
    rows = [[short_id(c["id"], short), c["opener_name"], c["target_name"], c["from_opener"], c["from_target"],
             human_duration(c["age"])] for c in channels]
    table(COLUMNS, rows, headers=app.headers, wide=app.wide)
