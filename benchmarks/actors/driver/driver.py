"""driver: measures actor-to-actor messaging from inside the daemon (benchmark #4).

Request ``{"op": "request" | "send", "n": N, "target": "sink"}``; the handler
makes N ``message_server`` calls to the target in a loop and answers
``{"n": N, "elapsed": seconds, "lat": [seconds per request call]}``.  For
``send`` the loop ends with one request to the target: mailboxes are FIFO, so
when it returns every send has been handled, and ``elapsed`` covers that too
(``sent`` is the time when the last send was acknowledged).
"""

from __future__ import annotations

import json
import time

from actors import message_server


def handle_request(state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None, tuple[bytes]]:
    order = json.loads(params[0])
    op, n, target = order["op"], int(order["n"]), order["target"]
    payload = b"{}"
    timeout = float(order.get("timeout", 120))
    lat: list[float] = []
    clock = time.perf_counter
    t0 = clock()
    sent = None
    if op == "request":
        for _ in range(n):
            t = clock()
            message_server.request(target, payload, timeout)
            lat.append(clock() - t)
    elif op == "send":
        for _ in range(n):
            message_server.send(target, payload, timeout)
        sent = clock() - t0
        message_server.request(target, payload, timeout)
    else:
        raise ValueError(f"unknown op {op!r}")
    elapsed = clock() - t0
    return state, (json.dumps({"n": n, "elapsed": elapsed, "sent": sent, "lat": lat}).encode(),)
