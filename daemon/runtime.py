"""Actors, mailboxes, request/reply and supervision.

Theory of operation
-------------------
Each actor is a Python module loaded from its manifest's component (one
module instance per actor) plus a *mailbox* and one *mailbox task* in the
runtime's nursery.  The mailbox task takes one envelope at a time, runs the
matching handler on a worker thread (:mod:`daemon.workers`) and then appends
the handling event to the actor's chain.  Invariants:

* One handler per actor at a time, in mailbox (arrival) order.  The actor's
  ``state``, ``head`` (chain end) and counters are only touched on the event
  loop thread, so they need no locks.
* Chain events are built on the event loop in the actor's order and handed to
  the store's single writer, which commits them in submission order.  The
  handling event, the new state and the removal of a durable mailbox entry go
  in one batch, so they commit together or not at all.
* Acknowledgements wait for the store: a ``send`` returns once the message is
  in the target's durable mailbox; a request's reply is released once the
  handling event is stored.
* A handler failure never propagates: it becomes the caller's error and an
  ``outcome: error`` event; the actor keeps serving.  Only a crash in
  ``init`` (or a broken module) marks the actor ``failed``.
* ``waiting_on`` records which actor each blocked handler waits for; a
  request or channel open that would close a cycle fails at once.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import itertools
import logging
import math
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from actors import message_server as ms

from . import chain
from .chain import EXTERNAL, Head, StoredEvent
from .errors import ActorFailed, BadInput, Busy, DiskFull, InternalError, NotFound, TheaterError, Timeout
from .jsontext import check_json
from .jobs import BadResult, HandlerResult, Job, check_result
from .jobs import item as _item
from .loopcalls import LoopCalls
from .timers import Timers
from .files import LIMITS, read_regular_file
from .manifest import DEFAULT_MEMORY_LIMIT, Manifest, check_name, load_manifest
from .store import (
    RemoveActor,
    DeadLetter,
    DeadLetterDrop,
    DeadLetterRetry,
    MailboxAttempt,
    MailboxClear,
    MailboxDelete,
    MailboxPut,
    Op,
    PutActor,
    PutEvent,
    PutState,
    SetStatus,
    Store,
    state_hash,
)
from .workerpool import Profile, Worker, WorkerDied, WorkerPool, default_worker_count

log = logging.getLogger("theaterd.runtime")

STARTING = "starting"
RUNNING = "running"
STOPPED = "stopped"
REMOVED = "removed"  # forgotten by ``rm``: not listed, its name free; its chain kept (unless purged)
FAILED = "failed"
STOPPING = "stopping"

BATCH = 64  # sends/requests handed to one worker hop at most
#: the longest line of an actor's log kept
MAX_LOG_LINE = 2000
#: a component stops itself at its handler_timeout (a trap); its worker is killed only this much later
_WASM_GRACE = 5.0

SEND = "send"
REQUEST = "request"
CH_OPEN = "channel-open"
CH_MESSAGE = "channel-message"
CH_CLOSE = "channel-close"


HANDLERS = {  # envelope kind -> (handler function, event type recorded by the receiver)
    SEND: ("handle_send", "message-server/handle-send"),
    REQUEST: ("handle_request", "message-server/handle-request"),
    CH_OPEN: ("handle_channel_open", "message-server/handle-channel-open"),
    CH_MESSAGE: ("handle_channel_message", "message-server/handle-channel-message"),
    CH_CLOSE: ("handle_channel_close", "message-server/handle-channel-close"),
}


@dataclass(slots=True)
class Settings:
    default_timeout: float = 30.0
    mailbox_size: int = 1024
    stop_grace: float = 5.0
    debug: bool = False
    workers: int = 0  # shared worker processes; 0: one per usable CPU
    memory_limit: int | None = 1 << 30  # per worker (RLIMIT_AS); a manifest's memory_limit overrides it
    log_lines: int = 1000  # kept per actor for ``logs``


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
    cancel_scope: trio.CancelScope | None = None
    started: trio.Event = field(default_factory=trio.Event)  # its spawn finished (either way)
    done: trio.Event = field(default_factory=trio.Event)
    current: str | None = None  # handler being run
    busy_since: float = 0.0
    restarts: deque[float] = field(default_factory=deque)
    restart_count: int = 0
    replaying: trio.Event | None = None  # set while mail stored before a restart is re-queued
    abandoned: bool = False  # the mailbox task ended
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


class Runtime:
    """All actors of one daemon.  Create it, then ``await runtime.serve(...)`` in a nursery."""

    def __init__(self, store: Store, settings: Settings | None = None) -> None:
        from .channels import ChannelRegistry

        self.store = store
        self.settings = settings or Settings()
        self.pool = WorkerPool(self.settings.workers or default_worker_count(), self._host_call, self._worker_log,
                               default_profile=Profile(memory_limit=self.settings.memory_limit))
        self.pool.on_death = self._worker_gone
        self.actors: dict[str, Actor] = {}  # by id: every actor known (running, stopped, failed)
        self.names: dict[str, Actor] = {}  # by name: the live (running or failed) one
        self.waiting_on: dict[Actor, Actor] = {}
        self.channels = ChannelRegistry(self)
        self._nursery: trio.Nursery | None = None
        self._mail_ids = itertools.count(1)
        self._token: trio.lowlevel.TrioToken | None = None
        self.call_soon: LoopCalls | None = None  # once serving (or given by the caller before)
        self.timers = Timers()  # request deadlines of client connections
        self._spawned = 0
        self._attempts: dict[int, int] = {}  # crashed deliveries of stored mail, at start-up
        #: while the store's disk is full: why (every write is refused, no message is handled)
        self.suspended: DiskFull | None = None
        self._resumed = trio.Event()
        self.started_at = time.time()

    # ------------------------------------------------------------------
    # lifecycle

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Restore actors from the store, then host them until cancelled."""
        self._token = trio.lowlevel.current_trio_token()
        if self.call_soon is None:
            self.call_soon = LoopCalls(self._token)
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.timers.run)
            self.store.on_full = self._store_full
            self.store.on_space = self._space_back
            if self.store.full is not None:
                self._store_full(self.store.full)
            await nursery.start(self.pool.run)
            await self._restore()
            task_status.started()
            await trio.sleep_forever()

    async def _restore(self) -> None:
        rows = await trio.to_thread.run_sync(self.store.load_actors)
        mail = await trio.to_thread.run_sync(self.store.load_mailbox)
        top = await trio.to_thread.run_sync(self.store.max_mail_id)
        self._mail_ids = itertools.count(max(top, max((m.id for m in mail), default=0)) + 1)
        pending: dict[str, list[Any]] = {}
        for m in mail:
            pending.setdefault(m.actor, []).append(m)
        for m in mail:
            self._attempts[m.id] = m.attempts
        # every manifest first (off the loop, in one go): no actor may start handling before
        # every other one is known again, or its sends to them would fail
        manifests = await trio.to_thread.run_sync(_load_manifests, [row.manifest for row in rows])
        starting: list[Actor] = []
        for row, loaded in zip(rows, manifests):
            reason: str | None
            if isinstance(loaded, TheaterError):
                exc = loaded
                manifest = Manifest(Path(row.manifest), row.name, Path(row.manifest))
                if row.status == RUNNING:
                    row_status, reason = FAILED, f"cannot restore: {exc}"
                else:
                    row_status, reason = row.status, row.reason
            else:
                manifest = loaded
                row_status, reason = row.status, row.reason
            actor = Actor(
                id=row.id,
                name=row.name,
                manifest=manifest,
                state=row.state,
                head=row.head,
                handled=row.handled,
                status=row_status,
                reason=reason,
                created_us=row.created_us,
            )
            self.actors[actor.id] = actor
            if row_status == RUNNING:
                self.names[actor.name] = actor
                starting.append(actor)
            elif row_status == FAILED:
                self.names[actor.name] = actor
                if row.status != row_status:
                    self.store.submit([SetStatus(actor.id, FAILED, reason)])
            if row_status != RUNNING:
                actor.done.set()
        for actor in starting:
            self._start_mailbox(actor)
            queued = pending.get(actor.id)
            if queued:
                # accepted before the restart: handled first, in order, even past the mailbox size
                actor.replaying = trio.Event()
                assert self._nursery is not None
                self._nursery.start_soon(self._replay, actor, queued)
        log.info("restored %d actors", sum(a.status == RUNNING for a in self.actors.values()))
        gc.freeze()  # long-lived actor objects: keep them out of every full collection

    # ------------------------------------------------------------------
    # a full disk

    def writable(self) -> None:
        """Raise :class:`DiskFull` while the store refuses writes."""
        if self.suspended is not None:
            raise self.store._full_error() if self.store.full is not None else self.suspended

    def _store_full(self, error: DiskFull) -> None:
        """The store failed a group for lack of space: stop handling until it is back.

        What was handled after the last stored group exists only in memory now; the
        resync, once space is back, puts memory back in line with the store."""
        if self.suspended is not None:
            return
        log.error("%s; handling stops until space is back", error)
        self.suspended = error
        self._resumed = trio.Event()
        assert self._nursery is not None
        self._nursery.start_soon(self.channels.close_everything, "the daemon's disk is full")

    def _space_back(self) -> None:
        assert self._nursery is not None
        self._nursery.start_soon(self._resync)

    async def _resync(self) -> None:
        """Space is back: reload every actor's chain head, state and mailbox from the store,
        then accept writes again.  Handlings that were not stored are handled again."""
        while any(a.job is not None for a in self.actors.values()):
            await trio.sleep(0.02)  # running handlers finish (their writes are refused)
        rows = {r.id: r for r in await trio.to_thread.run_sync(self.store.load_actors)}
        mail: dict[str, list[Any]] = {}
        for m in await trio.to_thread.run_sync(self.store.load_mailbox):
            mail.setdefault(m.actor, []).append(m)
        for actor in self.actors.values():
            row = rows.get(actor.id)
            if row is None:
                continue
            actor.head, actor.state, actor.handled = row.head, row.state, row.handled
            if actor.status == RUNNING and actor.mailbox_tx is not None:
                self._refill(actor, mail.get(actor.id, []))
        self.store.resume()
        fixes: list[Op] = [SetStatus(a.id, a.status, a.reason) for a in self.actors.values()
                           if a.id in rows and rows[a.id].status != a.status and a.status == FAILED]
        if fixes:
            self.store.submit(fixes)
        log.warning("the disk has room again: actors reloaded from the store, handling goes on")
        self.suspended = None
        self._resumed.set()

    def _refill(self, actor: Actor, rows: list[Any]) -> None:
        """The actor's mailbox as the store has it: its stored messages first (in order),
        then what was waiting that is not stored (requests, channel messages)."""
        waiting = list(actor.backlog)
        actor.backlog.clear()
        while (env := _take(actor.mailbox_rx, actor.backlog)) is not None:
            waiting.append(env)
        waiting.extend(actor.late)
        actor.late.clear()
        kept = [env for env in waiting if env.mail_id is None]
        for env in waiting:
            if env.mail_id is not None:
                env.void = True
        stored = [Envelope(SEND, m.sender, m.payload, mail_id=m.id, attempts=m.attempts) for m in rows]
        queue = stored + kept
        if queue:
            actor.replaying = trio.Event()
            assert self._nursery is not None
            self._nursery.start_soon(self._replay, actor, queue)

    async def _replay(self, actor: Actor, mail: list[Any]) -> None:
        try:
            for m in mail:
                if isinstance(m, Envelope):
                    await actor.mailbox_tx.send(m)
                    continue
                await actor.mailbox_tx.send(Envelope(SEND, m.sender, m.payload, mail_id=m.id,
                                                     attempts=self._attempts.pop(m.id, 0)))
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        finally:
            assert actor.replaying is not None
            actor.replaying.set()
            actor.replaying = None

    def _start_mailbox(self, actor: Actor) -> None:
        size = actor.manifest.mailbox_size or self.settings.mailbox_size
        actor.mailbox_tx, actor.mailbox_rx = trio.open_memory_channel[Envelope](size)
        actor.done = trio.Event()
        actor.abandoned = False
        assert self._nursery is not None
        self._nursery.start_soon(self._mailbox_loop, actor, name=f"actor:{actor.name}")

    async def shutdown(self) -> None:
        """Close every channel and stop every actor gracefully."""
        await self.channels.close_everything("the daemon is shutting down")
        actors = [a for a in self.actors.values() if a.status == RUNNING]
        async with trio.open_nursery() as nursery:
            for actor in actors:
                nursery.start_soon(self._stop_actor, actor, STOPPED, None, False, False)
        await self.pool.close()

    # ------------------------------------------------------------------
    # lookup

    def resolve(self, ref: str) -> Actor:
        """An actor by id or unique name (running ones first, then the newest stopped one)."""
        actor = self.actors.get(ref) or self.names.get(ref)
        if actor is None:
            matches = [a for a in self.actors.values() if a.name == ref and a.status != REMOVED]
            if matches:
                actor = max(matches, key=lambda a: a.created_us)
        if actor is None:
            raise NotFound(f"unknown actor {ref!r}")
        return actor

    def live(self, ref: str) -> Actor:
        actor = self.resolve(ref)
        if actor.status == FAILED:
            raise ActorFailed(f"actor {actor.name} has failed: {actor.reason}")
        if actor.status != RUNNING:
            raise NotFound(f"actor {actor.name} is {actor.status}")
        return actor

    # ------------------------------------------------------------------
    # spawn / stop

    async def spawn(self, manifest_path: str, name: str | None = None, state: bytes | None = None) -> Actor:
        self.writable()
        manifest = await trio.to_thread.run_sync(load_manifest, manifest_path)
        name = check_name(name) if name else manifest.name
        existing = self.names.get(name)
        if existing is not None and existing.status in (STARTING, RUNNING, STOPPING):
            raise BadInput(f"an actor named {name!r} is already {existing.status} (id {existing.id})")
        if state is not None:
            check_json(state, "initial state")
        actor = Actor(
            id=str(uuid.uuid4()),
            name=name,
            manifest=manifest,
            state=state if state is not None else manifest.init_state,
            created_us=chain.now_us(),
            status=STARTING,  # not reachable (live() refuses it) until its mailbox exists
        )
        self.names[name] = actor  # reserve the name while loading
        self.actors[actor.id] = actor  # listed as starting; a stop cancels the start
        failure: str | None = None
        try:
            with trio.CancelScope() as scope:
                actor.cancel_scope = scope
                await self._host_actor(actor)
                if "init" in actor.handlers:
                    actor.state = await self._run_init(actor)
            if scope.cancelled_caught:
                failure = "stopped while starting"
        except trio.Cancelled:
            self._forget_start(actor)
            raise
        except BadInput:  # not a usable component: refused like a bad manifest, nothing recorded
            self._forget_start(actor)
            raise
        except TheaterError as exc:
            failure = f"failed to start: {exc}"
        finally:
            actor.cancel_scope = None
        if failure is not None:
            self._unplace(actor)
        actor.current = None
        h = state_hash(actor.state)
        data: dict[str, Any] = {"name": name, "manifest": str(manifest.path), "state_hash": _hex(h)}
        if failure is not None:
            data.update(outcome="error", error=failure)
            actor.status, actor.reason = FAILED, failure
            if failure == "stopped while starting":
                actor.status = STOPPED
                if self.names.get(name) is actor:
                    del self.names[name]
            actor.done.set()
        ev = self._event(actor, "runtime/spawn", data)
        with trio.CancelScope(shield=True):  # stored as running means it has a mailbox
            await self._commit([
                PutActor(actor.id, name, str(manifest.path), actor.status if failure else RUNNING,
                         actor.created_us, actor.reason),
                PutEvent(ev),
                PutState(actor.id, h, actor.state, 0),
            ])
            if failure is None:
                self._start_mailbox(actor)
                actor.status = RUNNING
            actor.started.set()
        if failure is not None:
            raise ActorFailed(f"actor {name} {failure}")
        self._spawned += 1
        if self._spawned % 256 == 0:
            gc.freeze()  # thousands of idle actors must not make every full collection slower
        return actor

    def _forget_start(self, actor: Actor) -> None:
        """A spawn that was cancelled (its caller went away): nothing of it was stored."""
        if self.names.get(actor.name) is actor:
            del self.names[actor.name]
        self.actors.pop(actor.id, None)
        self._unplace(actor)
        actor.done.set()
        actor.started.set()

    async def _run_init(self, actor: Actor) -> bytes | None:
        """Run the module's ``init`` in its worker (under the handler timeout); the new state."""
        worker = actor.worker
        assert worker is not None
        results: list[Any] = []
        limit = float(actor.manifest.handler_timeout) + (_WASM_GRACE if actor.manifest.kind == "wasm" else 0)
        actor.current, actor.busy_since = "init", time.monotonic()
        try:
            with trio.move_on_after(limit) as scope:
                await worker.call("run", {"actor": actor.id, "state": actor.state,
                                          "items": [{"fn": "init", "params": None}]}, pushes=results.append)
            if scope.cancelled_caught:
                reason = f"init ran longer than its handler_timeout of {limit:g} s"
                self.pool.kill(worker, reason, culprit=actor.id)
                raise ActorFailed(reason)
        except WorkerDied as exc:
            raise ActorFailed(f"{exc} while running init") from None
        except trio.Cancelled:  # stopped, or its caller went away: init may never return
            self.pool.kill(worker, f"actor {actor.name} was stopped while init ran", culprit=actor.id)
            raise
        finally:
            actor.current = None
        try:
            if len(results) != 1:
                raise BadResult("no result for init")
            result = check_result(results[0], "init")
        except BadResult as exc:
            self.pool.kill(worker, f"the worker broke the link protocol: {exc}")
            raise ActorFailed(f"its worker failed: {exc}") from None
        if result.outcome == "ok":
            return result.state
        if result.outcome == "missing":
            return actor.state
        raise ActorFailed(result.error)

    async def stop(self, ref: str) -> Actor:
        self.writable()
        actor = self.resolve(ref)
        if actor.status == STARTING:
            # still loading or in init: cancel the start (a stuck init takes its worker with it)
            if actor.cancel_scope is not None:
                actor.cancel_scope.cancel()
            with trio.CancelScope(shield=True):
                await actor.started.wait()
            if actor.status == STOPPED:
                return actor
        if actor.status == STOPPED:
            raise NotFound(f"actor {actor.name} is already stopped")
        if actor.status == FAILED:
            # like any stop, it finishes even if the caller goes away (a half-stopped actor
            # would be stopped in memory and failed in the store)
            with trio.CancelScope(shield=True):
                actor.status = STOPPED
                actor.cleared = True
                self.names.pop(actor.name, None)
                if actor.cancel_scope is not None:  # its mailbox task may still be finishing
                    with trio.move_on_after(self.settings.stop_grace):
                        await actor.done.wait()
                    if not actor.done.is_set():
                        actor.cancel_scope.cancel()
                        await actor.done.wait()
                await self._commit([])  # (every row submitted so far is stored)
                actor.dropped = await trio.to_thread.run_sync(self.store.mailbox_count, actor.id)
                await self._commit([SetStatus(actor.id, STOPPED, actor.reason), MailboxClear(actor.id)])
                self._unplace(actor)
            return actor
        await self._stop_actor(actor, STOPPED, None, True)
        return actor

    async def _stop_actor(self, actor: Actor, status: str, reason: str | None, record: bool,
                          persist: bool = True) -> None:
        """Stop the mailbox task.  ``persist=False`` (daemon shutdown) keeps the stored status
        ``running`` so that the actor comes back when the daemon starts again."""
        if actor.status not in (RUNNING, FAILED):
            await actor.done.wait()
            return
        actor.status = STOPPING
        # a stop that has begun always finishes (bounded by the grace period), even if
        # the caller goes away: a half-stopped actor would hold its name forever
        with trio.CancelScope(shield=True):
            await self.channels.close_for_actor(actor, f"actor {actor.name} stopped")
            if actor.mailbox_tx is not None:
                actor.mailbox_tx.close()  # the loop drains what is queued, then ends
            with trio.move_on_after(self.settings.stop_grace):
                await actor.done.wait()
            if not actor.done.is_set() and actor.cancel_scope is not None:
                actor.cancel_scope.cancel()
                await actor.done.wait()
            self._unplace(actor)
            actor.status = status
            actor.reason = reason
            if self.names.get(actor.name) is actor:
                del self.names[actor.name]
            ops: list[Op] = [SetStatus(actor.id, status, reason)] if persist else []
            data: dict[str, Any] = {"reason": reason or "stopped"}
            if persist and status == STOPPED:
                # messages accepted but not handled will never be: drop them, and say how many.
                # From here on, an outbox send that reaches the closed mailbox deletes its own
                # row (it may be stored after the clear below).
                actor.cleared = True
                await self._commit([])  # (every row submitted so far is stored)
                actor.dropped = data["dropped"] = await trio.to_thread.run_sync(self.store.mailbox_count, actor.id)
                ops.append(MailboxClear(actor.id))
            if record:
                ops.insert(0, PutEvent(self._event(actor, "runtime/stop", data)))
            await self._commit(ops)

    # ------------------------------------------------------------------
    # the mailbox task

    async def _mailbox_loop(self, actor: Actor) -> None:
        rx = actor.mailbox_rx
        backlog = actor.backlog  # taken from the mailbox but not handled yet
        try:
            with trio.CancelScope() as scope:
                actor.cancel_scope = scope
                if actor.worker is None:  # restored: its module is loaded here, in its own task
                    try:
                        await self._host_actor(actor)
                    except TheaterError as exc:
                        ops: list[Op] = []
                        self._fail_actor(actor, str(exc), ops)
                        self.store.submit(ops)
                        return
                while True:
                    while self.suspended is not None:  # the disk is full: handle nothing for now
                        await self._resumed.wait()
                    env = _take(rx, backlog)
                    if env is None:
                        try:
                            env = await rx.receive()
                        except trio.EndOfChannel:
                            break
                        if env.void:
                            continue
                        if self.suspended is not None:
                            backlog.appendleft(env)
                            continue
                    batch = [env]
                    if env.kind in (SEND, REQUEST):
                        # hand every queued send/request over in one worker call
                        while len(batch) < BATCH and (nxt := _take(rx, backlog)) is not None:
                            if nxt.kind not in (SEND, REQUEST):
                                backlog.appendleft(nxt)
                                break
                            batch.append(nxt)
                    _room(actor)
                    requeue, crash, settle = await self._handle_batch(actor, batch)
                    backlog.extendleft(reversed(requeue))
                    if crash is not None:
                        try:
                            await self._after_crash(actor, crash)
                        except DiskFull as exc:  # recorded in memory only; the resync sets it right
                            log.warning("actor %s: crash not recorded: %s", actor.name, exc)
                        finally:
                            settle()  # the caller hears of the crash once the policy has been applied
                    if actor.status in (FAILED, STOPPED):  # (failed, then stopped meanwhile)
                        break
        finally:
            actor.current = None
            actor.abandoned = True
            # whatever is still queued will not be handled now
            while (env := _take(rx, backlog)) is not None:
                if env.reply is not None:
                    env.reply.fail(self._not_handled(actor))
            _room(actor)
            actor.done.set()

    def _not_handled(self, actor: Actor) -> TheaterError:
        if actor.status == FAILED:
            return ActorFailed(f"actor {actor.name} has failed: {actor.reason}")
        return NotFound(f"actor {actor.name} stopped before handling the message")

    # ------------------------------------------------------------------
    # running handlers in the actor's worker

    async def _handle_batch(self, actor: Actor, batch: list[Envelope]) -> _Outcome:
        """Run ``batch`` in the actor's worker, settling each result as it arrives.

        Returns the envelopes to handle again (first), the crash reason (or None) and the
        function that tells the crashed message's caller."""
        try:
            worker = await self._host_actor(actor)
        except TheaterError as exc:
            # the module cannot be loaded any more (changed or deleted since the actor started)
            reason = f"cannot load {actor.manifest.component}: {exc}"
            return [], reason, functools.partial(self._fail_all, actor, batch, reason)
        job = Job(actor, worker, batch)
        actor.job = job
        timeout = float(actor.manifest.handler_timeout) + (_WASM_GRACE if actor.manifest.kind == "wasm" else 0)
        items = [_item(env) for env in batch]
        try:
            with trio.CancelScope() as scope:
                job.scope, job.limit = scope, timeout
                scope.deadline = trio.current_time() + timeout
                self._busy(job)
                await worker.call("run", {"actor": actor.id, "state": actor.state, "items": items},
                                  pushes=functools.partial(self._result, job))
            if scope.cancelled_caught:
                fn = HANDLERS[batch[job.done].kind][0] if job.done < len(batch) else "a handler"
                self.pool.kill(worker, f"{fn} ran longer than its handler_timeout of {timeout:g} s",
                               culprit=actor.id)
                await worker.died.wait()
                raise WorkerDied(worker.kill_reason or worker.dead or "killed")
        except WorkerDied as exc:
            return self._worker_died(job, str(exc))
        except NotFound as exc:  # the worker no longer has the module: load it again, run the rest
            log.warning("actor %s: %s", actor.name, exc)
            self._unplace(actor, worker)
            return batch[job.done:], None, _nothing
        except TheaterError as exc:  # the worker failed the batch itself: it cannot be trusted
            self.pool.kill(worker, f"the worker failed a batch: {exc}", culprit=actor.id)
            await worker.died.wait()
            return self._worker_died(job, f"its worker failed: {exc}")
        except trio.Cancelled:
            # stopped while a handler runs past the grace period: the worker goes, with it
            if job.done < len(batch):
                self.pool.kill(worker, f"actor {actor.name} was stopped while its handler ran", culprit=actor.id)
                for env in batch[job.done:]:
                    if env.reply is not None:
                        env.reply.fail(NotFound(f"actor {actor.name} was stopped while handling the message"))
            self._discard(job)
            raise
        finally:
            actor.job = None
            actor.current = None
        if job.crash is not None:
            return job.requeue + batch[job.done:], job.crash, job.settle or _nothing
        self._flush(job)
        return batch[job.done:], None, _nothing

    def _busy(self, job: Job) -> None:
        actor = job.actor
        if job.done < len(job.batch):
            actor.current, actor.busy_since = HANDLERS[job.batch[job.done].kind][0], time.monotonic()
        else:
            actor.current = None

    def _result(self, job: Job, data: Any) -> None:
        """A handler's result arrived from the worker (on the event loop, in order)."""
        if job.done >= len(job.batch) or job.crash is not None:
            raise BadResult("more results than messages")
        env = job.batch[job.done]
        result = check_result(data, env.kind)
        job.done += 1
        if result.outcome == "crash":
            job.crash = result.error
            retry, job.settle = self._crashed(job, env, result.error)
            job.requeue = [env] if retry else []
        else:
            self._settle(job, env, result)
        if job.scope is not None:
            job.scope.deadline = trio.current_time() + job.limit
        self._busy(job)

    def _settle(self, job: Job, env: Envelope, result: HandlerResult) -> None:
        """Record one handled message (with what its handler did) and answer its caller."""
        actor = job.actor
        kind = env.kind
        etype = HANDLERS[kind][1]
        data: dict[str, Any] = {"peer": env.sender, "size": len(env.payload)}
        peer = self.actors.get(env.sender)
        if peer is not None:
            data["peer_name"] = peer.name
        if env.channel is not None:
            data["channel"] = env.channel.id
        error: str | None = None
        accept: ms.ChannelAccept | None = None
        value = result.value
        if result.outcome == "missing":
            if kind == CH_OPEN:
                accept = ms.ChannelAccept(False, b"actor does not accept channels")
            elif kind in (SEND, REQUEST):
                error = f"actor {actor.name} does not handle {'messages' if kind == SEND else 'requests'}"
        elif result.outcome == "error":
            error = result.error
            if result.traceback:
                self.actor_log(actor, "handler", f"{HANDLERS[kind][0]} raised:\n{result.traceback}")
        else:
            actor.state = result.state
            if kind == CH_OPEN:
                accept = ms.ChannelAccept(result.accepted, value)
        data["outcome"] = "ok" if error is None else "error"
        if error is not None:
            data["error"] = error
            actor.errors += 1
        if kind == CH_OPEN:
            data["accepted"] = bool(accept and accept.accepted and error is None)
        actor.handled += 1
        h = state_hash(actor.state)
        data["state_hash"] = _hex(h)
        reply = env.reply
        if reply is not None and reply.abandoned:
            data["reply"] = "discarded: the caller timed out"
        self.emit(actor, etype, data, env.payload)
        ops = job.ops
        ops.append(PutState(actor.id, h, actor.state, actor.handled))
        if env.mail_id is not None:
            ops.append(MailboxDelete(env.mail_id))
        settle: Callable[[], None] | None
        if kind == CH_OPEN:
            channel = env.channel
            settle = functools.partial(self._opened, channel, reply, accept, error)
        elif reply is None:
            settle = None
        elif error is not None:
            settle = functools.partial(reply.fail, ActorFailed(error))
        else:
            settle = functools.partial(reply.set, value)
        # what leaves the daemon waits for the commit; what stays in it goes on now
        self._flush(job, reply, settle if env.sender == EXTERNAL else None)
        if settle is not None and env.sender != EXTERNAL:
            settle()

    def _flush(self, job: Job, reply: ReplySlot | None = None,
               after_commit: Callable[[], None] | None = None) -> None:
        """Hand the job's events to the store (one group), then its sends to their mailboxes.

        ``after_commit`` (answering a client) runs once the group is stored; if the store
        fails instead, ``reply`` fails with that error."""
        ops, deliveries = job.ops, job.deliveries
        job.ops, job.deliveries = [], []
        job.base_head = job.actor.head
        if ops:
            if after_commit is not None:
                settle = after_commit
                self.store.submit(ops, self.store.waiter(lambda w: _settle_after(w, reply, settle)))
            else:
                self.store.submit(ops)
        elif after_commit is not None:
            after_commit()
        if deliveries:
            self._deliver(deliveries)

    def _discard(self, job: Job) -> None:
        """Forget what an unfinished handler did: its events and sends never happened."""
        if job.base_head is not None:
            job.actor.head = job.base_head
        job.ops, job.deliveries = [], []

    def _worker_died(self, job: Job, reason: str) -> _Outcome:
        """The actor's worker died during ``job``: blame the actor whose handler was running."""
        actor, batch = job.actor, job.batch
        actor.worker = None
        if job.crash is not None:  # it had crashed already; the worker died after
            return job.requeue + batch[job.done:], job.crash, job.settle or _nothing
        self._discard(job)
        rest = batch[job.done:]
        if not rest:
            return [], None, _nothing
        if not job.blamed:  # another actor took the worker down: this one just moves
            return rest, None, _nothing
        env = rest[0]
        crash = f"{reason} while handling {HANDLERS[env.kind][0]}"
        retry, settle = self._crashed(job, env, crash)
        return ([env] if retry else []) + rest[1:], crash, settle

    def _worker_gone(self, worker: Worker) -> None:
        """A worker died: decide, as things stand at this moment, whose handler is to blame.

        The actor the daemon killed it for, if that is why; else the actors whose handlers
        were running (not waiting in a host call); else, when every handler there was
        waiting, all of them (one of them, not the daemon, ended the worker)."""
        jobs = [a.job for a in self.actors.values() if a.job is not None and a.job.worker is worker]
        if worker.culprit is not None:
            for job in jobs:
                job.blamed = job.actor.id == worker.culprit
            return
        running = [job for job in jobs if not job.in_host]
        for job in jobs:
            job.blamed = not job.in_host or not running

    def _crashed(self, job: Job, env: Envelope, crash: str) -> tuple[bool, Callable[[], None]]:
        """The handler of ``env`` crashed: record it, count the delivery of a stored send.

        Returns whether to deliver ``env`` again, and what tells its caller."""
        actor = job.actor
        self._discard(job)
        data: dict[str, Any] = {"reason": crash, "handler": HANDLERS[env.kind][0], "peer": env.sender}
        retry = dead = False
        if env.mail_id is not None:
            limit = actor.manifest.max_deliveries
            env.attempts += 1
            data["mail"], data["attempts"] = env.mail_id, env.attempts
            dead = env.attempts >= limit
            retry = not dead
        ops: list[Op] = [PutEvent(self._event(actor, "runtime/crash", data))]
        if dead and env.mail_id is not None:
            ops.append(PutEvent(self._event(actor, "runtime/dead-letter", {
                "mail": env.mail_id, "peer": env.sender, "attempts": env.attempts, "reason": crash}, env.payload)))
            ops.append(DeadLetter(env.mail_id, crash, env.attempts, chain.now_us()))
        elif env.mail_id is not None:
            ops.append(MailboxAttempt(env.mail_id, env.attempts))
        self.store.submit(ops)
        reply = env.reply
        if env.kind == CH_OPEN:
            channel = env.channel
            error = f"actor {actor.name} {crash}"
            return retry, functools.partial(self._opened, channel, reply, None, error)
        if reply is None:
            return retry, _nothing
        return retry, functools.partial(reply.fail, ActorFailed(f"actor {actor.name} {crash}"))

    def _fail_all(self, actor: Actor, batch: list[Envelope], reason: str) -> None:
        for env in batch:
            if env.reply is not None:
                env.reply.fail(ActorFailed(f"actor {actor.name} {reason}"))

    async def _host_actor(self, actor: Actor) -> Worker:
        """The actor's worker, with its module loaded there (placed on one first if needed)."""
        worker = actor.worker
        if worker is not None and worker.alive:
            return worker
        actor.worker = None
        manifest = actor.manifest
        source = await self._component_source(manifest.component)
        load: dict[str, Any] = {"actor": actor.id, "path": str(manifest.component), "source": source}
        if manifest.kind == "wasm":
            cache = self.wasm_cache()
            await trio.to_thread.run_sync(_precompile, manifest.component, cache)
            load.update(kind="wasm", memory_limit=manifest.memory_limit, timeout=manifest.handler_timeout,
                        wasi=dataclasses.asdict(manifest.wasi), cache=str(cache))
        profile, dedicated = self._profile(manifest)
        answer: Any = None
        placed: Worker | None = None
        for attempt in range(3):
            placed = worker = await self.pool.place(profile, dedicated)
            worker.actors.add(actor.id)
            limit = manifest.handler_timeout
            try:
                with trio.move_on_after(limit) as scope:
                    answer = await worker.call("load", load)
                if scope.cancelled_caught:
                    reason = f"loading {manifest.component} took longer than its handler_timeout of {limit:g} s"
                    self.pool.kill(worker, reason, culprit=actor.id)
                    worker.actors.discard(actor.id)
                    raise ActorFailed(reason)
            except WorkerDied as exc:
                worker.actors.discard(actor.id)
                if attempt == 2:
                    raise ActorFailed(f"its worker died while loading it: {exc}") from None
                continue
            except TheaterError:
                self._unplace(actor, worker)
                raise
            break
        assert placed is not None
        handlers = answer.get("handlers") if isinstance(answer, dict) else None
        if not isinstance(handlers, list) or not all(isinstance(h, str) for h in handlers):
            self.pool.kill(placed, "the worker sent an invalid answer to load")
            raise ActorFailed("its worker sent an invalid answer")
        actor.worker = placed
        actor.handlers = frozenset(handlers)
        return placed

    def _unplace(self, actor: Actor, worker: Worker | None = None) -> None:
        """Take the actor off its worker (a dedicated worker ends with its actor)."""
        worker = worker or actor.worker
        actor.worker = None
        if worker is None:
            return
        worker.actors.discard(actor.id)
        if worker.dedicated:
            self.pool.kill(worker, "its actor is gone", expected=True)
        elif worker.alive and self._nursery is not None:
            self._nursery.start_soon(_unload, worker, actor.id)

    def _profile(self, manifest: Manifest) -> tuple[Profile, bool]:
        dedicated = manifest.isolation == "dedicated"
        limit = manifest.memory_limit
        sandbox = manifest.sandbox
        read = tuple(str(p) for p in sandbox.read)
        write = tuple(str(p) for p in sandbox.write)
        network = sandbox.network
        default = self.pool.default_profile
        profile = Profile(
            memory_limit=default.memory_limit if limit == DEFAULT_MEMORY_LIMIT else limit,
            read=default.read + read,
            write=default.write + write,
            network=network or default.network,
        )
        if manifest.kind == "wasm":
            # a component's memories are capped by its store (memory_limit), and each reserves
            # 4 GiB of address space: no RLIMIT_AS; the compile cache is readable
            profile = dataclasses.replace(profile, memory_limit=None, read=profile.read + (str(self.wasm_cache()),))
        return profile, dedicated

    def wasm_cache(self) -> Path:
        """Compiled components, written by the daemon only (workers may read them)."""
        return self.store.path.parent / "wasm-cache"

    async def _component_source(self, path: Path) -> bytes:
        return await trio.to_thread.run_sync(read_component, path)

    async def _host_call(self, worker: Worker, args: dict[str, Any]) -> Any:
        """A handler in ``worker`` called the message-server host API."""
        actor_id = args.get("actor")
        actor = self.actors.get(actor_id) if isinstance(actor_id, str) else None
        job = actor.job if actor is not None else None
        if actor is None or job is None or job.worker is not worker:
            raise BadInput("the message server is only available inside a handler (not in init)")
        op = args.get("op")
        msg = args.get("msg", b"")
        if not isinstance(msg, bytes):
            raise BadInput("msg must be bytes")
        timeout = args.get("timeout")
        job.in_host += 1
        scope = job.scope
        left = scope.deadline - trio.current_time() if scope is not None else 0.0
        if scope is not None:
            scope.deadline = math.inf  # waiting on the daemon is not the handler's time
        try:
            if op == "send":
                await self._outbox_send(job, _text(args, "target"), msg, timeout)
                return None
            self._flush(job)
            if op == "request":
                return await self.request(actor, _text(args, "target"), msg, timeout)
            if op == "open-channel":
                return await self.channels.open_from_actor(actor, _text(args, "target"), msg, timeout)
            if op == "send-on-channel":
                await self.channels.send(actor, _text(args, "channel"), msg)
                return None
            if op == "close-channel":
                await self.channels.close(actor, _text(args, "channel"))
                return None
            raise BadInput(f"unknown host operation {op!r}")
        finally:
            job.in_host -= 1
            if scope is not None and actor.job is job:
                scope.deadline = trio.current_time() + left

    async def _outbox_send(self, job: Job, ref: str, msg: bytes, timeout: float | None) -> None:
        """A handler's send: part of its handling's transaction (a transactional outbox).

        The mailbox row and the sender's event are stored in the same group as the
        handler's own event; the message reaches the target's mailbox once that group is
        in the store's queue.  A nearly full target makes the sender wait for room first
        (backpressure) without storing anything yet, so a crash cannot double it."""
        sender = job.actor
        data: dict[str, Any] = {"peer": ref, "size": len(msg)}
        try:
            target = self.live(ref)
            data["peer"], data["peer_name"] = target.id, target.name
            _check_handles_sends(target)
            limit = self._timeout(timeout)
            if target is not sender:
                await self._wait_for_room(target, limit)
        except TheaterError as exc:
            data.update(outcome="error", error=str(exc))
            self.emit(sender, "message-server/send", data, msg)
            raise
        if sender.job is not job:
            raise NotFound(f"actor {sender.name} was stopped")
        mail_id = next(self._mail_ids)
        data["outcome"] = "ok"
        job.ops.append(MailboxPut(mail_id, target.id, sender.id, msg))
        self.emit(sender, "message-server/send", data, msg)
        job.deliveries.append((target, Envelope(SEND, sender.id, msg, mail_id=mail_id)))

    async def _wait_for_room(self, target: Actor, limit: float) -> None:
        with trio.move_on_after(limit):
            while target.status == RUNNING and (
                target.replaying is not None or target.late
                or target.mailbox_depth >= _capacity(target) // 2
            ):
                if target.room is None:
                    target.room = trio.Event()
                await target.room.wait()
            if target.status != RUNNING:
                raise NotFound(f"actor {target.name} is {target.status}")
            return
        raise Busy(f"mailbox full: actor {target.name} has {target.mailbox_depth} messages waiting")

    def actor_log(self, actor: Actor, stream: str, text: str) -> None:
        """Keep what an actor printed (or its handler errors), bounded, for ``logs``/``inspect``.

        Printed output arrives in pieces (``print`` writes the text and the newline apart):
        a line is kept once it is complete (or too long to wait for)."""
        if stream in ("stdout", "stderr", "worker stdout", "worker stderr"):
            text = actor.partial.pop(stream, "") + text
            if not text.endswith("\n") and len(text) < MAX_LOG_LINE:
                head, sep, rest = text.rpartition("\n")
                if rest:
                    actor.partial[stream] = rest
                text = head + sep
        lines = actor.log
        stamp = chain.iso_timestamp(chain.now_us())
        for line in text.splitlines():
            lines.append(f"{stamp} {stream}: {line[:MAX_LOG_LINE]}")

    def _worker_log(self, worker: Worker, actor_id: str, stream: str, text: str) -> None:
        """Output of a worker: an actor's (printed in its handler), or the worker's own
        (another thread, the interpreter, fd 2), which goes to every actor it hosts.
        Never to the daemon's log, which a worker must not be able to write into."""
        actor = self.actors.get(actor_id)
        if actor is not None and actor.id in worker.actors:
            self.actor_log(actor, stream, text)
            return
        for hosted in worker.actors:
            other = self.actors.get(hosted)
            if other is not None:
                self.actor_log(other, f"worker {stream}", text)

    def _deliver(self, deliveries: list[tuple[Actor, Envelope]]) -> None:
        """Hand outbox sends to their mailboxes, in order; a full one keeps them in ``late``."""
        for target, env in deliveries:
            if target.replaying is None and not target.late:
                try:
                    target.mailbox_tx.send_nowait(env)
                    continue
                except trio.WouldBlock:
                    pass
                except (trio.ClosedResourceError, trio.BrokenResourceError, AttributeError):
                    self._undeliverable(target, [env])
                    continue
            target.late.append(env)
            if len(target.late) == 1:
                target.late_drained = trio.Event()
                assert self._nursery is not None
                self._nursery.start_soon(self._deliver_late, target)

    async def _deliver_late(self, target: Actor) -> None:
        try:
            if target.replaying is not None:
                await target.replaying.wait()
            while target.late:
                env = target.late[0]
                await target.mailbox_tx.send(env)
                if target.late and target.late[0] is env:
                    target.late.popleft()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._undeliverable(target, list(target.late))
            target.late.clear()
        finally:
            target.late_drained.set()
            _room(target)

    def _undeliverable(self, target: Actor, envs: list[Envelope]) -> None:
        """Outbox sends that found the target's mailbox closed.  A stop that cleared the
        stored mailbox may have come before their rows were stored: remove them (after
        them, in the store's order).  Otherwise the target is shutting down with the
        daemon, and the rows stay for the next start."""
        if target.cleared:
            ops: list[Op] = [MailboxDelete(env.mail_id) for env in envs if env.mail_id is not None]
            if ops:
                self.store.submit(ops)

    def _opened(self, channel: Any, reply: ReplySlot | None, accept: Any, error: str | None) -> None:
        """The target decided on a channel open and its event is stored."""
        if channel.state == "closed":  # closed while the target was deciding
            if reply is not None:
                reply.fail(ActorFailed(f"channel {channel.id} was closed while it was being opened"))
            accepted = error is None and accept is not None and accept.accepted
            if accepted and channel.slot is not None and channel.slot.abandoned:
                # the opener gave up (nobody was told then); the target thinks it is open: tell it, once
                self.channels._notify_close(channel, channel.target, "the opener gave up waiting")
            return
        self.channels.opened(channel, accept, error)
        if reply is not None:
            if error is not None:
                reply.fail(ActorFailed(error))
            else:
                reply.set(accept)

    async def _after_crash(self, actor: Actor, crash: str, ops: list[Op] | None = None) -> None:
        """Apply the manifest's restart policy after a crash, and record what happened."""
        self.actor_log(actor, "crash", crash)
        ops = (ops or []) + self._after_crash_ops(actor, crash)
        self._unplace(actor)
        if actor.status != FAILED:
            try:
                await self._host_actor(actor)
            except trio.Cancelled:
                self.store.submit(ops)
                raise
            except TheaterError as exc:
                self._fail_actor(actor, f"restart failed: {exc}", ops)
            else:
                ops.append(PutEvent(self._event(actor, "runtime/restart", {
                    "attempt": actor.restart_count, "reason": crash})))
                log.warning("actor %s crashed and was restarted (%d): %s", actor.name, actor.restart_count, crash)
        await self._commit(ops)

    def _fail_actor(self, actor: Actor, reason: str, ops: list[Op]) -> None:
        log.warning("actor %s failed: %s", actor.name, reason)
        actor.status, actor.reason = FAILED, reason
        ops.append(SetStatus(actor.id, FAILED, reason))
        if actor.mailbox_tx is not None:
            actor.mailbox_tx.close()
        self._unplace(actor)
        assert self._nursery is not None
        self._nursery.start_soon(self.channels.close_for_actor, actor, f"actor {actor.name} failed")

    def _after_crash_ops(self, actor: Actor, crash: str) -> list[Op]:
        """Count the crash against the restart policy, failing the actor past it."""
        ops: list[Op] = []
        manifest = actor.manifest
        now = time.monotonic()
        while actor.restarts and now - actor.restarts[0] > manifest.restart_window:
            actor.restarts.popleft()
        if manifest.restart == "on-failure" and len(actor.restarts) < manifest.max_restarts:
            actor.restarts.append(now)
            actor.restart_count += 1
            return ops
        if manifest.restart == "on-failure":
            reason = (f"{crash} ({len(actor.restarts)} restarts within {manifest.restart_window:g} s;"
                      f" limit {manifest.max_restarts})")
        else:
            reason = crash
        self._fail_actor(actor, reason, ops)
        return ops

    # ------------------------------------------------------------------
    # chain helpers

    def _event(self, actor: Actor, type: str, data: dict[str, Any], payload: bytes | None = None) -> StoredEvent:
        """Append an event to the actor's chain (the caller stores it, in chain order)."""
        ev = chain.make_event(actor.id, actor.head, type, data, payload)
        actor.head = chain.head_after(ev)
        return ev

    def emit(self, actor: Actor | None, type: str, data: dict[str, Any], payload: bytes | None = None) -> None:
        """Record an event of ``actor`` (none for external senders): in the store group of
        the handler it runs now, if any, else on its own."""
        if actor is None:
            return
        op = PutEvent(self._event(actor, type, data, payload))
        job = actor.job
        if job is not None:
            job.ops.append(op)
        else:
            self.store.submit([op])

    async def _commit(self, ops: list[Op]) -> None:
        done = trio.Event()
        failure: list[BaseException] = []

        def wake(w: Any) -> None:
            if w.error is not None:
                failure.append(w.error)
            done.set()

        self.store.submit(ops, self.store.waiter(wake))
        await done.wait()
        if failure:
            raise store_error(failure[0])

    def record(self, actor: Actor | None, type: str, data: dict[str, Any], payload: bytes | None = None) -> list[Op]:
        """Ops recording a sender-side event (nothing for external senders)."""
        if actor is None:
            return []
        return [PutEvent(self._event(actor, type, data, payload))]

    # ------------------------------------------------------------------
    # messaging: the host API's implementation

    def _timeout(self, timeout: float | None) -> float:
        if timeout is None:
            return self.settings.default_timeout
        if not (isinstance(timeout, (int, float)) and timeout > 0 and math.isfinite(timeout)):
            raise BadInput("timeout must be a positive number of seconds")
        return float(timeout)

    async def enqueue(self, target: Actor, env: Envelope, timeout: float) -> None:
        """Put ``env`` in the mailbox; wait (backpressure) up to ``timeout`` when it is full."""
        self.writable()
        if target.replaying is not None:
            with trio.move_on_after(timeout):
                await target.replaying.wait()
            if target.replaying is not None:
                raise Busy(f"mailbox full: actor {target.name} is still replaying messages from before the restart")
        if target.late:  # earlier sends are still waiting for room: keep their order
            with trio.move_on_after(timeout):
                await target.late_drained.wait()
            if target.late:
                raise Busy(f"mailbox full: actor {target.name} has {target.mailbox_depth} messages waiting")
        try:
            target.mailbox_tx.send_nowait(env)
            return
        except trio.WouldBlock:
            pass
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise NotFound(f"actor {target.name} is stopping") from None
        with trio.move_on_after(timeout):
            try:
                await target.mailbox_tx.send(env)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                raise NotFound(f"actor {target.name} is stopping") from None
            return
        raise Busy(f"mailbox full: actor {target.name} has {target.mailbox_depth} messages waiting")

    async def send(self, sender: Actor | None, ref: str, msg: bytes, timeout: float | None = None) -> None:
        """Deliver a one-way message; returns once it is durably in the target's mailbox."""
        done = trio.Event()
        failure: list[TheaterError] = []

        def finished(error: TheaterError | None) -> None:
            if error is not None:
                failure.append(error)
            done.set()

        await self.send_start(sender, ref, msg, timeout, finished)
        await done.wait()
        if failure:
            raise failure[0]

    async def send_start(self, sender: Actor | None, ref: str, msg: bytes, timeout: float | None,
                         finished: Callable[[TheaterError | None], None]) -> None:
        """Enqueue now (keeping arrival order); ``finished`` runs once it is stored.

        Raises at once when the message cannot be accepted at all.
        """
        self.writable()
        sender_id = sender.id if sender else EXTERNAL
        data: dict[str, Any] = {"peer": ref, "size": len(msg)}
        mail_id: int | None = None
        try:
            target = self.live(ref)
            data["peer"], data["peer_name"] = target.id, target.name
            _check_handles_sends(target)
            limit = self._timeout(timeout)
            mail_id = next(self._mail_ids)
            env = Envelope(SEND, sender_id, msg, mail_id=mail_id)
            put = MailboxPut(mail_id, target.id, sender_id, msg)
            # The stored row must go to the writer before a handler can remove it.  When the
            # mailbox has room, the envelope goes in now and the row is submitted below, in
            # this same step on the loop: no handler can run before that.
            queued = False
            if target.replaying is None and not target.late:
                try:
                    target.mailbox_tx.send_nowait(env)
                    queued = True
                except trio.WouldBlock:
                    pass
                except (trio.ClosedResourceError, trio.BrokenResourceError):
                    raise NotFound(f"actor {target.name} is stopping") from None
            if not queued:  # it may wait for room: the row goes first
                self.store.submit([put])
                await self.enqueue(target, env, limit)
        except TheaterError as exc:
            ops: list[Op] = [] if mail_id is None else [MailboxDelete(mail_id)]
            if sender is not None:
                data.update(outcome="error", error=str(exc))
                ops.extend(self.record(sender, "message-server/send", data, msg))
            if ops:
                self.store.submit(ops)
            raise
        data["outcome"] = "ok"

        def stored(w: Any) -> None:
            finished(None if w.error is None else store_error(w.error))

        # acknowledged once the row (in this batch, or submitted before it) is committed
        ops = self.record(sender, "message-server/send", data, msg)
        if queued:
            ops.insert(0, put)
        self.store.submit(ops, self.store.waiter(stored))

    def _check_cycle(self, sender: Actor | None, target: Actor) -> None:
        if sender is None:
            return
        path = [target]
        cur: Actor | None = target
        while cur is not None and cur is not sender:
            cur = self.waiting_on.get(cur)
            if cur is not None:
                path.append(cur)
                if len(path) > len(self.actors) + 1:
                    return
        if cur is sender:
            names = " -> ".join([sender.name, *(a.name for a in path)])
            raise ActorFailed(f"request cycle: {names}")

    async def request(self, sender: Actor | None, ref: str, msg: bytes, timeout: float | None = None) -> bytes:
        """Send a request and wait for the reply (or a timeout, or a cycle error)."""
        data: dict[str, Any] = {"peer": ref, "size": len(msg)}
        try:
            pending = await self.request_start(sender, ref, msg, timeout)
            data["peer"], data["peer_name"] = pending.target.id, pending.target.name
            try:
                reply = await self.request_finish(pending)
            finally:
                if sender is not None:
                    self.waiting_on.pop(sender, None)
        except TheaterError as exc:
            if sender is not None:
                data.update(outcome="timeout" if isinstance(exc, Timeout) else "error", error=str(exc))
                self.emit(sender, "message-server/request", data, msg)
            raise
        if sender is not None:
            data.update(outcome="ok", reply_size=len(reply))
            self.emit(sender, "message-server/request", data, msg)
        return reply

    async def request_start(self, sender: Actor | None, ref: str, msg: bytes, timeout: float | None) -> PendingRequest:
        """Enqueue a request now (keeping arrival order); await :meth:`request_finish` for the reply."""
        target = self.live(ref)
        self._check_cycle(sender, target)
        limit = self._timeout(timeout)
        pending = PendingRequest(target, ReplySlot(), trio.current_time() + limit, limit)
        if sender is not None:
            self.waiting_on[sender] = target
        try:
            await self.enqueue(target, Envelope(REQUEST, sender.id if sender else EXTERNAL, msg, pending.slot), limit)
        except BaseException:
            if sender is not None:
                self.waiting_on.pop(sender, None)
            raise
        return pending

    async def request_finish(self, pending: PendingRequest) -> bytes:
        remaining = max(pending.deadline - trio.current_time(), 0)
        try:
            return await pending.slot.wait(remaining, f"request to {pending.target.name}")
        except Timeout:
            raise pending.timed_out() from None

    # ------------------------------------------------------------------
    # restart, rm, prune

    async def restart(self, ref: str) -> Actor:
        """Stop (if running) and start again: same id, name and last state, a fresh module.
        Messages accepted and not handled yet are kept and handled after the restart."""
        self.writable()
        actor = self.resolve(ref)
        if actor.status in (STARTING, STOPPING):
            raise Busy(f"actor {actor.name} is {actor.status}; try again")
        if actor.status == REMOVED:
            raise NotFound(f"actor {actor.name} was removed")
        holder = self.names.get(actor.name)
        if holder is not None and holder is not actor and holder.status != STOPPED:
            raise BadInput(f"the name {actor.name!r} is taken by another actor (id {holder.id})")
        if actor.status == RUNNING:
            await self._stop_actor(actor, STOPPED, None, record=False, persist=False)
        manifest = await trio.to_thread.run_sync(load_manifest, str(actor.manifest.path))
        actor.manifest = manifest
        self._unplace(actor)
        self.names[actor.name] = actor
        actor.status, actor.reason, actor.cleared = STARTING, None, False
        actor.restarts.clear()
        try:
            await self._host_actor(actor)
        except TheaterError as exc:
            actor.status, actor.reason = FAILED, f"restart failed: {exc}"
            await self._commit([SetStatus(actor.id, FAILED, actor.reason)])
            raise ActorFailed(f"actor {actor.name} {actor.reason}") from None
        actor.restart_count += 1
        ev = self._event(actor, "runtime/restart", {"attempt": actor.restart_count, "reason": "restarted by request"})
        with trio.CancelScope(shield=True):
            await self._commit([PutEvent(ev), SetStatus(actor.id, RUNNING, None)])
            mail = [m for m in await trio.to_thread.run_sync(self.store.load_mailbox) if m.actor == actor.id]
            actor.status = RUNNING
            self._start_mailbox(actor)
            if mail:
                actor.replaying = trio.Event()
                assert self._nursery is not None
                self._nursery.start_soon(self._replay, actor, mail)
        return actor

    async def remove(self, ref: str, purge: bool = False) -> Actor:
        """Forget a stopped or failed actor: it is no longer listed and its name is free.
        Its chain is kept (``chain show ID`` still works) unless ``purge``."""
        self.writable()
        actor = self.resolve(ref)
        if actor.status in (RUNNING, STARTING, STOPPING):
            raise BadInput(f"actor {actor.name} is {actor.status}; stop it first")
        if actor.status == REMOVED and not purge:
            raise NotFound(f"actor {actor.name} was removed already")
        if self.names.get(actor.name) is actor:
            del self.names[actor.name]
        self._unplace(actor)
        await self._commit([RemoveActor(actor.id, purge)])
        actor.status = REMOVED
        if purge:
            self.actors.pop(actor.id, None)
        return actor

    async def prune(self, purge: bool = False) -> list[Actor]:
        """Remove every stopped and failed actor."""
        gone = [a for a in self.actors.values() if a.status in (STOPPED, FAILED)]
        for actor in gone:
            await self.remove(actor.id, purge)
        return gone

    # ------------------------------------------------------------------
    # dead letters

    async def dead_letters(self, ref: str | None = None) -> list[dict[str, Any]]:
        actor = self.resolve(ref) if ref is not None else None
        await self._commit([])  # (every row submitted so far is stored)
        rows = await trio.to_thread.run_sync(self.store.dead_letters, actor.id if actor else None)
        views = []
        for row in rows:
            owner = self.actors.get(row.actor)
            views.append({"id": row.id, "actor": row.actor, "actor_name": owner.name if owner else None,
                          "sender": row.sender, "size": len(row.payload), "msg": row.payload,
                          "attempts": row.attempts, "reason": row.reason, "time": chain.iso_timestamp(row.ts)})
        return views

    async def _dead_letter(self, letter_id: int) -> Any:
        await self._commit([])
        rows = await trio.to_thread.run_sync(self.store.dead_letters, None)
        for row in rows:
            if row.id == letter_id:
                return row
        raise NotFound(f"unknown dead letter {letter_id}")

    async def retry_dead_letter(self, letter_id: int) -> dict[str, Any]:
        """Deliver a dead letter again (as a new message, counted afresh)."""
        row = await self._dead_letter(letter_id)
        target = self.live(row.actor)
        mail_id = next(self._mail_ids)
        await self._wait_for_room(target, self.settings.default_timeout)
        ev = self._event(target, "runtime/dead-letter-retry", {"mail": letter_id, "new_mail": mail_id,
                                                              "peer": row.sender})
        await self._commit([DeadLetterRetry(letter_id, mail_id), PutEvent(ev)])
        self._deliver([(target, Envelope(SEND, row.sender, row.payload, mail_id=mail_id))])
        return {"id": letter_id, "actor": target.id, "name": target.name, "mail": mail_id}

    async def drop_dead_letter(self, letter_id: int) -> dict[str, Any]:
        row = await self._dead_letter(letter_id)
        await self._commit([DeadLetterDrop(letter_id)])
        return {"id": letter_id, "actor": row.actor, "dropped": True}

    # ------------------------------------------------------------------
    # views

    def actor_view(self, actor: Actor) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": actor.id,
            "name": actor.name,
            "status": actor.status,
            "handled": actor.handled,
            "chain_length": actor.head.seq,
            "mailbox": actor.mailbox_depth if actor.status == RUNNING else 0,
            "manifest": str(actor.manifest.path),
            "created": chain.iso_timestamp(actor.created_us),
            "restarts": actor.restart_count,
            "channels": self.channels.count_for(actor),
            "errors": actor.errors,
        }
        if actor.current is not None:
            view["busy"] = {"handler": actor.current, "seconds": round(time.monotonic() - actor.busy_since, 3)}
        if actor.reason:
            view["reason"] = actor.reason
        worker = actor.worker
        if worker is not None and worker.alive:
            view["worker"] = {"pid": worker.pid, "dedicated": worker.dedicated, "sandbox": worker.sandbox}
        return view

    def list_view(self, include_stopped: bool = False) -> list[dict[str, Any]]:
        return [self.actor_view(a) for a in self.actors.values()
                if a.status != REMOVED and (include_stopped or a.status != STOPPED)]


