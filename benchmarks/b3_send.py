"""#3: one-way send throughput on one connection, pipelined, chain on.

``send`` calls go out through :meth:`Client.pipeline` in windows of
``WINDOW`` calls (all of a window's calls are written before any reply is
read; the daemon disconnects a client that leaves thousands of replies
unread, so an unbounded pipeline is not an option).  A send is acknowledged
once the message is durably in the actor's mailbox; the figure is
acknowledged sends per second.  After each theater round one request drains
the mailbox (its handling rate is reported in the notes), so rounds do not
overlap.  The bare echo server gets the identical call sequence.
"""

from __future__ import annotations

import time
from typing import Any

from .common import SINK, Daemon, EchoServer, Figure, log, median, pipelined, ratio, spawn, wait_handled

WINDOW = 500
MSG = b'{"type":"tick"}'


def _round(client: Any, n: int) -> float:
    calls = [("send", {"actor": "sink", "msg": MSG})] * n
    t0 = time.perf_counter()
    pipelined(client, calls, WINDOW)
    return n / (time.perf_counter() - t0)


def run(quick: bool) -> list[Figure]:
    rounds, n = (2, 1000) if quick else (3, 10000)
    rates: dict[str, list[float]] = {"theater": [], "echo": []}
    drain: list[float] = []
    with Daemon() as d, EchoServer() as e:
        with d.client() as tc, e.client() as ec:
            spawn(tc, SINK)
            _round(tc, WINDOW)
            wait_handled(tc, "sink")
            _round(ec, WINDOW)
            log(f"#3: {rounds} rounds of {n} pipelined sends each")
            for _ in range(rounds):
                rates["echo"].append(_round(ec, n))
                t0 = time.perf_counter()
                rates["theater"].append(_round(tc, n))
                wait_handled(tc, "sink")
                drain.append(n / (time.perf_counter() - t0))
    t, b = median(rates["theater"]), median(rates["echo"])
    r = ratio(t, b)
    return [
        Figure("3", 3, "one-way sends, one connection, pipelined, chain on", t, "msgs/s", b,
               "bare trio echo server, pipelined", r, ">= 0.35x echo", r is not None and r >= 0.35,
               f"{rounds} rounds x {n} sends, window {WINDOW}; sent+handled by the actor: {median(drain):,.0f}/s; "
               "per round theater " + ", ".join(f"{x:,.0f}" for x in rates["theater"])
               + "; echo " + ", ".join(f"{x:,.0f}" for x in rates["echo"])),
    ]
