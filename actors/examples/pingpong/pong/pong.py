"""pong: accepts channels and answers every ``{"ping": i}`` with ``{"pong": i}``.

The partner of ``ping`` (see ``pingpong/ping/ping.py``); any actor or a
terminal can play::

    theaterctl channel pong '{"rounds": 2}'
    {"ping": 1}          <- typed
    {"pong": 1}          <- printed

The initial message is ignored.  A message that is not ``{"ping": <int>}``
is answered with ``{"error": "..."}``.  State: ``{"rallies": {channel_id:
answered on it}, "answered": total}``; a channel is dropped from
``rallies`` when it closes.
"""

from __future__ import annotations

import json
from typing import Any

from actors import message_server


def _load(state: bytes | None) -> dict[str, Any]:
    doc = json.loads(state) if state else {}
    doc.setdefault("rallies", {})
    doc.setdefault("answered", 0)
    return doc


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def handle_channel_open(state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None, tuple[message_server.ChannelAccept]]:
    info = message_server.current_channel()
    doc = _load(state)
    if info is not None:
        doc["rallies"][info.channel_id] = 0
    return _dump(doc), (message_server.ChannelAccept(True, None),)


def handle_channel_message(state: bytes | None, params: tuple[str, bytes]) -> tuple[bytes | None]:
    channel_id, msg = params
    doc = _load(state)
    try:
        message = json.loads(msg)
    except (ValueError, UnicodeDecodeError):
        message = None
    n = message.get("ping") if isinstance(message, dict) else None
    if not isinstance(n, int) or isinstance(n, bool):
        message_server.send_on_channel(channel_id, b'{"error": "expected {\\"ping\\": <integer>}"}')
        return (state,)
    message_server.send_on_channel(channel_id, json.dumps({"pong": n}).encode())
    doc["rallies"][channel_id] = doc["rallies"].get(channel_id, 0) + 1
    doc["answered"] += 1
    return (_dump(doc),)


def handle_channel_close(state: bytes | None, params: tuple[str]) -> tuple[bytes | None]:
    (channel_id,) = params
    doc = _load(state)
    doc["rallies"].pop(channel_id, None)
    return (_dump(doc),)
