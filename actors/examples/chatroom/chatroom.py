"""chatroom: every channel is a member; what one member says, the others hear.

Open a channel to join; the initial message names you (default "anon")::

    theaterctl channel chatroom '{"join": "bob"}'

Messages the members receive (JSON):
    {"joined": "bob"}                        someone else joined
    {"from": "bob", "msg": <the message>}    someone else said something
    {"left": "bob"}                          someone else's channel closed

Every message a member sends on its channel is broadcast to all *other*
members as ``{"from": name, "msg": message}``; nothing is echoed back to the
sender.  The members live in the state as ``{"members": {channel_id: name}}``;
members left over from before a daemon restart (their channels are gone) are
dropped the first time a broadcast to them fails.
"""

from __future__ import annotations

import json
from typing import Any

from actors import message_server

DEFAULT_NAME = "anon"
MAX_NAME = 64


def _members(state: bytes | None) -> dict[str, str]:
    if not state:
        return {}
    members = json.loads(state).get("members") or {}
    return {str(k): str(v) for k, v in members.items()}


def _state(members: dict[str, str]) -> bytes:
    return json.dumps({"members": members}).encode()


def _decode(msg: bytes) -> Any:
    try:
        return json.loads(msg)
    except (ValueError, UnicodeDecodeError):
        return bytes(msg).decode("utf-8", "replace")


def _name_from(initial: bytes) -> str:
    value = _decode(initial) if initial else None
    name = value.get("join") if isinstance(value, dict) else None
    if not isinstance(name, str) or not name.strip():
        return DEFAULT_NAME
    return name.strip()[:MAX_NAME]


def _broadcast(members: dict[str, str], sender: str | None, message: Any) -> None:
    """Send ``message`` to every member except the channel ``sender``.

    A member whose channel the daemon no longer knows at all (the daemon was
    restarted since it joined) is dropped from ``members``.  A channel that is
    merely closing stays: its ``handle_channel_close`` removes it and tells
    the others.
    """
    data = json.dumps(message).encode()
    for channel_id in list(members):
        if channel_id == sender:
            continue
        try:
            message_server.send_on_channel(channel_id, data)
        except message_server.MessageServerError as exc:
            if "unknown channel" in str(exc):
                del members[channel_id]


def handle_channel_open(state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None, tuple[message_server.ChannelAccept]]:
    (initial,) = params
    info = message_server.current_channel()
    if info is None:  # cannot happen in the daemon; keeps the type checker honest
        return state, (message_server.ChannelAccept(False, b"no channel"),)
    members = _members(state)
    name = _name_from(initial)
    _broadcast(members, info.channel_id, {"joined": name})
    members[info.channel_id] = name
    return _state(members), (message_server.ChannelAccept(True, None),)


def handle_channel_message(state: bytes | None, params: tuple[str, bytes]) -> tuple[bytes | None]:
    channel_id, msg = params
    members = _members(state)
    name = members.get(channel_id, DEFAULT_NAME)
    _broadcast(members, channel_id, {"from": name, "msg": _decode(msg)})
    return (_state(members),)


def handle_channel_close(state: bytes | None, params: tuple[str]) -> tuple[bytes | None]:
    (channel_id,) = params
    members = _members(state)
    name = members.pop(channel_id, None)
    if name is not None:
        _broadcast(members, None, {"left": name})
    return (_state(members),)
