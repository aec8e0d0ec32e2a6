"""#6: many actors in one daemon: spawn rate, memory per idle actor, request p50.

Two daemons side by side.  Each gets one ``counter`` actor (the example);
then the second gets N more counters, spawned through
pipelined ``spawn`` calls (``SPAWN_WINDOW`` in flight); the spawn rate is N
over that time.  Memory per idle actor is the growth of the daemon's VmRSS
(``/proc/PID/status``) plus the VmRSS of its workers over the spawns divided by N, read after a short
settle.  Last, the request p50 with N+1 actors, each request to a random one
of them (and, in the notes, to the first actor again), measured in blocks
that alternate with blocks to the 1-actor daemon (the baseline), so that
machine noise hits both alike.

The full run spawns ``FULL_ACTORS`` (10,000, as the target says); ``--quick``
spawns 200.
"""

from __future__ import annotations

import random
import time
from typing import Any

from .common import COUNTER, Daemon, Figure, log, percentile, pipelined, ratio, daemon_and_workers_rss_kib

FULL_ACTORS = 10_000
QUICK_ACTORS = 200
SPAWN_WINDOW = 25
GET = b'{"type":"get"}'


def _latencies(client: Any, actors: list[str], n: int) -> list[float]:
    out = []
    clock = time.perf_counter
    for i in range(n):
        actor = actors[i % len(actors)]
        t = clock()
        client.call("request", actor=actor, msg=GET)
        out.append(clock() - t)
    return out


def run(quick: bool) -> list[Figure]:
    n = QUICK_ACTORS if quick else FULL_ACTORS
    blocks, per_block = (2, 100) if quick else (10, 200)
    rng = random.Random(6)
    base: list[float] = []
    many: list[float] = []
    same: list[float] = []
    with Daemon() as one, one.client(timeout=None) as c1, Daemon() as d, d.client(timeout=None) as c:
        c1.spawn(str(COUNTER), name="a0")
        c.spawn(str(COUNTER), name="a0")
        _latencies(c1, ["a0"], 100)
        _latencies(c, ["a0"], 100)
        time.sleep(0.5)
        rss0, threads0 = daemon_and_workers_rss_kib(d, c), d.threads()
        daemon0 = d.rss_kib()
        log(f"#6: spawning {n} idle actors")
        names = [f"a{i}" for i in range(1, n + 1)]
        calls = [("spawn", {"manifest": str(COUNTER), "name": name}) for name in names]
        t0 = time.perf_counter()
        pipelined(c, calls, SPAWN_WINDOW)
        spawn_s = time.perf_counter() - t0
        time.sleep(1.0)
        rss1, threads1 = daemon_and_workers_rss_kib(d, c), d.threads()
        daemon1, workers1 = d.rss_kib(), len(c.status().get("workers", []))
        running = c.status()["actors"]
        _latencies(c, ["a0"], 100)
        log(f"#6: {blocks} x {per_block} requests to each daemon, alternating")
        for _ in range(blocks):
            base.extend(_latencies(c1, ["a0"], per_block))
            many.extend(_latencies(c, rng.sample(names, min(n, per_block)) * (per_block // min(n, per_block) + 1),
                                   per_block))
            same.extend(_latencies(c, ["a0"], per_block // 4))
    per_actor = (rss1 - rss0) / n
    b50, m50, s50 = percentile(base, 50), percentile(many, 50), percentile(same, 50)
    r = ratio(m50, b50)
    scale = "" if n >= FULL_ACTORS else f"quick run: {n} actors, not 10,000; "
    return [
        Figure("6a", 6, f"spawn rate ({n} actors, pipelined)", n / spawn_s, "spawns/s", None, "", None,
               "(reported)", None, f"{scale}{n} spawns in {spawn_s:.2f} s, {SPAWN_WINDOW} in flight; "
               f"{running} actors running after"),
        Figure("6b", 6, f"memory per idle actor ({n} actors)", per_actor, "KiB", None, "", None,
               "<= 16 KiB", per_actor <= 16,
               f"{scale}VmRSS of the daemon plus its workers {rss0 / 1024:.1f} MiB with 1 actor -> {rss1 / 1024:.1f} MiB "
               f"with {n + 1} ({workers1} workers); the daemon alone {daemon0 / 1024:.1f} -> {daemon1 / 1024:.1f} MiB "
               f"({(daemon1 - daemon0) / n:.1f} KiB per actor); "
               f"threads {threads0} -> {threads1}"),
        Figure("6c", 6, f"request p50 with {n + 1} actors (random target)", m50, "s", b50,
               "daemon with 1 actor, same run", r, "<= 1.15x 1 actor", r is not None and r <= 1.15,
               f"{scale}{len(many)} requests each, alternating blocks between the two daemons; p99 "
               f"{percentile(many, 99) * 1e6:.0f} us vs {percentile(base, 99) * 1e6:.0f} us; always the first actor "
               f"of the big daemon: p50 {s50 * 1e6:.0f} us"),
    ]
