"""#9: CPU-bound handlers: two actors on two cores against one actor.

Actor code runs in worker processes (``theaterd --workers 2`` here: one per
core, actors placed on the least loaded), so two actors whose handlers only
compute should handle nearly twice the messages per second of one.  The
``spin`` bench actor answers ``{"work": N}`` after a pure-Python loop of N
iterations (about 20 ms; calibrated in this process: long enough that the daemon's own work per request, about 0.5 ms, is small beside it).  Each client thread
has its own connection and keeps ``WINDOW`` requests in flight (pipelined), so
its actor's mailbox is never empty for long.

Rounds alternate: one client to one actor, then two clients to two actors at
once; the figure is the median rate of the two-actor rounds over the median of
the one-actor rounds (handled requests per second).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import os

from .common import BENCH, Daemon, Figure, log, median, ratio, tree_cpu_seconds

SPIN = BENCH / "actors" / "spin" / "manifest.toml"
WINDOW = 8
TARGET_MS = 20.0


def _calibrate(target_s: float) -> int:
    """Iterations of spin's loop that take about ``target_s`` here."""
    def loop(n: int) -> None:
        acc = 0
        for i in range(n):
            acc = (acc * 31 + i) & 0xFFFFFFFF

    n = 20000
    while True:
        t = time.perf_counter()
        loop(n)
        took = time.perf_counter() - t
        if took > 0.02:
            return max(1000, int(n * target_s / took))
        n *= 2


def _client(d: Daemon, actor: str, msg: bytes, count: int, out: list[float], barrier: threading.Barrier) -> None:
    with d.client(timeout=120) as c:
        calls = [("request", {"actor": actor, "msg": msg, "timeout": 120})] * WINDOW
        c.pipeline(calls[:2])
        barrier.wait()
        t = time.perf_counter()
        done = 0
        while done < count:
            results = c.pipeline(calls)
            bad = [r for r in results if isinstance(r, Exception)]
            if bad:
                raise RuntimeError(f"spin request failed: {bad[0]!r}")
            done += len(calls)
        out.append(time.perf_counter() - t)


def _round(d: Daemon, actors: list[str], msg: bytes, count: int, pids: list[int], busy: list[float]) -> float:
    """Handled requests per second with one client per actor, all at once; appends to ``busy`` the cores
    the workers ``pids`` kept busy meanwhile."""
    cpu0 = sum(tree_cpu_seconds(p) for p in pids)
    times: list[float] = []
    barrier = threading.Barrier(len(actors))
    threads = [threading.Thread(target=_client, args=(d, a, msg, count, times, barrier)) for a in actors]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if len(times) != len(actors):
        raise RuntimeError("a spin client failed")
    wall = time.perf_counter() - t
    busy.append((sum(tree_cpu_seconds(p) for p in pids) - cpu0) / wall)
    return len(actors) * count / max(max(times), 1e-9) if wall > 0 else 0.0


def run(quick: bool) -> list[Figure]:
    rounds, count = (2, 8) if quick else (3, 48)
    iterations = _calibrate(TARGET_MS / 1000)
    msg = json.dumps({"work": iterations}).encode()
    one: list[float] = []
    two: list[float] = []
    with Daemon("--workers", "2") as d, d.client() as c:
        c.spawn(str(SPIN), name="spin1")
        c.spawn(str(SPIN), name="spin2")
        c.call("request", actor="spin1", msg=msg)
        c.call("request", actor="spin2", msg=msg)
        pids = sorted({int(c.inspect(a)["worker"]["pid"]) for a in ("spin1", "spin2")})
        load = os.getloadavg()[0]
        busy1: list[float] = []
        busy2: list[float] = []
        log(f"#9: {rounds} rounds of {count} CPU-bound requests ({iterations} iterations, ~{TARGET_MS:g} ms each), "
            f"1 actor then 2 actors")
        for _ in range(rounds):
            one.append(_round(d, ["spin1"], msg, count, pids, busy1))
            two.append(_round(d, ["spin1", "spin2"], msg, count, pids, busy2))
    r1, r2 = median(one), median(two)
    speedup = ratio(r2, r1)
    return [
        Figure("9", 9, "CPU-bound handlers, 2 actors on 2 cores (handled requests/s)", r2, "msgs/s",
               r1, "1 actor, same run", speedup, ">= 1.7x 1 actor",
               None if speedup is None else speedup >= 1.7,
               f"{rounds} rounds each, {count} requests per actor per round, {WINDOW} in flight per client, "
               f"{iterations} loop iterations per request; the two actors in {len(pids)} worker(s); per round "
               f"1 actor " + ", ".join(f"{x:,.0f}" for x in one) + "; 2 actors " + ", ".join(f"{x:,.0f}" for x in two)
               + f"; the workers kept {median(busy1):.2f} cores busy with 1 actor, {median(busy2):.2f} with 2; "
               f"load average {load:.2f} before the rounds"),
    ]
