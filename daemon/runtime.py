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

import gc
import itertools
import logging
import math
import queue
import sys
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import outcome
import trio

from actors import message_server as ms

from . import chain
from .chain import EXTERNAL, Head, StoredEvent
from .errors import ActorFailed, BadInput, Busy, InternalError, NotFound, TheaterError, Timeout
from .jsontext import check_json
from .loopcalls import LoopCalls
from .timers import Timers
from .files import LIMITS, read_regular_file
from .manifest import Manifest, check_name, load_manifest
from .store import (
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
from .workers import WorkerPool

log = logging.getLogger("theaterd.runtime")

STARTING = "starting"
RUNNING = "running"
STOPPED = "stopped"
FAILED = "failed"
STOPPING = "stopping"

BATCH = 64  # sends/requests handed to one worker hop at most

SEND = "send"
REQUEST = "request"
CH_OPEN = "channel-open"
CH_MESSAGE = "channel-message"
CH_CLOSE = "channel-close"


_HANDLERS = {  # envelope kind -> (handler function, event type recorded by the receiver)
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
    max_threads: int = 512


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
    module: ModuleType | None = None
    state: bytes | None = None
    head: Head = field(default_factory=Head)
    handled: int = 0
    status: str = RUNNING
    reason: str | None = None
    created_us: int = 0
    mailbox_tx: Any = None
    mailbox_rx: Any = None
    cancel_scope: trio.CancelScope | None = None
    done: trio.Event = field(default_factory=trio.Event)
    current: str | None = None  # handler being run
    busy_since: float = 0.0
    restarts: deque[float] = field(default_factory=deque)
    restart_count: int = 0
    replaying: trio.Event | None = None  # set while mail stored before a restart is re-queued
    lock: threading.RLock = field(default_factory=threading.RLock)  # guards head, state, handled
    abandoned: bool = False  # the mailbox task ended; a late handler result is dropped
    late: deque[Envelope] = field(default_factory=deque)  # outbox sends waiting for mailbox room
    late_drained: trio.Event = field(default_factory=trio.Event)  # set when ``late`` empties
    cleared: bool = False  # stopped for good: its stored mailbox was (or is being) cleared
    dropped: int = 0  # accepted messages it never handled, dropped when it was stopped
    pending: Any = None  # the running batch's _PendingWrites (guarded by lock)
    batch_done: int = 0  # envelopes of the running batch already handled and recorded

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
        self.workers = WorkerPool(self.settings.max_threads)
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
        self.started_at = time.time()

    # ------------------------------------------------------------------
    # lifecycle

    async def serve(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Restore actors from the store, then host them until cancelled."""
        self._token = trio.lowlevel.current_trio_token()
        if self.call_soon is None:
            self.call_soon = LoopCalls(self._token)
        self.workers.call_soon = self.call_soon
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.timers.run)
            await self._restore()
            task_status.started()
            await trio.sleep_forever()

    async def _restore(self) -> None:
        rows = await trio.to_thread.run_sync(self.store.load_actors)
        mail = await trio.to_thread.run_sync(self.store.load_mailbox)
        self._mail_ids = itertools.count(max((m.id for m in mail), default=0) + 1)
        pending: dict[str, list[Any]] = {}
        for m in mail:
            pending.setdefault(m.actor, []).append(m)
        for row in rows:
            reason: str | None
            try:
                manifest = await trio.to_thread.run_sync(load_manifest, row.manifest)
            except TheaterError as exc:
                manifest = Manifest(Path(row.manifest), row.name, Path(row.manifest))
                if row.status == RUNNING:
                    row_status, reason = FAILED, f"cannot restore: {exc}"
                else:
                    row_status, reason = row.status, row.reason
            else:
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
                try:
                    actor.module = await self.workers.run(_load_module, actor.id, manifest.component)
                except BaseException as exc:  # noqa: BLE001 - actor code may raise anything
                    actor.status, actor.reason = FAILED, f"cannot load {manifest.component}: {_describe(exc)}"
                    self.store.submit([SetStatus(actor.id, FAILED, actor.reason)])
                    self.names[actor.name] = actor
                    continue
                self.names[actor.name] = actor
                self._start_mailbox(actor)
                queued = pending.get(actor.id)
                if queued:
                    # accepted before the restart: handled first, in order, even past the mailbox size
                    actor.replaying = trio.Event()
                    assert self._nursery is not None
                    self._nursery.start_soon(self._replay, actor, queued)
            elif row_status == FAILED:
                self.names[actor.name] = actor
                if row.status != row_status:
                    self.store.submit([SetStatus(actor.id, FAILED, reason)])
            if row_status != RUNNING:
                actor.done.set()
        log.info("restored %d actors", sum(a.status == RUNNING for a in self.actors.values()))
        gc.freeze()  # long-lived actor objects: keep them out of every full collection

    async def _replay(self, actor: Actor, mail: list[Any]) -> None:
        try:
            for m in mail:
                await actor.mailbox_tx.send(Envelope(SEND, m.sender, m.payload, mail_id=m.id))
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

    # ------------------------------------------------------------------
    # lookup

    def resolve(self, ref: str) -> Actor:
        """An actor by id or unique name (running ones first, then the newest stopped one)."""
        actor = self.actors.get(ref) or self.names.get(ref)
        if actor is None:
            matches = [a for a in self.actors.values() if a.name == ref]
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
        failure: str | None = None
        try:
            actor.module = await self.workers.run(_load_module, actor.id, manifest.component)
            init = getattr(actor.module, "init", None)
            if init is not None:
                actor.current, actor.busy_since = "init", time.monotonic()
                result = await self.workers.run(self._invoke, actor, init, actor.state, None)
                actor.current = None
                actor.state = _unpack_state(result, "init")
        except trio.Cancelled:
            if self.names.get(name) is actor:
                del self.names[name]
            raise
        except BaseException as exc:  # noqa: BLE001 - actor code may raise anything
            failure = f"failed to start: {_describe(exc, self.settings.debug)}"
        actor.current = None
        self.actors[actor.id] = actor
        h = state_hash(actor.state)
        data: dict[str, Any] = {"name": name, "manifest": str(manifest.path), "state_hash": _hex(h)}
        if failure is not None:
            data.update(outcome="error", error=failure)
            actor.status, actor.reason = FAILED, failure
            actor.done.set()
        ev = self._event(actor, "runtime/spawn", data)
        with trio.CancelScope(shield=True):  # stored as running means it has a mailbox
            await self._commit([
                PutActor(actor.id, name, str(manifest.path), FAILED if failure else RUNNING, actor.created_us,
                         actor.reason),
                PutEvent(ev),
                PutState(actor.id, h, actor.state, 0),
            ])
            if failure is None:
                self._start_mailbox(actor)
                actor.status = RUNNING
        if failure is not None:
            raise ActorFailed(f"actor {name} {failure}")
        self._spawned += 1
        if self._spawned % 256 == 0:
            gc.freeze()  # thousands of idle actors must not make every full collection slower
        return actor

    async def stop(self, ref: str) -> Actor:
        actor = self.resolve(ref)
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
        backlog: deque[Envelope] = deque()  # taken from the mailbox but not handled yet
        try:
            with trio.CancelScope() as scope:
                actor.cancel_scope = scope
                while True:
                    env = _take(rx, backlog)
                    if env is None:
                        try:
                            env = await rx.receive()
                        except trio.EndOfChannel:
                            break
                    batch = [env]
                    if env.kind in (SEND, REQUEST):
                        # hand every queued send/request over in one worker hop
                        while len(batch) < BATCH and (nxt := _take(rx, backlog)) is not None:
                            if nxt.kind not in (SEND, REQUEST):
                                backlog.appendleft(nxt)
                                break
                            batch.append(nxt)
                    outcome = await self._handle_batch(actor, batch)
                    if outcome is not None:
                        done, crash, settle = outcome
                        backlog.extendleft(reversed(batch[done:]))
                        try:
                            await self._after_crash(actor, crash)
                        finally:
                            settle()  # the caller hears of the crash once the policy has been applied
                    if actor.status in (FAILED, STOPPED):  # (failed, then stopped meanwhile)
                        break
        finally:
            actor.current = None
            with actor.lock:
                if actor.pending is not None:
                    # handlers that finished before the stop: keep their events (queued only:
                    # this is the event loop, which never commits itself)
                    actor.pending.flush(inline=False)
                    actor.pending = None
                actor.abandoned = True
            # whatever is still queued will not be handled now
            while (env := _take(rx, backlog)) is not None:
                if env.reply is not None:
                    env.reply.fail(self._not_handled(actor))
            actor.done.set()

    def _not_handled(self, actor: Actor) -> TheaterError:
        if actor.status == FAILED:
            return ActorFailed(f"actor {actor.name} has failed: {actor.reason}")
        return NotFound(f"actor {actor.name} stopped before handling the message")

    def _invoke(self, actor: Actor, fn: Callable[..., Any], state: bytes | None, params: Any,
                channel: ms.ChannelInfo | None = None, pending: _PendingWrites | None = None) -> Any:
        """Runs on a worker thread: bind the host API to this actor, call the handler."""
        ms._bind_host(ActorHost(self, actor, pending), channel)
        try:
            if params is None:
                return fn(state)
            return fn(state, params)
        finally:
            ms._bind_host(None)

    async def _handle_batch(self, actor: Actor, batch: list[Envelope]) -> _Crash | None:
        """Handle envelopes in order on one worker thread; after a crash, says where and why."""
        while True:
            actor.batch_done = 0
            try:
                return await self.workers.run(self._run_batch, actor, batch)
            except Busy:  # every handler thread is taken: wait for one, never drop the batch
                log.warning("all handler threads are busy; actor %s waits", actor.name)
                await trio.sleep(0.05)
            except trio.Cancelled:
                # the ones already handled are answered from their stored events
                for env in batch[actor.batch_done:]:
                    if env.reply is not None:
                        env.reply.fail(NotFound(f"actor {actor.name} was stopped while handling the message"))
                raise

    def _run_batch(self, actor: Actor, batch: list[Envelope]) -> _Crash | None:
        """Worker thread: run each handler, record its event and hand the batch to the store.

        Events are built here, in handling order, under the actor's lock, and submitted to
        the store's writer directly: the store commits them in that order and then wakes
        the event loop once to release the replies.
        """
        pending = _PendingWrites(self.store, self._deliver, self._call_soon)
        actor.pending = pending
        try:
            for index, env in enumerate(batch):
                if actor.abandoned:  # stopped while an earlier handler of this batch ran
                    self._call_soon(self._fail_rest, actor, batch[index:])
                    return None
                crash = self._run_one(actor, env, pending)
                if crash is not None:
                    return (index + 1, *crash)
            return None
        finally:
            with actor.lock:
                actor.pending = None
                if not actor.abandoned:
                    pending.flush()

    def run_from_thread(self, fn: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Worker thread: ``await fn(*args)`` in a task on the loop; return or raise its outcome.

        Lighter than ``trio.from_thread.run``: one queued loop call (sent after whatever
        this thread queued before it), one task, one queue hand-back."""
        box: queue.SimpleQueue[outcome.Outcome] = queue.SimpleQueue()

        async def task() -> None:
            try:
                value = await fn(*args)
            except trio.Cancelled:
                box.put(outcome.Error(trio.RunFinishedError("the daemon is shutting down")))
                raise
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                box.put(outcome.Error(exc))
            else:
                box.put(outcome.Value(value))

        def start() -> None:
            try:
                assert self._nursery is not None
                self._nursery.start_soon(task)
            except RuntimeError:  # the nursery is closed: shutting down
                box.put(outcome.Error(trio.RunFinishedError("the daemon is shutting down")))

        calls = self.call_soon
        if calls is None:
            raise trio.RunFinishedError("the daemon is not running")
        calls(start)
        calls.flush_held()  # held calls of this job (and ``start``) go to the loop now, in order
        return box.get().unwrap()

    def _call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            assert self.call_soon is not None
            self.call_soon(fn, *args)
        except trio.RunFinishedError:
            pass

    def _deliver(self, deliveries: list[tuple[Actor, Envelope]]) -> None:
        """Event loop: hand outbox sends to their mailboxes, in order, waiting where full."""
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
                await target.mailbox_tx.send(target.late[0])
                target.late.popleft()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._undeliverable(target, list(target.late))
            target.late.clear()
        finally:
            target.late_drained.set()

    def _undeliverable(self, target: Actor, envs: list[Envelope]) -> None:
        """Outbox sends that found the target's mailbox closed.  A stop that cleared the
        stored mailbox may have come before their rows were stored: remove them (after
        them, in the store's order).  Otherwise the target is shutting down with the
        daemon, and the rows stay for the next start."""
        if target.cleared:
            ops: list[Op] = [MailboxDelete(env.mail_id) for env in envs if env.mail_id is not None]
            if ops:
                self.store.submit(ops)

    def outbox_send(self, sender: Actor, pending: _PendingWrites, ref: str, msg: bytes) -> bool:
        """Worker thread: record a handler's send in its batch (a transactional outbox).

        The mailbox row and the sender's event commit together with the handler's own
        event; the message reaches the target's mailbox right after they are submitted.
        Returns False when the slow path must be used (target busy, replaying, unknown...).
        """
        target = self.actors.get(ref) or self.names.get(ref)
        if target is None or target.status != RUNNING or target.replaying is not None or target.late:
            return False
        rx = target.mailbox_rx
        if rx is None:
            return False
        stats = rx.statistics()
        if stats.current_buffer_used >= stats.max_buffer_size // 2:
            return False  # nearly full: take the slow path, which applies backpressure
        mail_id = next(self._mail_ids)
        data = {"peer": target.id, "peer_name": target.name, "size": len(msg), "outcome": "ok"}
        with sender.lock:
            if sender.abandoned:
                raise ms.MessageServerError(f"actor {sender.name} was stopped")
            ev = self._event(sender, "message-server/send", data, msg)
            pending.add([MailboxPut(mail_id, target.id, sender.id, msg), PutEvent(ev)], None)
            pending.deliveries.append((target, Envelope(SEND, sender.id, msg, mail_id=mail_id)))
        return True

    def _fail_rest(self, actor: Actor, envs: list[Envelope]) -> None:
        for env in envs:
            if env.reply is not None:
                env.reply.fail(self._not_handled(actor))

    def _run_one(self, actor: Actor, env: Envelope,
                 pending: _PendingWrites) -> tuple[str, Callable[[], None]] | None:
        """Worker thread: handle one envelope completely.

        After a crash, returns the reason and the function that tells the caller (the
        mailbox task calls it once the restart policy has been applied)."""
        kind = env.kind
        fn_name, etype = _HANDLERS[kind]
        if kind in (SEND, REQUEST, CH_OPEN):
            params: Any = (env.payload,)
        elif kind == CH_MESSAGE:
            params = (env.channel.id, env.payload)
        else:
            params = (env.channel.id,)
        data: dict[str, Any] = {"peer": env.sender, "size": len(env.payload)}
        peer = self.actors.get(env.sender)
        if peer is not None:
            data["peer_name"] = peer.name
        if env.channel is not None:
            data["channel"] = env.channel.id
        fn = getattr(actor.module, fn_name, None)
        crash: str | None = None
        error: str | None = None
        result_value: Any = None
        new_state = actor.state
        accept: ms.ChannelAccept | None = None
        if fn is None:
            if kind == CH_OPEN:
                accept = ms.ChannelAccept(False, b"actor does not accept channels")
            elif kind in (SEND, REQUEST):
                noun = "messages" if kind == SEND else "requests"
                error = f"actor {actor.name} does not handle {noun}"
            # a missing channel message/close handler: nothing to call; still recorded
        else:
            info = ms.ChannelInfo(env.channel.id, env.sender) if kind == CH_OPEN else None
            actor.current, actor.busy_since = fn_name, time.monotonic()
            try:
                raw = self._invoke(actor, fn, actor.state, params, info, pending)
                new_state, result_value = _unpack(raw, kind, fn_name)
                if kind == CH_OPEN:
                    accept = result_value
            except Busy as exc:
                error = str(exc)
            except (HandlerContractError, SystemExit, KeyboardInterrupt, MemoryError, RecursionError) as exc:
                crash = f"{fn_name} crashed: {_describe(exc, self.settings.debug)}"
                error = f"actor {actor.name} {crash}"
            except BaseException as exc:  # noqa: BLE001 - actor code may raise anything
                error = _describe(exc, self.settings.debug)
                if self.settings.debug:
                    log.warning("actor %s: %s raised:\n%s", actor.name, fn_name, traceback.format_exc())
            finally:
                actor.current = None

        reply = env.reply
        with actor.lock:
            if actor.abandoned:  # stop gave up on this handler: its result is dropped
                if reply is not None:
                    self._call_soon(reply.fail, self._not_handled(actor))
                return None
            if error is None:
                actor.state = new_state
                data["outcome"] = "ok"
            else:
                data["outcome"] = "error"
                data["error"] = error
            if kind == CH_OPEN:
                data["accepted"] = bool(accept and accept.accepted and error is None)
            actor.handled += 1
            h = state_hash(actor.state)
            data["state_hash"] = _hex(h)
            if reply is not None and reply.abandoned:
                data["reply"] = "discarded: the caller timed out"
            ev = self._event(actor, etype, data, env.payload)
            ops: list[Op] = [PutEvent(ev), PutState(actor.id, h, actor.state, actor.handled)]
            if env.mail_id is not None:
                ops.append(MailboxDelete(env.mail_id))
            actor.batch_done += 1

            settle: Callable[[], None]
            if kind == CH_OPEN:
                channel = env.channel
                settle = lambda: self._opened(channel, reply, accept, error)  # noqa: E731
            elif reply is None:
                settle = _nothing
            elif error is not None:
                settle = lambda: reply.fail(ActorFailed(error))  # noqa: E731
            else:
                settle = lambda: reply.set(result_value)  # noqa: E731
            pending.add(ops, None if crash is not None else (reply, settle))
            if crash is not None:
                pending.flush()
                return crash, settle
        return None

    def _opened(self, channel: Any, reply: ReplySlot | None, accept: Any, error: str | None) -> None:
        """Event loop: the target decided on a channel open and its event is stored."""
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

    async def _after_crash(self, actor: Actor, crash: str) -> None:
        """Apply the manifest's restart policy after a crash, and record what happened."""
        ops = self._after_crash_ops(actor, crash)
        if actor.status != FAILED:
            try:
                actor.module = await self.workers.run(_load_module, actor.id, actor.manifest.component)
            except trio.Cancelled:
                self.store.submit(ops)
                raise
            except BaseException as exc:  # noqa: BLE001
                self._fail_actor(actor, f"restart failed: {_describe(exc, self.settings.debug)}", ops)
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
        assert self._nursery is not None
        self._nursery.start_soon(self.channels.close_for_actor, actor, f"actor {actor.name} failed")

    def _after_crash_ops(self, actor: Actor, crash: str) -> list[Op]:
        """Record the crash; count it against the restart policy, failing the actor past it."""
        ops: list[Op] = [PutEvent(self._event(actor, "runtime/crash", {"reason": crash}))]
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
        """Append an event to the actor's chain (any thread; the head is guarded by its lock)."""
        with actor.lock:
            ev = chain.make_event(actor.id, actor.head, type, data, payload)
            actor.head = chain.head_after(ev)
        return ev

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
            raise InternalError(f"cannot write the store: {failure[0]}")

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
        sender_id = sender.id if sender else EXTERNAL
        data: dict[str, Any] = {"peer": ref, "size": len(msg)}
        mail_id: int | None = None
        try:
            target = self.live(ref)
            data["peer"], data["peer_name"] = target.id, target.name
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
            finished(None if w.error is None else InternalError(f"cannot write the store: {w.error}"))

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
                self.store.submit(self.record(sender, "message-server/request", data, msg))
            raise
        if sender is not None:
            data.update(outcome="ok", reply_size=len(reply))
            self.store.submit(self.record(sender, "message-server/request", data, msg))
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
        }
        if actor.current is not None:
            view["busy"] = {"handler": actor.current, "seconds": round(time.monotonic() - actor.busy_since, 3)}
        if actor.reason:
            view["reason"] = actor.reason
        return view

    def list_view(self, include_stopped: bool = False) -> list[dict[str, Any]]:
        return [self.actor_view(a) for a in self.actors.values() if include_stopped or a.status != STOPPED]


class _PendingWrites:
    """A worker batch's store writes: submitted together (one commit, one wake-up),
    before any host call of the next handler and at the end of the batch."""

    __slots__ = ("store", "ops", "settles", "_state_at", "deliveries", "deliver", "call_soon")

    def __init__(self, store: Store, deliver: Callable[[list[tuple[Actor, Envelope]]], None] | None = None,
                 call_soon: Callable[..., None] | None = None) -> None:
        self.store = store
        self.ops: list[Op | None] = []
        self.settles: list[tuple[ReplySlot | None, Callable[[], None]]] = []
        self._state_at = -1
        self.deliveries: list[tuple[Actor, Envelope]] = []  # outbox: sends to hand over once submitted
        self.deliver = deliver  # on the event loop
        self.call_soon = call_soon  # runs a function on the event loop, in order with this thread's others

    def add(self, ops: list[Op], settle: tuple[ReplySlot | None, Callable[[], None]] | None) -> None:
        for op in ops:
            if isinstance(op, PutState):
                # the states in between commit together with the last: only the last is kept
                if self._state_at >= 0:
                    self.ops[self._state_at] = None
                self._state_at = len(self.ops)
            self.ops.append(op)
        if settle is not None and settle[1] is not _nothing:
            self.settles.append(settle)

    def flush(self, inline: bool = True) -> None:
        """Submit what is pending; ``inline`` (worker threads) may commit on this thread."""
        if not self.ops:
            return
        ops: list[Op] = [op for op in self.ops if op is not None]
        settles, deliveries, deliver = self.settles, self.deliveries, self.deliver
        self.ops, self.settles, self._state_at, self.deliveries = [], [], -1, []
        hand_over = _nothing
        if deliveries and deliver is not None and self.call_soon is not None:
            # Outbox sends go to their mailboxes right after the submit (the writer stores
            # their rows before any handling of them), in order with this thread's later
            # calls into the loop (a host call that follows them), and in any case before
            # a reply of this batch goes out (its commit may come first): whoever hears
            # back from the sender may count on the sends being queued.
            handed = False

            def hand_over() -> None:
                nonlocal handed
                if not handed:
                    handed = True
                    deliver(deliveries)

        if not settles and hand_over is _nothing:
            self.store.submit(ops, inline=inline)
            return

        def done(w: Any) -> None:  # on the event loop, once the batch is committed
            hand_over()
            for reply, settle in settles:
                _settle(w, reply, settle)

        self.store.submit(ops, self.store.waiter(done), inline=inline)
        if hand_over is not _nothing:
            assert self.call_soon is not None
            self.call_soon(hand_over)


def _take(rx: Any, backlog: deque[Envelope]) -> Envelope | None:
    """The next envelope without waiting: the backlog first, then the mailbox."""
    if backlog:
        return backlog.popleft()
    try:
        return rx.receive_nowait()
    except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
        return None


_Crash = tuple[int, str, Callable[[], None]]  # (envelopes done, reason, tell the caller)


def _nothing() -> None:
    pass


def _settle(waiter: Any, reply: ReplySlot | None, settle: Callable[[], None]) -> None:
    if waiter.error is not None:
        if reply is not None:
            reply.fail(InternalError(f"cannot write the store: {waiter.error}"))
    else:
        settle()


class ActorHost:
    """The message-server host for one actor's handler, called on its worker thread."""

    __slots__ = ("runtime", "actor", "actor_id", "pending")

    def __init__(self, runtime: Runtime, actor: Actor, pending: _PendingWrites | None = None) -> None:
        self.runtime = runtime
        self.actor = actor
        self.actor_id = actor.id
        self.pending = pending

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self.actor.lock:
            if self.actor.abandoned:
                raise ms.MessageServerError(f"actor {self.actor.name} was stopped")
            if self.pending is not None:
                self.pending.flush()  # earlier events of this batch go to the store first
        try:
            return self.runtime.run_from_thread(fn, *args)
        except TheaterError as exc:
            raise ms.MessageServerError(str(exc)) from None
        except (trio.RunFinishedError, trio.Cancelled):
            raise ms.MessageServerError("the daemon is shutting down") from None

    def send(self, actor_id: str, msg: bytes, timeout: float | None) -> None:
        if self.pending is not None and self.runtime.outbox_send(self.actor, self.pending, actor_id, msg):
            return
        self._call(self.runtime.send, self.actor, actor_id, msg, timeout)

    def request(self, actor_id: str, msg: bytes, timeout: float | None) -> bytes:
        return self._call(self.runtime.request, self.actor, actor_id, msg, timeout)

    def open_channel(self, actor_id: str, initial_msg: bytes, timeout: float | None) -> str:
        return self._call(self.runtime.channels.open_from_actor, self.actor, actor_id, initial_msg, timeout)

    def send_on_channel(self, channel_id: str, msg: bytes) -> None:
        self._call(self.runtime.channels.send, self.actor, channel_id, msg)

    def close_channel(self, channel_id: str) -> None:
        self._call(self.runtime.channels.close, self.actor, channel_id)


# ----------------------------------------------------------------------
# helpers


_CODE_CACHE: dict[tuple[str, int, int], Any] = {}
_CODE_LOCK = threading.Lock()


def _component_code(path: Path) -> Any:
    """The component's compiled code, compiled once per file version (path, mtime, size)."""
    info = path.stat()
    key = (str(path), info.st_mtime_ns, info.st_size)
    with _CODE_LOCK:
        code = _CODE_CACHE.get(key)
    if code is None:
        code = compile(read_regular_file(path, LIMITS.component, "component"), str(path), "exec")
        with _CODE_LOCK:
            _CODE_CACHE[key] = code
    return code


def _load_module(actor_id: str, path: Path) -> ModuleType:
    """A fresh module instance for one actor (runs on a worker thread).

    Each actor gets its own module namespace (its globals are its own), but actors of
    the same component share the compiled code.
    """
    mod_name = f"theater_actor_{actor_id.replace('-', '')}"
    module = ModuleType(mod_name)
    module.__file__ = str(path)
    sys.modules[mod_name] = module
    try:
        exec(_component_code(path), module.__dict__)  # noqa: S102 - running actor code is the job
    finally:
        sys.modules.pop(mod_name, None)
    return module


def _describe(exc: BaseException, debug: bool = False) -> str:
    text = str(exc).strip()
    if isinstance(exc, ms.MessageServerError) and text:
        return text.splitlines()[0] if not debug else text
    if not isinstance(exc, Exception):
        return f"{type(exc).__name__}({text})" if text else type(exc).__name__
    if not text:
        text = type(exc).__name__
    elif not isinstance(exc, (ActorFailed,)):
        text = text.splitlines()[0] if not debug else text
    if debug:
        return f"{type(exc).__name__}: {text}"
    return text


def _hex(h: bytes | None) -> str | None:
    return None if h is None else h.hex()


class HandlerContractError(Exception):
    """A handler returned something that does not fit the spec's signature: a crash."""


def _as_state(value: Any, fn_name: str) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise HandlerContractError(f"{fn_name} returned a state of type {type(value).__name__}; expected bytes or None")


def _unpack_state(result: Any, fn_name: str) -> bytes | None:
    if not isinstance(result, tuple) or len(result) != 1:
        raise HandlerContractError(f"{fn_name} must return a 1-tuple (new_state,), got {_short(result)}")
    return _as_state(result[0], fn_name)


def _unpack(result: Any, kind: str, fn_name: str) -> tuple[bytes | None, Any]:
    """Check a handler's return value against the spec's signature."""
    if kind in (SEND, CH_MESSAGE, CH_CLOSE):
        return _unpack_state(result, fn_name), None
    if not isinstance(result, tuple) or len(result) != 2 or not isinstance(result[1], tuple) or len(result[1]) != 1:
        shape = "(new_state, (reply,))" if kind == REQUEST else "(new_state, (ChannelAccept,))"
        raise HandlerContractError(f"{fn_name} must return {shape}, got {_short(result)}")
    state = _as_state(result[0], fn_name)
    value = result[1][0]
    if kind == REQUEST:
        if isinstance(value, str):
            value = value.encode()
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise HandlerContractError(f"{fn_name} returned a reply of type {type(value).__name__}; expected bytes")
        return state, bytes(value)
    if not isinstance(value, ms.ChannelAccept):
        raise HandlerContractError(f"{fn_name} must return a ChannelAccept, got {type(value).__name__}")
    return state, value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
