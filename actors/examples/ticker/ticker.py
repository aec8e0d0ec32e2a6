"""ticker: pushes numbered ticks on a channel, then closes it.

Open a channel; the initial message says how many ticks and how far apart::

    theaterctl channel ticker '{"count": 3, "interval": 0.5}'

    {"count": N, "interval": seconds}   initial message; defaults 5 and 0.2;
                                        count 0-10000, interval 0-60 s,
                                        anything else is rejected

The opener then receives ``{"tick": 1}`` ... ``{"tick": N}``, one every
``interval`` seconds, after which the ticker closes the channel itself.
Messages sent to the ticker on the channel are ignored.

How it works without blocking: a handler must return promptly, and the
message-server functions only work inside a handler, so the ticker cannot
push from ``handle_channel_open`` or from a thread of its own.  Instead,
``handle_channel_open`` accepts, remembers the channel in the state and
sends the actor *itself* a one-way message::

    {"tick": "<channel id>", "n": 1}    (send, from the ticker to itself)

``handle_send`` sleeps ``interval``, pushes tick ``n`` on the channel and
sends itself ``n + 1``, until the last tick, then closes the channel.  Other
actors' messages keep being handled between ticks.  If the opener closes the
channel first, ``handle_channel_close`` forgets it and the next self-message
is dropped.  The state is ``{"tickers": {channel_id: {"count", "interval",
"next"}}}``; a self-message whose ``n`` is not the expected ``next`` is
ignored, so replays and stray messages cannot add ticks.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

from actors import message_server

DEFAULT_COUNT = 5
DEFAULT_INTERVAL = 0.2
MAX_COUNT = 10_000
MAX_INTERVAL = 60.0


def _tickers(state: bytes | None) -> dict[str, dict[str, Any]]:
    return dict(json.loads(state).get("tickers") or {}) if state else {}


def _state(tickers: dict[str, dict[str, Any]]) -> bytes:
    return json.dumps({"tickers": tickers}).encode()


def _reject(state: bytes | None, reason: str) -> tuple[bytes | None, tuple[message_server.ChannelAccept]]:
    return state, (message_server.ChannelAccept(False, reason.encode()),)


def _self_message(channel_id: str, n: int) -> None:
    msg = json.dumps({"tick": channel_id, "n": n}).encode()
    message_server.send(message_server.current_actor(), msg)


def handle_channel_open(state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None, tuple[message_server.ChannelAccept]]:
    (initial,) = params
    try:
        options = json.loads(initial) if initial.strip() else {}
    except (ValueError, UnicodeDecodeError):
        return _reject(state, "the initial message must be JSON")
    if not isinstance(options, dict):
        return _reject(state, 'expected {"count": N, "interval": seconds}')
    count = options.get("count", DEFAULT_COUNT)
    interval = options.get("interval", DEFAULT_INTERVAL)
    if not isinstance(count, int) or isinstance(count, bool) or not 0 <= count <= MAX_COUNT:
        return _reject(state, f"count must be an integer from 0 to {MAX_COUNT}")
    if (not isinstance(interval, (int, float)) or isinstance(interval, bool) or not math.isfinite(interval)
            or not 0 <= interval <= MAX_INTERVAL):
        return _reject(state, f"interval must be a number of seconds from 0 to {MAX_INTERVAL:g}")
    info = message_server.current_channel()
    if info is None:
        return _reject(state, "no channel")
    tickers = _tickers(state)
    tickers[info.channel_id] = {"count": count, "interval": interval, "next": 1}
    # Queued behind this open, so the first tick is handled once the channel is open.
    _self_message(info.channel_id, 1)
    return _state(tickers), (message_server.ChannelAccept(True, None),)


def handle_send(state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None]:
    (msg,) = params
    message = json.loads(msg)
    if not isinstance(message, dict) or not isinstance(message.get("tick"), str):
        raise ValueError('ticker only handles its own {"tick": channel, "n": N} messages')
    channel_id = message["tick"]
    tickers = _tickers(state)
    entry = tickers.get(channel_id)
    if entry is None or message.get("n") != entry["next"]:
        return (state,)  # the channel is gone, or a stray/replayed message
    n = entry["next"]
    if n <= entry["count"]:
        time.sleep(entry["interval"])
        try:
            message_server.send_on_channel(channel_id, json.dumps({"tick": n}).encode())
        except message_server.MessageServerError:
            del tickers[channel_id]  # closed meanwhile (or lost in a daemon restart)
            return (_state(tickers),)
        n += 1
    if n > entry["count"]:
        del tickers[channel_id]
        try:
            message_server.close_channel(channel_id)
        except message_server.MessageServerError:
            pass
        return (_state(tickers),)
    entry["next"] = n
    _self_message(channel_id, n)
    return (_state(tickers),)


def handle_channel_message(state: bytes | None, params: tuple[str, bytes]) -> tuple[bytes | None]:
    return (state,)


def handle_channel_close(state: bytes | None, params: tuple[str]) -> tuple[bytes | None]:
    (channel_id,) = params
    tickers = _tickers(state)
    if tickers.pop(channel_id, None) is None:
        return (state,)
    return (_state(tickers),)
