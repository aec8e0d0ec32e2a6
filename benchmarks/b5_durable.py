"""#5: acknowledged sends per second from 50 concurrent clients, durability full.

50 clients (threads spread over 4 worker processes, one connection each) send
to 10 ``sink`` actors; each waits for the acknowledgement (the message is
fsynced into the actor's durable mailbox) before its next send.

Baseline, same run, same file system: "one fsync per event", i.e. what the
store would do without group commit: SQLite in WAL mode with
``synchronous=FULL`` (the store's settings), one INSERT of an event-sized
record and one COMMIT per event.  The raw ``write`` + ``fdatasync`` rate of the
disk is in the notes.

Figure 5b runs the very same 50 clients against the bare trio echo server
(no actor, no store): the most this client setup can push through on this
machine, which bounds what 5 can show here.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from .common import SINK, Daemon, EchoServer, Figure, load, log, percentile, ratio, spawn

CLIENTS = 50
ACTORS = 10


def fsync_per_event(directory: Path, seconds: float) -> float:
    path = directory / "fsync-baseline.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE events (actor TEXT, seq INTEGER, hash BLOB, record BLOB, PRIMARY KEY (actor, seq))")
    record = os.urandom(250)
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += 1
        db.execute("BEGIN")
        db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", ("a", n, os.urandom(32), record))
        db.execute("COMMIT")
    rate = n / (time.perf_counter() - t0)
    db.close()
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    return rate


def raw_fdatasync(directory: Path, seconds: float) -> float:
    path = directory / "fsync-raw.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    n = 0
    t0 = time.perf_counter()
    try:
        while time.perf_counter() - t0 < seconds:
            os.write(fd, b"x" * 256)
            os.fdatasync(fd)
            n += 1
    finally:
        os.close(fd)
        path.unlink()
    return n / (time.perf_counter() - t0)


def run(quick: bool) -> list[Figure]:
    count = 20 if quick else 400
    with Daemon(durability="full") as d:
        with d.client() as c:
            for i in range(ACTORS):
                spawn(c, SINK, f"sink{i}")
        d.home.mkdir(exist_ok=True, mode=0o700)
        base = fsync_per_event(d.home, 0.3 if quick else 1.5)
        raw = raw_fdatasync(d.home, 0.2 if quick else 1.0)
        log(f"#5: {CLIENTS} clients x {count} acknowledged sends, durability full")
        res = load(d, "send", [f"sink{i % ACTORS}" for i in range(CLIENTS)], count)
        with d.client() as c:
            status = c.status()
    with EchoServer() as e:
        log("#5: the same load against the bare echo server")
        echo = load(e, "send", [f"sink{i % ACTORS}" for i in range(CLIENTS)], count)
    echo_rate = echo.ops / echo.seconds if echo.seconds > 0 else None
    rate = res.ops / res.seconds if res.seconds > 0 else None
    note = (f"{res.ops} acked sends in {res.seconds:.2f} s, {res.errors} errors"
            + (f" (e.g. {res.error_samples[0]})" if res.error_samples else "")
            + f"; ack latency p50 {percentile(res.lat, 50) * 1e3:.2f} ms, p99 {percentile(res.lat, 99) * 1e3:.2f} ms"
            + f"; daemon CPU {res.daemon_cpu / max(res.ops, 1) * 1e6:.0f} us per send"
            + f" ({res.daemon_cpu / res.seconds * 100:.0f}% of a core); raw write+fdatasync {raw:,.0f}/s"
            + f"; daemon durability {status.get('durability')}")
    return [
        Figure("5", 5, "acked sends/s, 50 concurrent clients, durability full", rate, "msgs/s",
               base, "one fsync per event (SQLite FULL, commit per event)", ratio(rate, base), ">= 2x fsync per event",
               rate is not None and base is not None and rate >= 2 * base and res.errors == 0, note),
        Figure("5b", 5, "theater's share of the client ceiling (5's clients against the bare echo server)", rate,
               "msgs/s", echo_rate, "the same 50 clients, bare echo server", ratio(rate, echo_rate),
               ">= 70% of the ceiling", None if rate is None or echo_rate is None else rate >= 0.7 * echo_rate,
               f"{echo.ops} sends in {echo.seconds:.2f} s, {echo.errors} errors; p50 "
               f"{percentile(echo.lat, 50) * 1e3:.2f} ms; theater reached {ratio(rate, echo_rate) or 0:.0%} of it"),
    ]
