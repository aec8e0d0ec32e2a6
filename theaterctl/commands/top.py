from __future__ import annotations

import time
from typing import Any

import click

from ..app import App, json_option, table_options
from ..output import (STATUS_STYLES, Column, busy_text, emit_json, is_tty, plain_table, render_table, short_id,
                      terminal_width, use_color)

COLUMNS = (
    Column("NAME", flex=True, min_width=8), Column("ID", drop=4), Column("STATUS"),
    Column("MSG/S", right=True), Column("MAILBOX", right=True), Column("BUSY", flex=True, min_width=10),
    Column("ERRORS", drop=5, right=True), Column("CHANNELS", drop=2, right=True),
    Column("HANDLED", drop=3, right=True), Column("RESTARTS", drop=1, right=True),
)


def sample(app: App, show_all: bool) -> tuple[float, list[dict[str, Any]]]:
    actors = app.client().call("list", all=show_all or None)
    return time.monotonic(), actors


def rates(before: tuple[float, list[dict[str, Any]]] | None,
          after: tuple[float, list[dict[str, Any]]]) -> dict[str, float]:
    """Messages handled per second, per actor id, between two samples of ``list``."""
    if before is None:
        return {}
    seconds = after[0] - before[0]
    if seconds <= 0:
        return {}
    handled = {a["id"]: a["handled"] for a in before[1]}
    return {a["id"]: max(0, a["handled"] - handled[a["id"]]) / seconds for a in after[1] if a["id"] in handled}


def _rate_text(rate: float | None) -> str:
    if rate is None:
        return "-"
    return f"{rate:.0f}" if rate >= 100 else f"{rate:.1f}"


def rows(actors: list[dict[str, Any]], per_second: dict[str, float], short: bool, person: bool) -> list[list[Any]]:
    out = []
    for a in actors:
        out.append([a["name"], short_id(a["id"], short), a["status"], _rate_text(per_second.get(a["id"])),
                    a.get("mailbox", 0), busy_text(a, person), a.get("errors", 0), a.get("channels", 0),
                    a["handled"], a.get("restarts", 0)])
    return out


def summary(actors: list[dict[str, Any]], per_second: dict[str, float]) -> str:
    total = sum(per_second.values())
    busy = sum(1 for a in actors if a.get("busy"))
    waiting = sum(a.get("mailbox", 0) for a in actors)
    return (f"theaterd: {len(actors)} actor{'' if len(actors) == 1 else 's'}, {busy} busy, "
            f"{waiting} message{'' if waiting == 1 else 's'} waiting, {_rate_text(total) if per_second else '-'} msg/s"
            f"  ({time.strftime('%H:%M:%S')}; Ctrl-C to quit)")


@click.command("top", short_help="Live view of actors: messages/s, mailboxes.")
@click.option("--once", is_flag=True, help="Print one frame (rates over one --interval) and exit.")
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True, metavar="SECONDS",
              help="Seconds between refreshes (and the span rates are measured over).")
@click.option("--all", "show_all", is_flag=True, help="Include stopped actors.")
@table_options
@json_option
@click.pass_obj
def command(app: App, once: bool, interval: float, show_all: bool) -> None:
    """A live view of the actors, refreshed until Ctrl-C: messages handled per
    second, mailbox depth, the handler each is busy in and for how long, open
    channels, restarts.  Rates are the difference of two samples of 'list'.

    Piped (or with --json), each refresh prints a whole frame.

    \b
    Examples:
      theaterctl top
      theaterctl top --once --interval 2 --json
    """
    before = sample(app, show_all)
    person = is_tty() and not app.json
    if once or not person:
        while True:
            time.sleep(interval)
            after = sample(app, show_all)
            per_second = rates(before, after)
            _print_frame(app, after[1], per_second)
            if once:
                return
            before = after
    from rich.console import Console
    from rich.live import Live
    from rich.text import Text

    console = Console(markup=False, emoji=False, highlight=False, no_color=not use_color())

    def frame(actors: list[dict[str, Any]], per_second: dict[str, float]) -> Text:
        width = terminal_width()
        text, dropped = render_table(COLUMNS, rows(actors, per_second, not app.wide, True), app.headers,
                                     styles={2: STATUS_STYLES}, width=width)
        head = summary(actors, per_second)
        if dropped:
            head += f"\n({', '.join(dropped)} left out to fit {width} columns; --wide shows every column)"
        if not actors:
            text = "no actors; spawn one with: theaterctl spawn MANIFEST\n"
        return Text.from_ansi(head + "\n\n" + text.rstrip("\n"))

    with Live(frame(before[1], {}), console=console, auto_refresh=False, transient=False) as live:
        while True:
            time.sleep(interval)
            after = sample(app, show_all)
            live.update(frame(after[1], rates(before, after)), refresh=True)
            before = after


def _print_frame(app: App, actors: list[dict[str, Any]], per_second: dict[str, float]) -> None:
    if app.json:
        emit_json([{**a, "rate": per_second.get(a["id"])} for a in actors])
        return
    person = is_tty()
    body = rows(actors, per_second, person and not app.wide, person)
    if person and not app.wide:
        text, dropped = render_table(COLUMNS, body, app.headers, styles={2: STATUS_STYLES})
        click.echo(summary(actors, per_second).split("  (")[0])
        click.echo(text, nl=False)
        if dropped:
            click.echo(f"({', '.join(dropped)} left out to fit {terminal_width()} columns; --wide shows every column)",
                       err=True)
        return
    click.echo(plain_table(COLUMNS, body, app.headers), nl=False)
