"""Unit-test an actor's handlers without a daemon.

    from actors.testing import ActorHarness

    actor = ActorHarness.from_manifest("actors/examples/greeter/manifest.toml")
    actor.host.answer("names", {"names": ["Ada"]})        # canned reply for requests to "names"
    assert actor.request({"type": "greet"}) == {"greeting": "Hello, Ada!"}
    assert actor.host.requests == [("names", {"type": "get"})]

The harness keeps the state between calls like the daemon does, runs
``init`` on creation, and installs a :class:`FakeMessageServer` as the host,
which records every ``send``, ``request``, channel open, channel message and
close made by the handlers and answers requests from canned replies.
"""

from __future__ import annotations

import importlib.util
import itertools
import tomllib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from daemon.jsontext import from_json_bytes, to_json_bytes

from . import message_server as ms

_counter = itertools.count()


class FakeMessageServer:
    """A host that records calls instead of talking to a daemon."""

    def __init__(self, actor_id: str = "test-actor") -> None:
        self.actor_id = actor_id
        self.sent: list[tuple[str, Any]] = []
        self.requests: list[tuple[str, Any]] = []
        self.opened: list[tuple[str, Any]] = []
        self.channel_messages: list[tuple[str, Any]] = []
        self.closed: list[str] = []
        self._answers: dict[str, Callable[[Any], Any]] = {}
        self._reject: dict[str, str] = {}

    def answer(self, actor_id: str, reply: Any) -> None:
        """Requests to ``actor_id`` get ``reply`` (or ``reply(message)`` when it is callable)."""
        if callable(reply):
            self._answers[actor_id] = reply
        else:
            self._answers[actor_id] = lambda _msg: reply

    def reject_channels(self, actor_id: str, reason: str = "rejected") -> None:
        self._reject[actor_id] = reason

    # the Host protocol
    def send(self, actor_id: str, msg: bytes, timeout: float | None) -> None:
        self.sent.append((actor_id, from_json_bytes(msg)))

    def request(self, actor_id: str, msg: bytes, timeout: float | None) -> bytes:
        message = from_json_bytes(msg)
        self.requests.append((actor_id, message))
        if actor_id not in self._answers:
            raise ms.MessageServerError(f"unknown actor {actor_id!r}")
        return to_json_bytes(self._answers[actor_id](message))

    def open_channel(self, actor_id: str, initial_msg: bytes, timeout: float | None) -> str:
        if actor_id in self._reject:
            raise ms.MessageServerError(f"channel rejected by {actor_id}: {self._reject[actor_id]}")
        channel_id = f"ch_test{next(_counter):026x}"
        self.opened.append((actor_id, from_json_bytes(initial_msg)))
        return channel_id

    def send_on_channel(self, channel_id: str, msg: bytes) -> None:
        self.channel_messages.append((channel_id, from_json_bytes(msg)))

    def close_channel(self, channel_id: str) -> None:
        self.closed.append(channel_id)


class ActorHarness:
    """One actor module plus its state, driven directly."""

    def __init__(self, module: ModuleType, state: bytes | None = None, host: FakeMessageServer | None = None) -> None:
        self.module = module
        self.host = host or FakeMessageServer()
        self.state = state
        init = getattr(module, "init", None)
        if init is not None:
            (self.state,) = self._call(init, self.state, None)

    @classmethod
    def from_file(cls, path: str | Path, state: Any = None) -> ActorHarness:
        path = Path(path)
        name = f"theater_test_actor_{next(_counter)}"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None, f"cannot load {path}"
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return cls(module, None if state is None else to_json_bytes(state))

    @classmethod
    def from_manifest(cls, path: str | Path, state: Any = None) -> ActorHarness:
        path = Path(path)
        doc = tomllib.loads(path.read_text())
        if state is None and "init_state" in doc:
            state = doc["init_state"]
        return cls.from_file(path.parent / doc["component"], state)

    def _call(self, fn: Callable[..., Any], state: bytes | None, params: Any,
              channel: ms.ChannelInfo | None = None) -> Any:
        ms._bind_host(self.host, channel)
        try:
            return fn(state) if params is None else fn(state, params)
        finally:
            ms._bind_host(None)

    @property
    def value(self) -> Any:
        """The current state, decoded from JSON."""
        return from_json_bytes(self.state)

    def send(self, message: Any) -> None:
        (self.state,) = self._call(self.module.handle_send, self.state, (to_json_bytes(message),))

    def request(self, message: Any) -> Any:
        self.state, (reply,) = self._call(self.module.handle_request, self.state, (to_json_bytes(message),))
        return from_json_bytes(reply)

    def open_channel(self, message: Any, channel_id: str = "ch_test", opener: str = "external") -> ms.ChannelAccept:
        info = ms.ChannelInfo(channel_id, opener)
        self.state, (accept,) = self._call(self.module.handle_channel_open, self.state, (to_json_bytes(message),), info)
        return accept

    def channel_message(self, channel_id: str, message: Any) -> None:
        (self.state,) = self._call(self.module.handle_channel_message, self.state, (channel_id, to_json_bytes(message)))

    def channel_close(self, channel_id: str) -> None:
        (self.state,) = self._call(self.module.handle_channel_close, self.state, (channel_id,))
