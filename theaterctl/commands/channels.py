from __future__ import annotations

from typing import Any

import click

from daemon.errors import NotFound

from ..app import App, json_option, table_options
from ..completion import complete_channel
from ..output import Column, emit_json, human_duration, is_tty, key_values, note, short_id, table

COLUMNS = (
    Column("CHANNEL"), Column("OPENER", flex=True, min_width=8), Column("TARGET", flex=True, min_width=8),
    Column("TO TARGET", drop=2, right=True), Column("TO OPENER", drop=2, right=True), Column("AGE", drop=1),
)


@click.command("channels", short_help="List open channels, or show one.")
@click.argument("channel", required=False, shell_complete=complete_channel)
@table_options
@json_option
@click.pass_obj
def command(app: App, channel: str | None) -> None:
    """List open channels: id, the two ends, messages each way, age.  With
    CHANNEL (an id or a unique prefix of one), show that channel in full.

    \b
    Examples:
      theaterctl channels
      theaterctl channels ch_e3f7c25e
    """
    channels = app.client().call("channels")
    if channel is not None:
        _show_one(app, channels, channel)
        return
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


def _show_one(app: App, channels: list[dict[str, Any]], ref: str) -> None:
    matches = [c for c in channels if c["id"] == ref] or [c for c in channels if c["id"].startswith(ref)]
    if not matches:
        raise NotFound(f"no open channel {ref!r}")
    if len(matches) > 1:
        raise click.UsageError(f"channel id prefix {ref} is ambiguous: it matches "
                               f"{', '.join(c['id'] for c in matches)}; type more of it")
    view = matches[0]
    if app.json:
        emit_json(view)
        return
    key_values([("id", view["id"]), ("opener", f"{view['opener_name']} ({view['opener']})"),
                ("target", f"{view['target_name']} ({view['target']})"), ("to target", view["from_opener"]),
                ("to opener", view["from_target"]), ("age", human_duration(view["age"]))])
