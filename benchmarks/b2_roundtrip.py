"""#2: request round trip through the daemon on a persistent connection (chain on, durability normal).

The same :class:`theaterctl.client.Client` talks to theaterd (``sink`` actor:
one handler call, one chain event, one state per request) and to the bare trio
echo server.  Both connections stay open; the two are measured in alternating
blocks so that machine noise hits both alike.
"""

from __future__ import annotations

import time
from typing import Any

from .common import SINK, Daemon, EchoServer, Figure, log, percentile, ratio, spawn

MSG = b'{"type":"ping"}'


def _block(client: Any, n: int, out: list[float]) -> None:
    call = client.call
    clock = time.perf_counter
    for _ in range(n):
        t = clock()
        call("request", actor="sink", msg=MSG)
        out.append(clock() - t)


def measure(quick: bool) -> dict[str, list[float]]:
    blocks, per_block, warm = (4, 100, 50) if quick else (10, 500, 300)
    lat: dict[str, list[float]] = {"theater": [], "echo": []}
    with Daemon() as d, EchoServer() as e:
        with d.client() as tc, e.client() as ec:
            spawn(tc, SINK)
            _block(tc, warm, [])
            _block(ec, warm, [])
            log(f"#2: {blocks} x {per_block} requests each, alternating")
            for _ in range(blocks):
                _block(ec, per_block, lat["echo"])
                _block(tc, per_block, lat["theater"])
    return lat


def run(quick: bool) -> list[Figure]:
    lat = measure(quick)
    t50, t99 = percentile(lat["theater"], 50), percentile(lat["theater"], 99)
    e50, e99 = percentile(lat["echo"], 50), percentile(lat["echo"], 99)
    r50 = ratio(t50, e50)
    n = len(lat["theater"])
    return [
        Figure("2a", 2, "request round trip, persistent connection, chain on: p50", t50, "s",
               e50, "bare trio echo server, same framing", r50, "<= 2.0x echo", r50 is not None and r50 <= 2.0,
               f"{n} requests each; mean theater {sum(lat['theater']) / n * 1e6:.0f} us, echo "
               f"{sum(lat['echo']) / n * 1e6:.0f} us"),
        Figure("2b", 2, "request round trip, persistent connection, chain on: p99", t99, "s",
               e99, "bare trio echo server, same framing", ratio(t99, e99), "(reported)", None, ""),
    ]
