from __future__ import annotations

import click

from ..app import App, json_option
from ..output import emit_json, human_duration, table


@click.command("channels")
@json_option
@click.pass_obj
def command(app: App) -> None:
    """List open channels: id, the two ends, messages each way, age."""
    channels = app.client().call("channels")
    if app.json:
        emit_json(channels)
        return
    rows = [[c["id"], c["opener_name"], c["target_name"], c["from_opener"], c["from_target"],
             human_duration(c["age"])] for c in channels]
    table(("CHANNEL", "OPENER", "TARGET", "TO TARGET", "TO OPENER", "AGE"), rows)
