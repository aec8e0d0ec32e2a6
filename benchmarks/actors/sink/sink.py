"""sink: the benchmarks' target actor.  Counts every message (so each one changes the state, as in a
real actor) and answers a request with the request itself."""

from __future__ import annotations

import json


def _bump(state: bytes | None) -> bytes:
    n = json.loads(state)["n"] if state else 0
    return json.dumps({"n": n + 1}).encode()


def handle_send(state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None]:
    return (_bump(state),)


def handle_request(state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None, tuple[bytes]]:
    return _bump(state), (params[0],)
