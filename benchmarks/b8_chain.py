"""#8: chain verify rate and ``chain show`` first page on a 1,000,000-event chain.

The chain is written straight into a fresh store with the daemon's own APIs
(:class:`daemon.store.Store`, :func:`daemon.chain.make_event` chaining) before
theaterd starts: one ``counter`` actor row (the example's manifest, so the
daemon restores it) and N hash-linked ``handle-send`` events.  Then, through
the real CLI:

* ``theaterctl chain verify big``: wall time, and N / time as the rate;
* ``theaterctl chain show big --limit 50``: wall time (median of 3);
* ``theaterctl chain show big`` (no limit), time until its first 50 lines are
  printed (informational).

``--quick`` uses 20,000 events.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
import uuid
from pathlib import Path

from .common import COUNTER, ROOT, Daemon, Figure, command, log, median

FULL_EVENTS = 1_000_000
QUICK_EVENTS = 20_000
BATCH = 5000


def build_chain(home: Path, n: int, name: str = "big") -> str:
    """Write an actor with an ``n``-event chain into a new store at ``home``; returns the actor id."""
    from daemon import chain
    from daemon.chain import Head
    from daemon.store import Store
    from daemon.storeops import Op, PutActor, PutEvent, PutState

    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    store = Store(home, "normal")
    store.start(lambda fn: fn())
    actor_id = str(uuid.uuid4())
    ts = chain.now_us() - n
    store.submit([PutActor(actor_id, name, str(COUNTER.resolve()), "running", ts)])
    head = Head()
    ev = chain.make_event(actor_id, head, "runtime/spawn", {"name": name, "manifest": str(COUNTER.resolve()),
                                                           "state_hash": None}, ts=ts)
    head = chain.head_after(ev)
    batch: list[Op] = [PutEvent(ev)]
    for i in range(1, n):
        state = json.dumps({"count": i}).encode()
        data = {"peer": "external", "size": 20, "outcome": "ok", "state_hash": hashlib.sha256(state).hexdigest()}
        ev = chain.make_event(actor_id, head, "message-server/handle-send", data, b'{"type":"increment"}',
                              ts=ts + i)
        head = chain.head_after(ev)
        batch.append(PutEvent(ev))
        if len(batch) >= BATCH:
            store.submit(batch)
            batch = []
    state = json.dumps({"count": n - 1}).encode()
    batch.append(PutState(actor_id, hashlib.sha256(state).digest(), state, n - 1))
    store.submit(batch)
    store.close()
    if store.failure is not None:
        raise RuntimeError(f"building the chain failed: {store.failure}")
    return actor_id


CACHE = Path(__file__).resolve().parent / "results" / "cache"


def cached_chain(home: Path, n: int) -> tuple[float, bool]:
    """Put a store holding an ``n``-event chain at ``home``; returns (seconds, whether it came from the cache).

    Building a million events takes a minute or two, so the pristine store is
    kept in ``benchmarks/results/cache/`` (gitignored), keyed by the source of
    the modules that define its format (chain, store, wire) and of this one, the
    manifest path and ``n``; any change to those rebuilds it.  Each run gets a fresh copy.
    """
    import hashlib
    import shutil

    key = hashlib.sha256()
    for source in (ROOT / "daemon" / "chain.py", ROOT / "daemon" / "store.py", ROOT / "daemon" / "wire.py",
                   Path(__file__)):
        key.update(source.read_bytes())
    key.update(f"{COUNTER.resolve()}|{n}|{BATCH}".encode())
    cached = CACHE / f"chain-{n}-{key.hexdigest()[:16]}.db"
    t0 = time.perf_counter()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    if cached.exists():
        shutil.copyfile(cached, home / "theater.db")
        return time.perf_counter() - t0, True
    build_chain(home, n)
    if n >= 100_000:  # small chains are quicker to build than to cache
        import sqlite3

        CACHE.mkdir(parents=True, exist_ok=True)
        for old in CACHE.glob(f"chain-{n}-*.db"):
            old.unlink()
        db = sqlite3.connect(home / "theater.db")
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        tmp = cached.with_suffix(".part")
        shutil.copyfile(home / "theater.db", tmp)
        tmp.replace(cached)
    return time.perf_counter() - t0, False


def _timed_ctl(d: Daemon, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    t0 = time.perf_counter()
    r = d.ctl(*args, timeout=900)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"theaterctl {' '.join(args)} failed ({r.returncode}): {r.stderr[-500:]}")
    return dt, r


def _first_lines(d: Daemon, lines: int, *args: str) -> float:
    """Seconds until ``theaterctl ARGS`` has printed ``lines`` lines (then it is stopped)."""
    t0 = time.perf_counter()
    p = subprocess.Popen([*command("theaterctl"), *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         env=d.env)
    assert p.stdout is not None
    try:
        for _ in range(lines):
            if not p.stdout.readline():
                raise RuntimeError(f"theaterctl {' '.join(args)} printed fewer than {lines} lines")
        return time.perf_counter() - t0
    finally:
        p.kill()
        p.wait()
        p.stdout.close()


def run(quick: bool) -> list[Figure]:
    n = QUICK_EVENTS if quick else FULL_EVENTS
    d = Daemon()
    try:
        log(f"#8: preparing a {n:,}-event chain")
        build_s, from_cache = cached_chain(d.home, n)
        db_mib = sum(p.stat().st_size for p in d.home.glob("theater.db*")) / 2**20
        d.start(timeout=600)
        log(f"#8: chain verify ({n:,} events)")
        verify_s, r = _timed_ctl(d, "chain", "verify", "big")
        if f"{n} events" not in r.stdout:
            raise RuntimeError(f"unexpected verify output: {r.stdout!r}")
        show = []
        for _ in range(3):
            dt, r = _timed_ctl(d, "chain", "show", "big", "--limit", "50")
            if len(r.stdout.splitlines()) < 50:
                raise RuntimeError(f"chain show printed {len(r.stdout.splitlines())} lines")
            show.append(dt)
        first = median([_first_lines(d, 51, "chain", "show", "big") for _ in range(3)])
    finally:
        d.stop()
    rate = n / verify_s
    scale = "" if n >= FULL_EVENTS else f"quick run: {n:,} events, not 1,000,000; "
    return [
        Figure("8a", 8, f"chain verify rate ({n:,} events, theaterctl wall time)", rate, "events/s", None, "",
               None, ">= 250,000 events/s", rate >= 250_000,
               f"{scale}theaterctl chain verify took {verify_s:.2f} s; chain "
               f"{'copied from the cache' if from_cache else 'built'} in {build_s:.1f} s "
               f"({db_mib:.0f} MiB store); daemon start on it {d.start_seconds or 0:.2f} s"),
        Figure("8b", 8, f"chain show --limit 50, first page ({n:,} events)", median(show), "s", None, "", None,
               "< 0.5 s", median(show) < 0.5, f"{scale}median of 3 theaterctl runs"),
        Figure("8c", 8, f"chain show (no limit): first 50 lines ({n:,} events)", first, "s", None, "", None,
               "(reported)", None, f"{scale}median of 3; oldest events first, pages of up to 1000"),
    ]
