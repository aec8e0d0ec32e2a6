"""echo: replies to every request with the message itself; counts what it saw.

On a channel it echoes every message back on the same channel.
"""

from __future__ import annotations

import json

from actors import message_server


def _seen(state: bytes | None) -> int:
    return int(json.loads(state).get("seen", 0)) if state else 0


def _bump(state: bytes | None) -> bytes:
    return json.dumps({"seen": _seen(state) + 1}).encode()


def handle_send(state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None]:
    return (_bump(state),)


def handle_request(state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None, tuple[bytes]]:
    (msg,) = params
    return _bump(state), (msg,)


def handle_channel_open(state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None, tuple[message_server.ChannelAccept]]:
    return state, (message_server.ChannelAccept(True, None),)


def handle_channel_message(state: bytes | None, params: tuple[str, bytes]) -> tuple[bytes | None]:
    channel_id, msg = params
    message_server.send_on_channel(channel_id, msg)
    return (_bump(state),)


def handle_channel_close(state: bytes | None, params: tuple[str]) -> tuple[bytes | None]:
    return (state,)
