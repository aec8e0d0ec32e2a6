"""spin: a CPU-bound actor for benchmark #9.  A request ``{"work": N}`` runs a pure-Python loop of
N iterations (no I/O, no host call, holds its worker's GIL throughout) and answers the loop's result;
the state is not changed."""

from __future__ import annotations

import json


def handle_request(state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None, tuple[bytes]]:
    n = int(json.loads(params[0])["work"])
    acc = 0
    for i in range(n):
        acc = (acc * 31 + i) & 0xFFFFFFFF
    return state, (str(acc).encode(),)
