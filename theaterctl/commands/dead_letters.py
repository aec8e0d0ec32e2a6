from __future__ import annotations

import json
from typing import Any

import click

from ..app import App, json_option
from ..completion import complete_actor
from ..output import emit_json, emit_text, table


def _message(raw: Any) -> Any:
    if isinstance(raw, bytes):
        try:
            return json.loads(raw)
        except ValueError:
            return raw.decode("utf-8", "replace")
    return raw


def _letter_id(value: str) -> int:
    if not value.isdigit():
        raise click.UsageError(f"dead letter ids are numbers, not {value!r} (see theaterctl dead-letters)")
    return int(value)


@click.command("dead-letters", short_help="Messages that crashed their actor; retry or drop.")
@click.argument("words", nargs=-1, shell_complete=complete_actor, metavar="[ACTOR] | retry ID | drop ID")
@json_option
@click.pass_obj
def command(app: App, words: tuple[str, ...]) -> None:
    """List the messages that crashed their actor too often, or retry or drop one.

    A stored send whose handling crashed its actor max_deliveries times (manifest key,
    default 3) is no longer delivered: it waits here.

    \b
    Examples:
      theaterctl dead-letters counter
      theaterctl dead-letters retry 42
    """
    client = app.client()
    if words and words[0] in ("retry", "drop"):
        if len(words) != 2:
            raise click.UsageError(f"usage: theaterctl dead-letters {words[0]} ID")
        letter = _letter_id(words[1])
        result = client.call("dead-letter-retry" if words[0] == "retry" else "dead-letter-drop", id=letter)
        if app.json:
            emit_json(result)
        elif words[0] == "retry":
            emit_text(f"dead letter {letter} delivered again to {result['name']}")
        else:
            emit_text(f"dead letter {letter} dropped")
        return
    if len(words) > 1:
        raise click.UsageError("give at most one ACTOR (or: retry ID, drop ID)")
    args = {"actor": words[0]} if words else {}
    letters = client.call("dead-letters", **args)
    for letter in letters:
        letter["msg"] = _message(letter.get("msg"))
    if app.json:
        emit_json(letters)
        return
    rows = [[str(x["id"]), x.get("actor_name") or x["actor"], str(x["attempts"]), x["reason"], x["time"],
             json.dumps(x["msg"], ensure_ascii=False)] for x in letters]
    table(("ID", "ACTOR", "ATTEMPTS", "REASON", "TIME", "MESSAGE"), rows)