def _hex(h: bytes | None) -> str | None:
    return None if h is None else h.hex()


_Outcome = tuple[list[Envelope], str | None, Callable[[], None]]  # (handle again, crash, tell the caller)


def _take(rx: Any, backlog: deque[Envelope]) -> Envelope | None:
    """The next envelope without waiting: the backlog first, then the mailbox."""
    while True:
        if backlog:
            env = backlog.popleft()
        else:
            try:
                env = rx.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return None
        if not env.void:
            return env


def _nothing() -> None:
    pass


def store_error(error: BaseException) -> TheaterError:
    """What a caller is told when its write did not reach the store."""
    if isinstance(error, TheaterError):  # DiskFull: exit 75, says how much is free
        return error
    return InternalError(f"cannot write the store: {error}")


def _settle_after(waiter: Any, reply: ReplySlot | None, settle: Callable[[], None]) -> None:
    if waiter.error is None:
        settle()
    elif reply is not None:  # the caller must not believe what was not stored
        reply.fail(store_error(waiter.error))


def _room(actor: Actor) -> None:
    """Wake the senders waiting for room in ``actor``'s mailbox."""
    room, actor.room = actor.room, None
    if room is not None:
        room.set()


def _capacity(actor: Actor) -> int:
    if actor.mailbox_tx is None:
        return 0
    return int(actor.mailbox_tx.statistics().max_buffer_size)


