"""Verify a stored chain, in parallel processes when it is long.

Checking an event is CPU work under the GIL (decode the record, hash it,
compare), so one thread tops out near 100,000 events/s here.  A long chain is
cut into ranges of seqs, one per CPU; the first range is checked on the
calling thread and the others by child processes
(``python -m daemon.chainverify``), each with its own read connection to the
store.

Cutting is sound because a range starting after seq ``n`` starts from the
*stored* hash of event ``n``, and the range before it checks that this stored
hash is the hash of event ``n``'s record.  Events are append-only and the
ranges end at the head seen when verification began, so every process reads
the same rows whatever its snapshot.  A child that cannot run or answers
nonsense costs time, not correctness: its range is checked here instead.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .chain import ChainVerifier, Head, Verdict

MIN_PARALLEL = 100_000  # events: below this, starting processes costs more than it saves
PAGE = 5000


def _rows(db: sqlite3.Connection, actor: str, after: int, upto: int) -> Iterator[tuple[int, bytes, bytes]]:
    while after < upto:
        rows = db.execute(
            "SELECT seq, hash, record FROM events WHERE actor = ? AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
            (actor, after, upto, PAGE),
        ).fetchall()
        if not rows:
            return
        yield from rows
        after = rows[-1][0]


def check_range(db: sqlite3.Connection, actor: str, after: int, upto: int, start: bytes | None) -> Verdict:
    """Check events ``after < seq <= upto``; the event at ``after`` is taken to hash to ``start``."""
    verifier = ChainVerifier(actor, strict=False)
    verifier.head = Head(after, start)
    for seq, stored_hash, record in _rows(db, actor, after, upto):
        if not verifier.check(seq, stored_hash, record):
            break
    verdict = verifier.verdict()
    if verdict.ok and verdict.head.seq != upto:  # the range's last rows are missing
        missing = verdict.head.seq + 1
        return Verdict(verdict.checked, verdict.head, missing, f"expected seq {missing}")
    return verdict


def _connect(path: Path | str) -> sqlite3.Connection:
    uri = Path(path).absolute().as_uri() + "?mode=ro"  # (as_uri escapes '#', '?' and '%')
    return sqlite3.connect(uri, uri=True, isolation_level=None, timeout=30)


def _stored_hash(db: sqlite3.Connection, actor: str, seq: int) -> bytes | None:
    if seq == 0:
        return None
    row = db.execute("SELECT hash FROM events WHERE actor = ? AND seq = ?", (actor, seq)).fetchone()
    return None if row is None else bytes(row[0])


def verify_chain(path: Path | str, actor: str, upto: int, processes: int | None = None) -> Verdict:
    """Verify ``actor``'s chain up to seq ``upto`` in the store at ``path`` (call off the event loop)."""
    processes = processes or _cpus()
    db = _connect(path)
    try:
        if upto < MIN_PARALLEL or processes < 2:
            return check_range(db, actor, 0, upto, None)
        cuts = [upto * i // processes for i in range(processes + 1)]
        starts = [_stored_hash(db, actor, cut) for cut in cuts[:-1]]
        children = [_start_child(path, actor, cuts[i], cuts[i + 1], starts[i]) for i in range(1, processes)]
        try:
            verdicts = [check_range(db, actor, 0, cuts[1], None)]
            for i, child in enumerate(children, start=1):
                verdict = _finish_child(child, cuts[i], cuts[i + 1])
                if verdict is None:  # the child failed or answered nonsense: check its range here
                    verdict = check_range(db, actor, cuts[i], cuts[i + 1], starts[i])
                verdicts.append(verdict)
        finally:
            for child in children:
                if child is not None and child.poll() is None:
                    child.kill()
                    child.wait()
    finally:
        db.close()
    checked = 0
    for verdict in verdicts:
        checked += verdict.checked
        if not verdict.ok:
            return Verdict(checked, verdict.head, verdict.broken_seq, verdict.reason)
    return Verdict(checked, verdicts[-1].head)


def _cpus() -> int:
    """CPUs this process may run on (its affinity), else all of them."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)  # children import this very ``daemon``


def _start_child(path: Path | str, actor: str, after: int, upto: int,
                 start: bytes | None) -> subprocess.Popen[str] | None:
    args = [sys.executable, "-m", "daemon.chainverify", str(Path(path).absolute()), actor, str(after), str(upto),
            start.hex() if start else "-"]
    try:
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                text=True, close_fds=True, cwd=_PACKAGE_ROOT)
    except OSError:
        return None


def _finish_child(child: Any, after: int, upto: int) -> Verdict | None:
    """The child's verdict on ``after < seq <= upto``, or None unless it is complete and consistent."""
    if child is None:
        return None
    try:  # generous: a tenth of the slowest rate seen here, plus start-up
        out, _ = child.communicate(timeout=60 + (upto - after) / 10_000)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        return None
    if child.returncode != 0:
        return None
    try:
        answer: dict[str, Any] = json.loads(out)
        head = Head(int(answer["seq"]), bytes.fromhex(answer["hash"]) if answer["hash"] else None)
        checked, broken = int(answer["checked"]), answer["broken_seq"]
        reason = answer["reason"]
    except (ValueError, KeyError, TypeError):
        return None
    if checked != head.seq - after or not isinstance(reason, str):
        return None
    if broken is None:
        return Verdict(checked, head) if head.seq == upto and head.hash is not None else None
    if not isinstance(broken, int) or not after < broken <= upto or not after <= head.seq < broken:
        return None
    return Verdict(checked, head, broken, reason)


def main(argv: list[str]) -> int:
    """Child process: ``python -m daemon.chainverify DB ACTOR AFTER UPTO START_HASH|-``; prints a JSON verdict."""
    path, actor, after, upto, start = argv
    db = _connect(path)
    try:
        verdict = check_range(db, actor, int(after), int(upto), None if start == "-" else bytes.fromhex(start))
    finally:
        db.close()
    print(json.dumps({
        "checked": verdict.checked,
        "seq": verdict.head.seq,
        "hash": verdict.head.hash.hex() if verdict.head.hash else None,
        "broken_seq": verdict.broken_seq,
        "reason": verdict.reason,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
