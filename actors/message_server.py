"""What an actor imports: the message-server host API.

Handlers run on a worker thread of the daemon.  While a handler runs, the
functions below talk to the daemon on behalf of *that* actor::

    from actors import message_server

    def handle_request(state, params):
        (msg,) = params
        reply = message_server.request("names", b'{"type": "get"}')
        return state, (reply,)

Every failure raises :class:`MessageServerError`; ``str(err)`` is the reason.
Calling these functions outside a handler raises it too.  For unit tests,
:mod:`actors.testing` installs a fake host that records calls.

This module imports nothing heavy (no trio): the daemon installs a *host*
object per worker thread with :func:`_bind_host`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Protocol

__all__ = [
    "ChannelAccept",
    "ChannelInfo",
    "MessageServerError",
    "close_channel",
    "current_channel",
    "current_actor",
    "open_channel",
    "request",
    "send",
    "send_on_channel",
]


class MessageServerError(Exception):
    """A message-server operation failed; ``str(err)`` is the reason."""


@dataclass(frozen=True, slots=True)
class ChannelAccept:
    """What ``handle_channel_open`` returns: accept, or reject with a message."""

    accepted: bool
    message: bytes | None = None


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    """The channel being opened, as seen from ``handle_channel_open``."""

    channel_id: str
    opener: str  # the opening actor's id, or "external" for a terminal client


class Host(Protocol):
    """What the daemon (or a test fake) provides to the functions below."""

    actor_id: str

    def send(self, actor_id: str, msg: bytes, timeout: float | None) -> None: ...

    def request(self, actor_id: str, msg: bytes, timeout: float | None) -> bytes: ...

    def open_channel(self, actor_id: str, initial_msg: bytes, timeout: float | None) -> str: ...

    def send_on_channel(self, channel_id: str, msg: bytes) -> None: ...

    def close_channel(self, channel_id: str) -> None: ...


_local = threading.local()


def _bind_host(host: Host | None, channel: ChannelInfo | None = None) -> None:
    """Install (or with None, remove) the host for the current thread.  Daemon use."""
    _local.host = host
    _local.channel = channel


def _host() -> Host:
    host = getattr(_local, "host", None)
    if host is None:
        raise MessageServerError("the message server is only available inside an actor's handler")
    return host


def _bytes(value: Any, what: str) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    raise MessageServerError(f"{what} must be bytes (JSON), not {type(value).__name__}")


def send(actor_id: str, msg: bytes, timeout: float | None = None) -> None:
    """One-way message; returns once the target's mailbox has durably accepted it."""
    _host().send(actor_id, _bytes(msg, "msg"), timeout)


def request(actor_id: str, msg: bytes, timeout: float | None = None) -> bytes:
    """Send ``msg`` and wait for the reply (default timeout: the daemon's, 30 s)."""
    return _host().request(actor_id, _bytes(msg, "msg"), timeout)


def open_channel(actor_id: str, initial_msg: bytes, timeout: float | None = None) -> str:
    """Open a channel; returns its id once the target accepted, raises if it rejected."""
    return _host().open_channel(actor_id, _bytes(initial_msg, "initial_msg"), timeout)


def send_on_channel(channel_id: str, msg: bytes) -> None:
    _host().send_on_channel(channel_id, _bytes(msg, "msg"))


def close_channel(channel_id: str) -> None:
    _host().close_channel(channel_id)


def current_channel() -> ChannelInfo | None:
    """Inside ``handle_channel_open``: the channel being opened and who opens it."""
    return getattr(_local, "channel", None)


def current_actor() -> str:
    """The id of the actor whose handler is running."""
    return _host().actor_id
