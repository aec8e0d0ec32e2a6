"""names: a tiny directory of people's names, asked by the greeter.

    {"type": "add", "name": "Ada"}              (send)
    {"type": "get"}                              (request) -> {"names": [...]}
"""

from __future__ import annotations

import json


def _names(state: bytes | None) -> list[str]:
    return list(json.loads(state).get("names", [])) if state else []


def handle_send(state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None]:
    message = json.loads(params[0])
    if message.get("type") != "add" or not isinstance(message.get("name"), str):
        raise ValueError('expected {"type": "add", "name": "..."}')
    return (json.dumps({"names": [*_names(state), message["name"]]}).encode(),)


def handle_request(state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None, tuple[bytes]]:
    message = json.loads(params[0])
    if message.get("type") != "get":
        raise ValueError('expected {"type": "get"}')
    return state, (json.dumps({"names": _names(state)}).encode(),)
