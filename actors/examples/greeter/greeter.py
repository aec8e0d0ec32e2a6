"""greeter: answers a request by asking the ``names`` actor (actor-to-actor request).

    {"type": "greet"}   (request) -> {"greeting": "Hello, Ada and Grace!"}
"""

from __future__ import annotations

import json

from actors import message_server


def handle_request(state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None, tuple[bytes]]:
    message = json.loads(params[0])
    if message.get("type") != "greet":
        raise ValueError('expected {"type": "greet"}')
    target = json.loads(state).get("names_actor", "names") if state else "names"
    reply = json.loads(message_server.request(target, b'{"type": "get"}'))
    names = reply.get("names") or ["nobody"]
    text = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return state, (json.dumps({"greeting": f"Hello, {text}!"}).encode(),)
