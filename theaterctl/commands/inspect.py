from __future__ import annotations

import click

from ..app import App, decode_reply, json_option, resolve_actor, table_options
from ..completion import complete_actor
from ..output import cut_for_screen, emit_json, emit_text, events_table, human_duration, key_values


@click.command("inspect", short_help="Show one actor in detail.")
@click.argument("actor", shell_complete=complete_actor)
@click.option("--events", "n_events", type=click.IntRange(min=0), default=5, show_default=True,
              help="How many of the latest events to show.")
@table_options
@json_option
@click.pass_obj
def command(app: App, actor: str, n_events: int) -> None:
    """Show ACTOR in detail: status, state, mailbox, channels, restarts, last events.

    \b
    Examples:
      theaterctl inspect counter
      theaterctl inspect counter --events 20 --json
    """
    ref = resolve_actor(app, actor)
    view = app.client().call("inspect", actor=ref, events=n_events)
    view["state"] = decode_reply(view.get("state"))
    if isinstance(view["state"], bytes):
        view["state"] = view["state"].decode("utf-8", "replace")
    if app.json:
        emit_json(view)
        return
    busy = view.get("busy")
    import json as _json

    pairs = [
        ("name", view["name"]),
        ("id", view["id"]),
        ("status", view["status"] + (f" ({view['reason']})" if view.get("reason") else "")),
        ("busy", f"in {busy['handler']} for {human_duration(busy['seconds'])}" if busy else "no"),
        ("manifest", view["manifest"]),
        ("created", view["created"]),
        ("handled", view["handled"]),
        ("chain length", view["chain_length"]),
        ("mailbox", view["mailbox"]),
        ("restarts", view["restarts"]),
        ("channels", len(view["channels"])),
        ("state", cut_for_screen(_json.dumps(view["state"]), f"theaterctl state {actor}")),
    ]
    key_values(pairs)
    for ch in view["channels"]:
        emit_text(f"  {ch['id']}  {ch['opener_name']} -> {ch['target_name']}")
    if view["events"]:
        emit_text("")
        events_table(view["events"], headers=app.headers, wide=app.wide)
