"""The actor record, its statuses, and the envelopes that travel through mailboxes.

Theory of operation
-------------------
An :class:`Actor` is the daemon's record of one actor: its manifest, its last
state and chain head (what the store has, plus what is queued for it), its
status, its mailbox (a trio memory channel of :class:`Envelope`) and where its
module is loaded (a worker process).  Actor code never sees this record; it
runs in a worker and only reports results back.

* ``status`` is one of the constants below.  Only ``RUNNING`` actors accept
  messages; ``FAILED`` ones keep their name until stopped or removed;
  ``REMOVED`` ones are forgotten (not listed, the name free, the chain kept).
* An envelope's ``kind`` is one of ``SEND``, ``REQUEST`` and the three channel
  kinds; :data:`HANDLERS` names the handler each kind runs and the event type
  the receiver records for it.
* A caller waiting for an answer holds a :class:`ReplySlot` (for a request, a
  :class:`PendingRequest` with its deadline); it is settled exactly once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

import trio

from .chain import Head
from .errors import TheaterError, Timeout
from .manifest import Manifest

if TYPE_CHECKING:  # (jobs.py builds on this module)
    from .jobs import Job
    from .workerlink import Worker

# statuses (as stored, and as shown by ``list``)
STARTING: Final = "starting"
RUNNING: Final = "running"
STOPPED: Final = "stopped"
REMOVED: Final = "removed"  # forgotten by ``rm``: not listed, its name free; its chain kept (unless purged)
FAILED: Final = "failed"
STOPPING: Final = "stopping"

# envelope kinds
SEND: Final = "send"
REQUEST: Final = "request"
CH_OPEN: Final = "channel-open"
CH_MESSAGE: Final = "channel-message"
CH_CLOSE: Final = "channel-close"

HANDLERS = {  # envelope kind -> (handler function, event type recorded by the receiver)
    SEND: ("handle_send", "message-server/handle-send"),
    REQUEST: ("handle_request", "message-server/handle-request"),
    CH_OPEN: ("handle_channel_open", "message-server/handle-channel-open"),
    CH_MESSAGE: ("handle_channel_message", "message-server/handle-channel-message"),
    CH_CLOSE: ("handle_channel_close", "message-server/handle-channel-close"),
}


class ReplySlot:
    """Where a reply (or error) for one waiting caller lands."""

    __slots__ = ("event", "value", "error", "abandoned", "callback")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.value: Any = None
        self.error: TheaterError | None = None
        self.abandoned = False
        # called (on the event loop) once the slot is settled: for callers that do not
        # wait in a task, like the server writing a reply frame
        self.callback: Callable[[ReplySlot], None] | None = None

    def set(self, value: Any) -> None:
        if not self.event.is_set():
            self.value = value
            self.event.set()
            if self.callback is not None:
                self.callback(self)

    def fail(self, error: TheaterError) -> None:
        if not self.event.is_set():
            self.error = error
            self.event.set()
            if self.callback is not None:
                self.callback(self)

    async def wait(self, timeout: float, what: str) -> Any:
        with trio.move_on_after(timeout):
            await self.event.wait()
        if not self.event.is_set():
            self.abandoned = True
            raise Timeout(f"{what} timed out after {_fmt_seconds(timeout)}")
        if self.error is not None:
            raise self.error
        return self.value

@dataclass(slots=True)
class Envelope:
    kind: str
    sender: str  # actor id or "external"
    payload: bytes
    reply: ReplySlot | None = None
    mail_id: int | None = None  # durable mailbox row, for sends
    channel: Any = None  # channels.Channel, for channel envelopes
    attempts: int = 0  # deliveries that crashed the actor (stored sends)
    sent: int = 0  # sends of its handling already stored ahead of it (a retry skips that many)
    void: bool = False  # dropped while the disk was full (its stored copy, if any, is queued again)

@dataclass(slots=True)
class PendingRequest:
    target: Any  # Actor
    slot: ReplySlot
    deadline: float
    limit: float

    def timed_out(self) -> Timeout:
        return Timeout(f"request to {self.target.name} timed out after {_fmt_seconds(self.limit)}")

def _fmt_seconds(seconds: float) -> str:
    return f"{seconds:g} s"

@dataclass(slots=True, eq=False)
class Actor:
    id: str
    name: str
    manifest: Manifest
    state: bytes | None = None
    head: Head = field(default_factory=Head)
    handled: int = 0
    status: str = RUNNING
    reason: str | None = None
    created_us: int = 0
    mailbox_tx: Any = None
    mailbox_rx: Any = None
    mailbox_size: int = 0  # the mailbox's capacity (set with its channel)
    cancel_scope: trio.CancelScope | None = None
    started: trio.Event = field(default_factory=trio.Event)  # its spawn finished (either way)
    done: trio.Event = field(default_factory=trio.Event)
    current: str | None = None  # handler being run
    busy_since: float = 0.0
    restarts: deque[float] = field(default_factory=deque)
    restart_count: int = 0
    replaying: trio.Event | None = None  # set while mail stored before a restart is re-queued
    late: deque[Envelope] = field(default_factory=deque)  # outbox sends waiting for mailbox room
    late_drained: trio.Event = field(default_factory=trio.Event)  # set when ``late`` empties
    cleared: bool = False  # stopped for good: its stored mailbox was (or is being) cleared
    dropped: int = 0  # accepted messages it never handled, dropped when it was stopped
    worker: Worker | None = None  # where its module is loaded (None: not placed)
    handlers: frozenset[str] = frozenset()  # the handler functions its module defines
    job: Job | None = None  # the batch its worker is running
    room: trio.Event | None = None  # set when its mailbox has room again (for waiting senders)
    backlog: deque[Envelope] = field(default_factory=deque)  # taken from the mailbox, not handled yet
    log: deque[str] = field(default_factory=lambda: deque(maxlen=1000))  # printed output, errors, crashes
    errors: int = 0  # handler errors since the daemon started (for top)
    replay: Any = None  # the daemon.mailbox.Replay feeding its mailbox, if any
    partial: dict[str, str] = field(default_factory=dict)  # printed text waiting for its newline, per stream

    @property
    def mailbox_depth(self) -> int:
        if self.mailbox_rx is None:
            return 0
        return int(self.mailbox_rx.statistics().current_buffer_used)

    @property
    def accepting(self) -> bool:
        return self.status == RUNNING

    def label(self) -> str:
        return self.name
