from __future__ import annotations

import click

from ..app import App, json_option, table_options
from ..output import STATUS_STYLES, Column, busy_text, emit_json, emit_text, is_tty, note, short_id, table

# On a terminal: NAME and BUSY shorten first; then CHAIN, HANDLED, MAILBOX give way.
COLUMNS = (
    Column("NAME", flex=True, min_width=8), Column("ID"), Column("STATUS"), Column("BUSY", flex=True, min_width=10),
    Column("HANDLED", drop=2, right=True), Column("CHAIN", drop=3, right=True), Column("MAILBOX", drop=1, right=True),
)


@click.command("list", short_help="List actors (-q: ids only).")
@click.option("--all", "show_all", is_flag=True, help="Include stopped actors.")
@click.option("-q", "--quiet", is_flag=True, help="Only the actors' ids, one per line.")
@table_options
@json_option
@click.pass_obj
def command(app: App, show_all: bool, quiet: bool) -> None:
    """List actors: name, id, status, the handler it is busy in, messages handled, chain
    length and mailbox depth.

    On a terminal ids are shortened to 8 hex digits (any unique prefix of 8 or
    more works as ACTOR); piped, or with --wide, they are whole, and each
    column is one token.

    \b
    Examples:
      theaterctl list --all
      theaterctl list -q | xargs -n1 theaterctl stop
    """
    actors = app.client().call("list", all=show_all or None)
    if app.json:
        emit_json(actors)
        return
    if quiet:
        for a in actors:
            emit_text(a["id"])
        return
    person = is_tty()
    if not actors and person:
        note("no actors" + ("" if show_all else " running (list --all shows stopped ones)")
             + "; spawn one with: theaterctl spawn MANIFEST")
        return
    short = person and not app.wide
    rows = [[a["name"], short_id(a["id"], short), a["status"], busy_text(a, person), a["handled"],
             a["chain_length"], a.get("mailbox", 0)] for a in actors]
    table(COLUMNS, rows, styles={2: STATUS_STYLES}, headers=app.headers, wide=app.wide)
