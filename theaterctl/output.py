"""All rendering: rich for people on a terminal, stable plain text when piped, JSON for programs.

Results go to stdout; errors, notes and progress go to stderr.  rich is
imported only when a table is rendered for a terminal, and its console never
interprets markup, emoji or highlighting, so payloads cannot inject markup.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    import datetime as _dt

PROG = "theaterctl"


def is_tty(stream: TextIO | None = None) -> bool:
    stream = stream or sys.stdout
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def use_color() -> bool:
    return is_tty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(
        stderr=stderr,
        markup=False,
        emoji=False,
        highlight=False,
        no_color=not use_color(),
        soft_wrap=False,
    )


# -- primitives ---------------------------------------------------------------


def emit_json(value: Any, pretty: bool | None = None) -> None:
    """One JSON document on stdout."""
    if pretty is None:
        pretty = False
    text = json.dumps(value, indent=2 if pretty else None, ensure_ascii=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def emit_json_line(value: Any) -> None:
    sys.stdout.write(json.dumps(value, separators=(",", ":"), ensure_ascii=False) + "\n")
    sys.stdout.flush()


def emit_text(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def note(text: str) -> None:
    """A message for the person (stderr)."""
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def error(text: str) -> None:
    note(f"{PROG}: error: {one_line(text)}")


def one_line(text: str) -> str:
    return " ".join(str(text).split()) or "unknown error"


def emit_payload(value: Any) -> None:
    """A reply or message: pretty JSON on a terminal, one compact document per line otherwise."""
    if isinstance(value, (bytes, bytearray)):
        emit_text(bytes(value).decode("utf-8", "replace"))
        return
    if is_tty():
        emit_json(value, pretty=True)
    else:
        emit_text(json.dumps(value, ensure_ascii=False))


# -- tables -------------------------------------------------------------------


class Column:
    """A table column: how it may give way when the terminal is narrow.

    ``drop``: 0 for a column that is always shown; otherwise columns with the
    highest ``drop`` are left out first (and the person is told).  ``flex``: the
    column may be shortened, with an ellipsis, down to ``min_width``; the highest
    ``flex`` first (``True`` is 1).
    """

    __slots__ = ("header", "drop", "flex", "min_width", "right")

    def __init__(self, header: str, drop: int = 0, flex: int = 0, min_width: int = 8,
                 right: bool = False) -> None:
        self.header = header
        self.drop = drop
        self.flex = int(flex)
        self.min_width = max(min_width, len(header))
        self.right = right


def _cells(rows: Sequence[Sequence[Any]]) -> list[list[str]]:
    return [["-" if c is None or c == "" else str(c) for c in row] for row in rows]


def layout(columns: Sequence[Column], rows: Sequence[Sequence[str]], width: int
           ) -> tuple[list[int], list[int], list[str]]:
    """Which columns to show and how wide, to fit ``width``: the shown indices, every column's
    width, and the headers left out.  Flexible columns shorten first; then the least useful
    columns are left out, one at a time; headers are never cut."""
    natural = [max([len(c.header), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    widths = list(natural)
    shown = list(range(len(columns)))

    def total() -> int:
        return sum(widths[i] for i in shown) + 2 * (len(shown) - 1)

    for i in sorted(shown, key=lambda i: (-columns[i].flex, -natural[i])):  # the most flexible first
        if columns[i].flex and total() > width:
            widths[i] -= min(total() - width, max(0, widths[i] - columns[i].min_width))
    dropped: list[str] = []
    while total() > width:
        candidates = [i for i in shown if columns[i].drop]
        if not candidates:
            break
        worst = max(candidates, key=lambda i: (columns[i].drop, i))
        shown.remove(worst)
        dropped.append(columns[worst].header)
        for i in shown:  # room came back: let shortened columns grow again
            if columns[i].flex and widths[i] < natural[i]:
                widths[i] += min(natural[i] - widths[i], max(0, width - total()))
    return shown, widths, dropped


def terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((80, 24)).columns


def terminal_height() -> int:
    import shutil

    return shutil.get_terminal_size((80, 24)).lines


def render_table(columns: Sequence[Column], rows: Sequence[Sequence[Any]], headers: bool = True,
                 styles: dict[int, dict[str, str]] | None = None, width: int | None = None,
                 fixed: tuple[list[int], list[int]] | None = None) -> tuple[str, list[str]]:
    """The table as a terminal shows it (rich), fitted to ``width``; and the headers left out."""
    cells = _cells(rows)
    width = width or terminal_width()
    if fixed is not None:
        shown, widths = fixed
        dropped: list[str] = []
    else:
        shown, widths, dropped = layout(columns, cells, width)
    import io

    from rich.console import Console
    from rich.table import Table

    color = use_color()
    t = Table(show_edge=False, show_header=headers, header_style="bold" if color else "", box=None,
              pad_edge=False, expand=False)
    for i in shown:
        c = columns[i]
        t.add_column(c.header, width=widths[i], no_wrap=True, overflow="ellipsis",
                     justify="right" if c.right else "left")
    for row in cells:
        style = None
        if styles and color:
            for index, mapping in styles.items():
                style = mapping.get(row[index]) or style
        t.add_row(*(row[i] for i in shown), style=style)
    buffer = io.StringIO()
    console = Console(file=buffer, width=width, markup=False, emoji=False, highlight=False, force_terminal=color,
                      no_color=not color, soft_wrap=False, color_system="standard" if color else None)
    console.print(t)
    return buffer.getvalue(), dropped


def plain_table(columns: Sequence[Column | str], rows: Sequence[Sequence[Any]], headers: bool = True,
                widths: Sequence[int] | None = None) -> str:
    """Aligned plain text: every column, one token per cell ('-' when empty), values whole."""
    heads = [c.header if isinstance(c, Column) else c for c in columns]
    cells = _cells(rows)
    if widths is None:
        widths = [len(h) for h in heads]
        for row in cells:
            widths = [max(w, len(v)) for w, v in zip(widths, row)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(heads, widths)).rstrip()] if headers else []
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    return "\n".join(lines) + "\n" if lines else ""


def dropped_note(dropped: Sequence[str]) -> None:
    if dropped:
        note(f"({', '.join(dropped)} left out to fit {terminal_width()} columns; --wide shows every column)")


def table(columns: Sequence[Column | str], rows: Sequence[Sequence[Any]],
          styles: dict[int, dict[str, str]] | None = None, headers: bool = True, wide: bool = False) -> None:
    """Fitted to the terminal (rich) for a person; aligned plain text, every column, when piped or ``wide``."""
    cols = [c if isinstance(c, Column) else Column(c) for c in columns]
    if is_tty() and not wide:
        text, dropped = render_table(cols, rows, headers, styles)
        sys.stdout.write(text)
        sys.stdout.flush()
        dropped_note(dropped)
        return
    sys.stdout.write(plain_table(cols, rows, headers))
    sys.stdout.flush()


def busy_text(actor: dict[str, Any], person: bool) -> str:
    """The handler an actor is busy in and for how long: 'handle_send 0.6s' for a person,
    'handle_send:0.6s' piped (one token), '-' when idle."""
    busy = actor.get("busy")
    if not busy:
        return "-"
    return f"{busy['handler']}{' ' if person else ':'}{human_duration(busy['seconds'])}"


def short_id(value: Any, short: bool = True) -> str:
    """An actor id's first 8 hex digits, a channel id's 'ch_' + 8 (as docker and git shorten)."""
    text = "" if value is None else str(value)
    if not short:
        return text
    if len(text) == 36 and text.count("-") == 4:
        return text[:8]
    if text.startswith("ch_") and len(text) == 35:
        return text[:11]
    return text


def key_values(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        emit_text(f"{key.ljust(width)}  {value}")


# -- formatting helpers ---------------------------------------------------------


def relative_time(iso: str, now: _dt.datetime | None = None) -> str:
    import datetime as _dt  # only when rendering for a person

    try:
        moment = _dt.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        return iso
    now = now or _dt.datetime.now(_dt.timezone.utc)
    seconds = (now - moment).total_seconds()
    if seconds < 1:
        return "just now"
    return f"{human_duration(seconds)} ago"


def human_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m{seconds % 60:02.0f}s"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h{(seconds % 3600) // 60:02.0f}m"
    return f"{seconds // 86400:.0f}d{(seconds % 86400) // 3600:02.0f}h"


def short_hash(h: str | None) -> str:
    return h[:12] if h else "-"


OUTCOME_STYLES = {"ok": "green", "accepted": "green", "error": "red", "rejected": "yellow",
                  "timeout": "yellow"}
STATUS_STYLES = {"running": "green", "failed": "red", "stopped": "dim", "stopping": "yellow"}


def short_type(event_type: str) -> str:
    """On a terminal the common ``message-server/`` prefix is left out of TYPE."""
    return event_type[len("message-server/"):] if event_type.startswith("message-server/") else event_type


def event_row(ev: dict[str, Any], relative: bool, short: bool = False, wide: bool = False) -> list[Any]:
    data = ev.get("data") or {}
    peer = data.get("peer_name") or data.get("peer") or data.get("channel") or "-"
    outcome = data.get("outcome", "-")
    if "accepted" in data and outcome == "ok":
        outcome = "accepted" if data["accepted"] else "rejected"
    when = relative_time(ev["timestamp"]) if relative else ev["timestamp"]
    digest = ev.get("hash") or "-"
    digest = digest if wide else digest[:8] if short else short_hash(digest)
    return [ev["seq"], digest, short_type(ev["type"]) if short else ev["type"], short_id(peer, short),
            data.get("size", "-"), outcome, when]


EVENT_COLUMNS = ("SEQ", "HASH", "TYPE", "PEER", "SIZE", "OUTCOME", "TIME")
# On a terminal: SIZE, then HASH, then TIME give way first; TYPE and PEER shorten before that.
EVENT_TERMINAL_COLUMNS = (
    Column("SEQ", right=True), Column("HASH", drop=2), Column("TYPE", flex=True, min_width=11),
    Column("PEER", flex=2, min_width=8), Column("SIZE", drop=3, right=True), Column("OUTCOME"),
    Column("TIME", drop=1),
)
# the widest a row usually gets on a terminal, so that pages and --follow rows line up
_TYPICAL_ROW = ["999999", "0" * 8, "handle-channel-message", "x" * 12, "999999", "accepted", "59m59s ago"]
_WIDTHS = (7, 12, 38, 16, 7, 8, 20)  # piped: fixed, so that pages line up


class EventTable:
    """Renders events page by page with one layout: fitted to the terminal for a person,
    fixed-width plain text (every column, values whole) when piped or ``wide``."""

    def __init__(self, headers: bool = True, wide: bool = False, tty: bool | None = None) -> None:
        self.tty = is_tty() if tty is None else tty
        self.fitted = self.tty and not wide
        self.wide = wide
        self.headers = headers
        self.first = True
        self.fixed: tuple[list[int], list[int]] | None = None
        self.dropped: list[str] = []

    def page(self, events: Sequence[dict[str, Any]]) -> str:
        header, self.first = self.headers and self.first, False
        rows = [event_row(ev, self.tty, self.fitted, self.wide) for ev in events]
        if not self.fitted:
            widths = list(_WIDTHS)
            if self.wide:
                widths[1] = 64
            return plain_table(EVENT_COLUMNS, rows, header, widths)
        if self.fixed is None:
            shown, widths, self.dropped = layout(EVENT_TERMINAL_COLUMNS, _cells([_TYPICAL_ROW, *rows]),
                                                 terminal_width())
            self.fixed = (shown, widths)
        if not rows and not header:
            return ""
        text, _ = render_table(EVENT_TERMINAL_COLUMNS, rows, header, styles={5: OUTCOME_STYLES}, fixed=self.fixed)
        return text


def events_table(events: Sequence[dict[str, Any]], headers: bool = True, wide: bool = False) -> None:
    printer = EventTable(headers, wide)
    sys.stdout.write(printer.page(events))
    sys.stdout.flush()
    dropped_note(printer.dropped)


def _pages(events: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for ev in events:
        batch.append(ev)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def stream_events(events: Iterable[dict[str, Any]], as_json: bool, page: int = 200, headers: bool = True,
                  wide: bool = False, pager: bool = True) -> int:
    """Print events as they come (a JSON list, or tables page by page); returns the count.

    On a terminal, output longer than the screen goes through the pager ($PAGER, else
    less) unless ``pager`` is false."""
    count = 0
    if as_json:
        out = sys.stdout
        out.write("[")
        for ev in events:
            out.write(("," if count else "") + "\n  " + json.dumps(ev, ensure_ascii=False))
            count += 1
        out.write("\n]\n" if count else "]\n")
        out.flush()
        return count
    printer = EventTable(headers, wide)
    counted: list[int] = [0]

    def chunks() -> Iterator[str]:
        any_page = False
        for batch in _pages(events, page):
            counted[0] += len(batch)
            any_page = True
            yield printer.page(batch)
        if not any_page:
            yield printer.page([])

    texts = chunks()
    if printer.tty and pager:
        limit = max(terminal_height() - 2, 1)
        buffered: list[str] = []
        lines = 0
        for text in texts:
            buffered.append(text)
            lines += text.count("\n")
            if lines > limit:
                import itertools

                import click

                click.echo_via_pager(itertools.chain(buffered, texts), color=use_color())
                break
        else:
            sys.stdout.write("".join(buffered))
    else:
        for text in texts:
            sys.stdout.write(text)
    sys.stdout.flush()
    dropped_note(printer.dropped)
    if printer.tty and counted[0] == 0:
        note("no events match")
    return counted[0]


def events_rows(events: Iterable[dict[str, Any]], headers: bool = True, wide: bool = False) -> None:
    """Events one at a time as they arrive (``--follow``), each printed at once."""
    printer = EventTable(headers, wide)
    for ev in events:
        sys.stdout.write(printer.page([ev]))
        sys.stdout.flush()
        if printer.dropped:
            dropped_note(printer.dropped)
            printer.dropped = []


def cut_for_screen(text: str, how_to_see: str) -> str:
    """On a terminal, text longer than about a screen is cut, with a note saying how to see it whole."""
    if not is_tty():
        return text
    limit = max(terminal_width() * max(terminal_height() - 8, 4), 200)
    lines = text.split("\n")
    max_lines = max(terminal_height() - 8, 4)
    if len(text) <= limit and len(lines) <= max_lines:
        return text
    cut = "\n".join(lines[:max_lines])[:limit]
    return f"{cut}... [cut: {len(text):,} characters; see it whole with {how_to_see}]"
