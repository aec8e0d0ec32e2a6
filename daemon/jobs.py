"""A batch of one actor's messages in its worker, and the results that come back.

Everything a worker sends is untrusted: :func:`check_result` turns a ``done``
push into a :class:`HandlerResult` or raises :class:`BadResult` (the worker is
then killed).  A :class:`Job` collects what the running handler did through
host calls (events, outbox sends) until its own handling event joins them in
one store group.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .actor import CH_CLOSE, CH_MESSAGE, CH_OPEN, HANDLERS, Actor, Envelope
from .chain import Head
from .storeops import Op

if TYPE_CHECKING:
    import trio

    from .workerlink import Worker

OUTCOMES = frozenset({"ok", "error", "crash", "missing"})
_TEXT_LIMIT = 64 << 10


class BadResult(Exception):
    """A worker sent a result that does not fit the link protocol."""


@dataclass(frozen=True, slots=True)
class HandlerResult:
    outcome: str
    state: bytes | None = None
    value: bytes | None = None
    accepted: bool = False
    error: str = ""
    traceback: str = ""


def _opt_bytes(data: dict[str, Any], key: str) -> bytes | None:
    value = data.get(key)
    if value is not None and type(value) is not bytes:
        raise BadResult(f"{key} must be bytes or null")
    return value


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key, "")
    if type(value) is not str:
        raise BadResult(f"{key} must be text")
    return value[:_TEXT_LIMIT]


def check_result(data: Any, kind: str) -> HandlerResult:
    """Validate one ``done`` push for a message of ``kind``."""
    if type(data) is not dict:
        raise BadResult("a result must be a map")
    outcome = data.get("outcome")
    if outcome not in OUTCOMES:
        raise BadResult(f"unknown outcome {outcome!r}")
    if outcome == "ok":
        state = _opt_bytes(data, "state")
        value = _opt_bytes(data, "value")
        accepted = data.get("accepted", False)
        if type(accepted) is not bool:
            raise BadResult("accepted must be a boolean")
        if kind == "request" and value is None:
            raise BadResult("a request's result needs a reply")
        return HandlerResult("ok", state, value, accepted)
    if outcome == "missing":
        return HandlerResult("missing")
    error = _text(data, "error") or "the handler failed"
    return HandlerResult(outcome, error=error, traceback=_text(data, "traceback"))


def item(env: Envelope) -> dict[str, Any]:
    """The ``run`` call's description of one envelope."""
    kind = env.kind
    entry: dict[str, Any] = {"fn": HANDLERS[kind][0]}
    if kind == CH_MESSAGE:
        entry["params"] = [env.channel.id, env.payload]
    elif kind == CH_CLOSE:
        entry["params"] = [env.channel.id]
    else:
        entry["params"] = [env.payload]
    if kind == CH_OPEN:
        entry["channel"] = [env.channel.id, env.sender]
    return entry


@dataclass(eq=False, slots=True)
class Job:
    """One ``run`` call: an actor's batch in its worker, and what its handlers did so far."""

    actor: Actor
    worker: Worker
    batch: list[Envelope]
    done: int = 0  # results received
    in_host: int = 0  # host calls in progress (the handler is waiting on the daemon)
    blamed: bool = True  # if its worker dies now, its handler is the cause (see Supervisor._worker_gone)
    ops: list[Op] = field(default_factory=list)  # the running handler's events, not yet stored
    deliveries: list[tuple[Actor, Envelope]] = field(default_factory=list)  # its outbox sends
    sends: int = 0  # the running handler's sends so far (made, or skipped as stored by an earlier attempt)
    pending_bytes: int = 0  # the size of ``deliveries``
    base_head: Head | None = None  # the chain head before ``ops``
    crash: str | None = None
    requeue: list[Envelope] = field(default_factory=list)
    settle: Callable[[], None] | None = None
    limit: float = 60.0  # the handler's time limit (handler_timeout)
    deadline: float = math.inf  # when the running handler's time is up (inf: it waits on the daemon)
    wait: trio.CancelScope | None = None  # the mailbox task's wait for the run, armed at an earlier deadline

    def __post_init__(self) -> None:
        self.base_head = self.actor.head
