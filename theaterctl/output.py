"""All rendering: rich for people on a terminal, stable plain text when piped, JSON for programs.

Results go to stdout; errors, notes and progress go to stderr.  rich is
imported only when a table is rendered for a terminal, and its console never
interprets markup, emoji or highlighting, so payloads cannot inject markup.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Sequence
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


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], title: str | None = None,
          styles: dict[int, dict[str, str]] | None = None) -> None:
    """A rich table on a terminal; aligned plain text (header + rows) when piped."""
    cells = [["" if c is None else str(c) for c in row] for row in rows]
    if is_tty():
        from rich.table import Table

        t = Table(title=title, show_edge=False, header_style="bold" if use_color() else "", box=None,
                  pad_edge=False)
        for col in columns:
            t.add_column(col, overflow="fold")
        for r, row in enumerate(cells):
            style = None
            if styles and use_color():
                for index, mapping in styles.items():
                    style = mapping.get(row[index]) or style
            t.add_row(*row, style=style)
        _console().print(t)
        return
    widths = [len(c) for c in columns]
    for row in cells:
        widths = [max(w, len(v)) for w, v in zip(widths, row)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip()]
    for row in cells:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip())
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()


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


def event_row(ev: dict[str, Any], relative: bool) -> list[Any]:
    data = ev.get("data") or {}
    peer = data.get("peer_name") or data.get("peer") or data.get("channel") or "-"
    outcome = data.get("outcome", "-")
    if "accepted" in data and outcome == "ok":
        outcome = "accepted" if data["accepted"] else "rejected"
    when = relative_time(ev["timestamp"]) if relative else ev["timestamp"]
    return [ev["seq"], short_hash(ev.get("hash")), ev["type"], peer, data.get("size", "-"), outcome, when]


EVENT_COLUMNS = ("SEQ", "HASH", "TYPE", "PEER", "SIZE", "OUTCOME", "TIME")


def events_table(events: Sequence[dict[str, Any]]) -> None:
    relative = is_tty()
    table(EVENT_COLUMNS, [event_row(ev, relative) for ev in events], styles={5: OUTCOME_STYLES})


def stream_events(events: Iterable[dict[str, Any]], as_json: bool, page: int = 200) -> int:
    """Print events as they come (a JSON list, or tables page by page); returns the count."""
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
    batch: list[dict[str, Any]] = []
    header = True
    for ev in events:
        batch.append(ev)
        count += 1
        if len(batch) >= page:
            _events_page(batch, header)
            header, batch = False, []
    if batch or header:
        _events_page(batch, header)
    return count


_WIDTHS = (7, 12, 38, 16, 7, 8, 20)


def _events_page(events: Sequence[dict[str, Any]], header: bool) -> None:
    relative = is_tty()
    rows = [event_row(ev, relative) for ev in events]
    if not is_tty():
        lines = []
        if header:
            lines.append("  ".join(c.ljust(w) for c, w in zip(EVENT_COLUMNS, _WIDTHS)).rstrip())
        for row in rows:
            lines.append("  ".join(str(v).ljust(w) for v, w in zip(row, _WIDTHS)).rstrip())
        if lines:
            sys.stdout.write("\n".join(lines) + "\n")
            sys.stdout.flush()
        return
    from rich.table import Table

    t = Table(show_edge=False, show_header=header, header_style="bold" if use_color() else "", box=None,
              pad_edge=False)
    for col, width in zip(EVENT_COLUMNS, _WIDTHS):
        t.add_column(col, min_width=width, overflow="fold")
    for row in rows:
        style = OUTCOME_STYLES.get(str(row[5])) if use_color() else None
        t.add_row(*(str(v) for v in row), style=style)
    _console().print(t)


def events_rows(events: Iterable[dict[str, Any]]) -> None:
    """Events one at a time as they arrive (``--follow``), each printed at once."""
    header = True
    for ev in events:
        _events_page([ev], header)
        header = False
