"""#10: worker crash recovery: time from a worker's death to its actors answering again.

``theaterd --workers 1``: three ``sink`` actors share the one worker.  Each
round reads the worker's pid (``inspect``; every worker hosting them, should
a replacement have placed them apart), kills it with SIGKILL, waits until
the daemon has reaped it (``kill(pid, 0)`` fails: the daemon saw the death),
then sends one request to each of the three actors (pipelined on one
connection) and waits for all three answers.  The figure is the p50 over the
rounds of kill -> every actor answered.  The daemon replaces the worker and
loads the three actors into the new one from their last committed state.

Baseline (same run): a fresh interpreter importing what a worker imports
(``python -s -c 'import daemon.worker.runner, daemon.sandbox'``), the floor of
any replacement that starts a new process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from .common import ROOT, SINK, Daemon, Figure, _bench_env, log, median, percentile, ratio

ACTORS = ("s1", "s2", "s3")
MSG = b'{"type":"ping"}'


def _worker_pids(client: Any) -> set[int]:
    """The workers hosting the actors: one, unless a replacement placed them apart."""
    pids = {client.inspect(a).get("worker", {}).get("pid") for a in ACTORS}
    if None in pids:
        raise RuntimeError("an actor has no worker")
    return {int(p) for p in pids}


def _reaped(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.0002)
    raise RuntimeError(f"worker {pid} was not reaped within {timeout:g} s")


def _cold_start() -> float:
    env = _bench_env()
    t = time.perf_counter()
    subprocess.run([sys.executable, "-s", "-c", "import daemon.worker.runner, daemon.sandbox"], env=env, cwd=ROOT,
                   check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - t


def run(quick: bool) -> list[Figure]:
    rounds = 3 if quick else 15
    recover: list[float] = []
    detect: list[float] = []
    cold: list[float] = []
    spread: list[int] = []
    with Daemon("--workers", "1") as d, d.client(timeout=60) as c:
        for name in ACTORS:
            c.spawn(str(SINK), name=name)
        calls = [("request", {"actor": a, "msg": MSG}) for a in ACTORS]
        c.pipeline(calls)
        log(f"#10: {rounds} kills of the worker hosting {len(ACTORS)} actors")
        for _ in range(rounds):
            cold.append(_cold_start())
            pids = _worker_pids(c)
            spread.append(len(pids))
            c.pipeline(calls)
            t = time.perf_counter()
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            for pid in pids:
                _reaped(pid)
            detect.append(time.perf_counter() - t)
            results = c.pipeline(calls)
            took = time.perf_counter() - t
            bad = [r for r in results if isinstance(r, Exception)]
            if bad:
                raise RuntimeError(f"an actor did not answer after its worker died: {bad[0]!r}")
            recover.append(took)
            time.sleep(0.05)
    p50, base = median(recover), median(cold)
    return [
        Figure("10", 10, "worker crash recovery: kill -9 -> its 3 actors answer again, p50", p50, "s",
               base, "fresh interpreter importing the worker's modules", ratio(p50, base), "p50 <= 200 ms",
               p50 <= 0.2,
               f"{rounds} kills; p90 {percentile(recover, 90) * 1e3:.0f} ms, max {max(recover) * 1e3:.0f} ms; "
               f"kill -> reaped by the daemon p50 {median(detect) * 1e3:.1f} ms; workers hosting the 3 actors before each "
               f"kill: {', '.join(map(str, spread))} (every one of them is killed)"),
    ]
