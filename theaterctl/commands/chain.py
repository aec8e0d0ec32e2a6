from __future__ import annotations

import datetime as _dt
import sys
from pathlib import Path

import click

from daemon.errors import ActorFailed, BadInput

from ..app import App, SuggestingGroup, json_option, resolve_actor, table_options
from ..completion import complete_actor, complete_event_type
from ..output import cut_for_screen, emit_json, emit_json_line, emit_text, key_values, note, stream_events


@click.group("chain", cls=SuggestingGroup, short_help="Show, verify and export state chains.")
def command() -> None:
    """Show, verify and export actors' state chains.

    \b
    Examples:
      theaterctl chain show counter
      theaterctl chain verify counter
    """


def _type_option(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    from ..events import event_type

    return event_type(value)


def _parse_since(text: str | None) -> float | None:
    """ISO 8601 time, or a relative '10m' / '2h' / '30s' / '1d' ago."""
    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].replace(".", "", 1).isdigit():
        return _dt.datetime.now(_dt.timezone.utc).timestamp() - float(text[:-1]) * units[text[-1]]
    try:
        moment = _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise BadInput(f"--since {text!r}: use an ISO time (2026-01-31T12:00:00Z) or an age like 10m") from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    return moment.timestamp()


@command.command("show", short_help="Show a chain, or one event in full.")
@click.argument("actor", shell_complete=complete_actor)
@click.argument("event", required=False)
@click.option("--limit", type=click.IntRange(min=0), help="Only the newest N events.")
@click.option("--type", "etype", metavar="TYPE", callback=_type_option, shell_complete=complete_event_type,
              help="Only events of this type (message-server/handle-send, or just handle-send).")
@click.option("--since", metavar="TIME", help="Only events at or after TIME (ISO 8601, or an age like 10m).")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they happen, until Ctrl-C.")
@click.option("--no-pager", "no_pager", is_flag=True, help="On a terminal, print long output instead of paging it.")
@table_options
@json_option
@click.pass_obj
def show(app: App, actor: str, event: str | None, limit: int | None, etype: str | None, since: str | None,
         follow: bool, no_pager: bool) -> None:
    """Show ACTOR's chain (oldest first), or one EVENT in full (by seq or hash prefix).

    On a terminal, output longer than the screen goes through $PAGER (else
    less); --no-pager prints it.  TYPE leaves out the message-server/ prefix
    there; piped, every column is whole.

    \b
    Examples:
      theaterctl chain show counter --type handle-send --since 10m
      theaterctl chain show counter 2
    """
    client = app.client()
    actor = resolve_actor(app, actor)
    if event is not None:
        view = client.call("event", actor=actor, ref=event)
        if app.json:
            emit_json(view)
        else:
            import json

            data = view.get("data") or {}
            key_values([
                ("seq", view["seq"]), ("hash", view["hash"]), ("parent", view["parent_hash"] or "-"),
                ("type", view["type"]), ("time", view["timestamp"]), ("actor", view.get("actor")),
                ("state hash", data.get("state_hash") or "-"),
                ("data", json.dumps(data, sort_keys=True)),
                ("payload", cut_for_screen(json.dumps(view.get("payload")),
                                           f"theaterctl chain show {actor} {event} --json")),
            ])
        return
    since_ts = _parse_since(since)
    if not follow:
        stream_events(client.iter_chain(actor, limit=limit, type=etype, since=since_ts), app.json,
                      headers=app.headers, wide=app.wide, pager=not no_pager)
        return
    _follow(app, actor, limit, etype, since_ts)


def _follow(app: App, actor: str, limit: int | None, etype: str | None, since: float | None) -> None:
    """The newest events, then each new one as it is stored: JSON lines, or rows in the
    same style as ``chain show`` (one header, then a row per event)."""
    from ..output import events_rows

    events = app.client().follow_chain(actor, limit=10 if limit is None else limit, type=etype, since=since)
    # Ctrl-C ends it: KeyboardInterrupt goes up to main, which exits 130 on a clean line
    if app.json:
        for ev in events:
            emit_json_line(ev)
    else:
        events_rows(events, headers=app.headers, wide=app.wide)


@command.command("verify", short_help="Check every hash and link of a chain.")
@click.argument("actor", required=False, shell_complete=complete_actor)
@click.option("--file", "path", type=click.Path(path_type=Path, dir_okay=False),
              help="Verify an exported JSON Lines file instead (no daemon needed).")
@json_option
@click.pass_obj
def verify(app: App, actor: str | None, path: Path | None) -> None:
    """Recompute every hash and check every link; exit 1 naming the first broken event.

    \b
    Examples:
      theaterctl chain verify counter
      theaterctl chain verify --file counter.jsonl
    """
    if path is not None:
        if actor is not None:
            raise BadInput("give either ACTOR or --file, not both")
        _verify_file(app, path)
        return
    if actor is None:
        raise BadInput("missing ACTOR (or --file FILE)")
    result = app.client().call("verify", actor=resolve_actor(app, actor))
    if app.json:
        emit_json(result)
    if not result["ok"]:
        raise ActorFailed(f"chain of {result['name']} is broken at event {result['broken_seq']}: {result['reason']}"
                          f" ({result['checked']} events before it are intact)")
    if not app.json:
        emit_text(f"chain of {result['name']} verified: {result['checked']} events, head {result['head'] or '-'}")


def _verify_file(app: App, path: Path) -> None:
    from daemon.chain import ChainVerifier, check_export_line

    try:
        fh = path.open("r", encoding="utf-8")
    except FileNotFoundError:
        raise BadInput(f"file {path} does not exist") from None
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror}") from None
    verifier = ChainVerifier()
    with fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if verifier.actor is None:
                import json

                try:
                    verifier.actor = json.loads(line).get("actor")
                except (ValueError, AttributeError):
                    pass
            problem = check_export_line(line, verifier)
            if problem is not None:
                if app.json:
                    emit_json({"ok": False, "file": str(path), "line": lineno, "checked": verifier.checked,
                               "reason": problem})
                raise ActorFailed(f"{path}: line {lineno} is broken: {problem}")
    if app.json:
        emit_json({"ok": True, "file": str(path), "checked": verifier.checked,
                   "head": verifier.head.hash.hex() if verifier.head.hash else None})
    else:
        emit_text(f"{path} verified: {verifier.checked} events")


@command.command("export", short_help="Write a chain as JSON Lines.")
@click.argument("actor", shell_complete=complete_actor)
@click.option("-o", "--output", "path", type=click.Path(path_type=Path, dir_okay=False), required=True,
              help="File to write ('-' for stdout).")
@json_option
@click.pass_obj
def export(app: App, actor: str, path: Path) -> None:
    """Write ACTOR's whole chain as JSON Lines, one self-contained event per line, oldest first.

    \b
    Examples:
      theaterctl chain export counter -o counter.jsonl
      theaterctl chain export counter -o - | wc -l
    """
    client = app.client()
    actor = resolve_actor(app, actor)
    out = sys.stdout if str(path) == "-" else None
    tmp = None
    if out is None:
        tmp = path.with_name(path.name + ".part")
        out = tmp.open("w", encoding="utf-8")
    count = 0
    try:
        for line in client.export_lines(actor):
            out.write(line + "\n")
            count += 1
    except BaseException:
        if tmp is not None:
            out.close()
            tmp.unlink(missing_ok=True)
        raise
    if tmp is not None:
        out.close()
    if tmp is not None:
        tmp.replace(path)
        if app.json:
            emit_json({"file": str(path), "events": count})
        else:
            note(f"exported {count} events to {path}")
