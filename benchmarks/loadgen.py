"""Load worker for #5 and #7: T client threads in one process, each with its own connection.

``python -m benchmarks.loadgen SOCKET OP COUNT START_AT ACTOR [ACTOR ...]`` with
``T = number of ACTORs`` (thread i talks to ACTOR i).  Every thread connects
first, then waits until wall-clock ``START_AT`` so that all workers of a run
begin together, then makes COUNT calls of OP (``send`` or ``request``), each
waiting for its acknowledgement or reply.  Prints one JSON document: latencies,
errors (with a few samples) and the first start / last end wall times.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

MSG = b'{"type":"load"}'


def worker(socket: str, op: str, count: int, start_at: float, actor: str, out: dict[str, Any]) -> None:
    from theaterctl.client import Client

    lat: list[float] = []
    errors: list[str] = []
    try:
        c = Client.connect(socket, timeout=60)
    except Exception as exc:  # noqa: BLE001 - reported
        out.update(lat=lat, errors=[f"connect: {exc!r}"] * count, start=time.time(), end=time.time())
        return
    with c:
        delay = start_at - time.time()
        if delay > 0:
            time.sleep(delay)
        start = time.time()
        clock = time.perf_counter
        for _ in range(count):
            t = clock()
            try:
                c.call(op, actor=actor, msg=MSG, timeout=60)
            except Exception as exc:  # noqa: BLE001 - counted
                errors.append(repr(exc))
                if "closed the connection" in str(exc):
                    errors.extend(["connection lost"] * (count - len(lat) - len(errors)))
                    break
                continue
            lat.append(clock() - t)
        out.update(lat=lat, errors=errors, start=start, end=time.time())


def main(argv: list[str]) -> None:
    socket, op, count, start_at, actors = argv[0], argv[1], int(argv[2]), float(argv[3]), argv[4:]
    outs: list[dict[str, Any]] = [{} for _ in actors]
    threads = [threading.Thread(target=worker, args=(socket, op, count, start_at, a, o))
               for a, o in zip(actors, outs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    errors = [e for o in outs for e in o.get("errors", [])]
    json.dump({
        "lat": [x for o in outs for x in o.get("lat", [])],
        "errors": len(errors),
        "error_samples": sorted(set(errors))[:5],
        "start": min(o["start"] for o in outs if "start" in o),
        "end": max(o["end"] for o in outs if "end" in o),
    }, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])