def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str):
        raise BadInput(f"{key} must be text")
    return value


async def _unload(worker: Worker, actor_id: str) -> None:
    try:
        await worker.call("unload", {"actor": actor_id})
    except (WorkerDied, TheaterError):
        pass


def _check_handles_sends(target: Actor) -> None:
    """A send to an actor whose module (once loaded) has no ``handle_send`` fails at once."""
    if target.handlers and "handle_send" not in target.handlers:
        raise ActorFailed(f"actor {target.name} has no handle_send")


def _load_manifests(paths: list[str]) -> list[Manifest | TheaterError]:
    """Each manifest, or why it cannot be loaded (runs on a thread)."""
    loaded: list[Manifest | TheaterError] = []
    for path in paths:
        try:
            loaded.append(load_manifest(path))
        except TheaterError as exc:
            loaded.append(exc)
    return loaded


def _precompile(path: Path, cache: Path) -> None:
    """Compile a component into the cache its workers read (runs on a thread, in the daemon:
    compiled code is executed as it is, so no worker may write it)."""
    from .wasm import ComponentError
    from .wasm.engine import compile_component, get_engine

    cache.mkdir(mode=0o700, exist_ok=True)
    try:
        compile_component(path, get_engine(), cache)
    except ComponentError as exc:
        raise BadInput(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - wasmtime's own errors: not a usable component
        raise BadInput(f"{path} is not a WebAssembly component: {exc}") from None


def read_component(path: Path) -> bytes:
    """The component file's bytes (read off the event loop; a regular file, capped)."""
    return read_regular_file(path, LIMITS.for_component(path), "component")
