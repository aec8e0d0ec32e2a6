"""wasm-greeter: the greeter example (../greeter/greeter.py) as a component
written in Python and compiled with componentize-py.

Requests (JSON):
    {"type": "greet"}                    -> {"greeting": "Hello, Ada and Grace!"}
        asks the ``names`` actor (state ``names_actor``) with a request
    {"type": "announce", "room": "chatroom"}
                                         -> {"announced": "<channel id>"}
        opens a channel to ``room`` (initial message {"join": "wasm-greeter"}),
        says the greeting on it and closes it
Channels: opened to the greeter, every {"type": "greet"} on the channel is
answered on the same channel with the greeting; anything else is refused.

The host API is the WIT import ``message-server-host``; a host error comes
back as ``Err`` (the exception componentize-py raises for ``result``'s err).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, TypeVar

from wit_world import exports
from wit_world.imports import message_server_host as host
from wit_world.imports.types import ChannelAccept
from componentize_py_types import Err


F = TypeVar("F", bound=Callable[..., Any])


def _fail(text: str) -> Err[str]:
    return Err(text)


def handler(fn: F) -> F:
    """Any exception becomes the handler's ``err`` (an uncaught one would trap the component)."""
    @functools.wraps(fn)
    def wrapper(*args: Any) -> Any:
        try:
            return fn(*args)
        except Err:
            raise
        except Exception as exc:  # noqa: BLE001 - the caller sees the message, as with a Python actor
            raise _fail(str(exc) or type(exc).__name__)
    return wrapper  # type: ignore[return-value]


def _load(state: bytes | None) -> dict:
    return json.loads(state) if state else {}


def _greeting(state: bytes | None) -> bytes:
    target = _load(state).get("names_actor", "names")
    try:
        reply = json.loads(host.request(target, b'{"type": "get"}'))
    except Err as exc:
        raise _fail(f"asking {target}: {exc.value}")
    names = reply.get("names") or ["nobody"]
    text = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return json.dumps({"greeting": f"Hello, {text}!"}).encode()


class Actor(exports.Actor):
    @handler
    def init(self, state: bytes | None, params: tuple[str]) -> tuple[bytes | None]:
        return (state if state else json.dumps({"names_actor": "names"}).encode(),)


class MessageServerClient(exports.MessageServerClient):
    @handler
    def handle_send(self, state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None]:
        raise _fail("wasm-greeter does not handle messages")

    @handler
    def handle_request(self, state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None, tuple[bytes]]:
        message = json.loads(params[0])
        kind = message.get("type") if isinstance(message, dict) else None
        if kind == "greet":
            return state, (_greeting(state),)
        if kind == "announce":
            room = message.get("room")
            if not isinstance(room, str):
                raise _fail('expected {"type": "announce", "room": "<actor>"}')
            greeting = _greeting(state)
            try:
                channel = host.open_channel(room, b'{"join": "wasm-greeter"}')
                host.send_on_channel(channel, greeting)
                host.close_channel(channel)
            except Err as exc:
                raise _fail(f"announcing in {room}: {exc.value}")
            return state, (json.dumps({"announced": channel}).encode(),)
        raise _fail('expected {"type": "greet"} or {"type": "announce", "room": "..."}')

    @handler
    def handle_channel_open(self, state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None, tuple[ChannelAccept]]:
        return state, (ChannelAccept(accepted=True, message=None),)

    @handler
    def handle_channel_message(self, state: bytes | None, params: tuple[str, bytes]) -> tuple[bytes | None]:
        channel, msg = params
        try:
            message = json.loads(msg)
        except ValueError:
            message = None
        if isinstance(message, dict) and message.get("type") == "greet":
            try:
                host.send_on_channel(channel, _greeting(state))
            except Err as exc:
                raise _fail(f"answering on {channel}: {exc.value}")
            return (state,)
        raise _fail('expected {"type": "greet"} on the channel')

    @handler
    def handle_channel_close(self, state: bytes | None, params: tuple[str]) -> tuple[bytes | None]:
        return (state,)
