"""#7: 64 concurrent clients, 100 requests each: zero errors, p50 and p99.

64 connections (threads spread over 4 worker processes) each make 100
requests, waiting for each reply, to 8 ``sink`` actors (client i -> sink i % 8).
"""

from __future__ import annotations

from .common import SINK, Daemon, Figure, load, log, percentile, spawn

CLIENTS = 64
ACTORS = 8


def run(quick: bool) -> list[Figure]:
    count = 10 if quick else 100
    with Daemon() as d:
        with d.client() as c:
            for i in range(ACTORS):
                spawn(c, SINK, f"sink{i}")
        log(f"#7: {CLIENTS} clients x {count} requests")
        res = load(d, "request", [f"sink{i % ACTORS}" for i in range(CLIENTS)], count)
    total = CLIENTS * count
    p50 = percentile(res.lat, 50) if res.lat else None
    p99 = percentile(res.lat, 99) if res.lat else None
    scale = "" if count == 100 else f"quick run: {count} requests per client, not 100; "
    note = (f"{scale}{res.ops} of {total} requests answered in {res.seconds:.2f} s "
            f"({res.ops / res.seconds:,.0f}/s); daemon CPU {res.daemon_cpu / max(res.ops, 1) * 1e6:.0f} us per request"
            + (f"; errors e.g. {res.error_samples}" if res.error_samples else ""))
    return [
        Figure("7a", 7, f"{CLIENTS} concurrent clients x {count} requests: errors", float(res.errors), "", None, "",
               None, "0 errors", res.errors == 0 and res.ops == total, note),
        Figure("7b", 7, f"{CLIENTS} concurrent clients: request p50", p50, "s", None, "", None, "(reported)", None, ""),
        Figure("7c", 7, f"{CLIENTS} concurrent clients: request p99", p99, "s", None, "", None, "(reported)", None, ""),
    ]
