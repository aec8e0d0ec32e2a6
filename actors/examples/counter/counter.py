"""counter: ``send`` increments, ``request`` answers with the count.

Messages (JSON):
    {"type": "increment", "amount": 2}   (send; amount defaults to 1)
    {"type": "reset"}                    (send)
    {"type": "get"}                      (request) -> {"count": N}
"""

from __future__ import annotations

import json


def _count(state: bytes | None) -> int:
    return int(json.loads(state)["count"]) if state else 0


def _state(count: int) -> bytes:
    return json.dumps({"count": count}).encode()


def init(state: bytes | None) -> tuple[bytes | None]:
    return (state if state else _state(0),)


def handle_send(state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None]:
    (msg,) = params
    message = json.loads(msg)
    kind = message.get("type")
    if kind == "increment":
        amount = message.get("amount", 1)
        if not isinstance(amount, int) or isinstance(amount, bool):
            raise ValueError("amount must be an integer")
        return (_state(_count(state) + amount),)
    if kind == "reset":
        return (_state(0),)
    raise ValueError(f"unknown message type {kind!r} (expected increment or reset)")


def handle_request(state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None, tuple[bytes]]:
    (msg,) = params
    message = json.loads(msg)
    if message.get("type") != "get":
        raise ValueError(f"unknown request type {message.get('type')!r} (expected get)")
    return state, (json.dumps({"count": _count(state)}).encode(),)
