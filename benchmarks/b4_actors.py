"""#4: actor-to-actor request latency and one-way throughput inside the daemon, vs pykka.

theater: the ``driver`` bench actor's handler calls ``message_server.request``
(or ``send``) N times to the ``sink`` actor and reports the time it took, so
the client connection is not in the measurement.  A send loop ends with one
request, which returns only after every earlier send was handled (FIFO
mailbox), so throughput counts handled messages.

pykka (same run, same process tree, ThreadingActor): a driver actor's
``on_receive`` calls ``sink.ask`` N times, or ``sink.tell`` N times then one
``ask``.  Rounds alternate theater / pykka; the figure is the median round.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .common import DRIVER, SINK, Daemon, Figure, log, median, percentile, ratio, spawn


def _theater(client: Any, op: str, n: int) -> dict[str, Any]:
    order = json.dumps({"op": op, "n": n, "target": "sink", "timeout": 300}).encode()
    return json.loads(client.call("request", actor="driver", msg=order, timeout=600))


def _pykka_actors() -> Any:
    try:
        import pykka
    except ImportError:
        return None

    class Sink(pykka.ThreadingActor):
        def __init__(self) -> None:
            super().__init__()
            self.n = 0

        def on_receive(self, message: Any) -> Any:
            self.n += 1
            return message

    class Driver(pykka.ThreadingActor):
        def __init__(self, sink: Any) -> None:
            super().__init__()
            self.sink = sink

        def on_receive(self, message: Any) -> Any:
            op, n = message
            payload = {"type": "ping"}
            clock = time.perf_counter
            lat: list[float] = []
            t0 = clock()
            if op == "request":
                for _ in range(n):
                    t = clock()
                    self.sink.ask(payload)
                    lat.append(clock() - t)
            else:
                for _ in range(n):
                    self.sink.tell(payload)
                self.sink.ask(payload)
            return {"n": n, "elapsed": clock() - t0, "lat": lat}

    sink = Sink.start()
    driver = Driver.start(sink)
    return pykka, sink, driver


def run(quick: bool) -> list[Figure]:
    rounds, n_req, n_send = (1, 100, 200) if quick else (3, 1000, 2000)
    pk = _pykka_actors()
    t_lat: list[float] = []
    p_lat: list[float] = []
    t_rate: list[float] = []
    p_rate: list[float] = []
    try:
        with Daemon() as d, d.client() as c:
            spawn(c, SINK)
            spawn(c, DRIVER)
            _theater(c, "request", 50)
            _theater(c, "send", 50)
            if pk is not None:
                pk[2].ask(("request", 50))
                pk[2].ask(("send", 50))
            log(f"#4: {rounds} rounds of {n_req} requests and {n_send} sends, theater and pykka")
            for _ in range(rounds):
                r = _theater(c, "request", n_req)
                t_lat.extend(r["lat"])
                r = _theater(c, "send", n_send)
                t_rate.append(n_send / r["elapsed"])
                if pk is not None:
                    r = pk[2].ask(("request", n_req))
                    p_lat.extend(r["lat"])
                    r = pk[2].ask(("send", n_send))
                    p_rate.append(n_send / r["elapsed"])
    finally:
        if pk is not None:
            pk[0].ActorRegistry.stop_all()
    t50 = percentile(t_lat, 50)
    p50 = percentile(p_lat, 50) if p_lat else None
    tr = median(t_rate)
    pr = median(p_rate) if p_rate else None
    missing = "" if pk is not None else "pykka is not installed (pip install -e '.[bench]'): no baseline; "
    r_lat, r_rate = ratio(t50, p50), ratio(tr, pr)
    return [
        Figure("4a", 4, "actor-to-actor request latency in the daemon, chain on: p50", t50, "s",
               p50, "pykka ask between two actors", r_lat, "<= 4x pykka",
               None if r_lat is None else r_lat <= 4,
               missing + f"{len(t_lat)} requests; p99 theater {percentile(t_lat, 99) * 1e6:.0f} us"
               + (f", pykka {percentile(p_lat, 99) * 1e6:.0f} us" if p_lat else "")),
        Figure("4b", 4, "actor-to-actor one-way throughput in the daemon, chain on", tr, "msgs/s",
               pr, "pykka tell between two actors", r_rate, ">= 0.25x pykka",
               None if r_rate is None else r_rate >= 0.25,
               missing + f"{rounds} rounds x {n_send} sends, counted until the sink handled all; per round theater "
               + ", ".join(f"{x:,.0f}" for x in t_rate)
               + ("; pykka " + ", ".join(f"{x:,.0f}" for x in p_rate) if p_rate else "")),
    ]
