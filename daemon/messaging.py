"""Sending and requesting: the base every other part of the runtime builds on.

Theory of operation
-------------------
:class:`Messaging` holds the daemon's actor table (``actors`` by id, ``names``
for the live ones), the store and the settings, and implements what the host
API and the protocol's ``send``/``request`` do: find the target, check for a
request cycle, bound the wait, put an envelope in the target's mailbox.
Invariants:

* Everything here runs on the trio event loop (the daemon's one thread that
  touches actor records); actor code runs in worker processes and only reaches
  this through host calls.
* Chain events are built here (:meth:`Messaging._event`) in the actor's order
  and handed to the store's single writer, which commits them in submission
  order.  :meth:`Messaging.emit` puts an event in the store group of the
  handler that is running now, if any, so that it commits with its handling.
* A ``send`` is acknowledged once the message is in the target's durable
  mailbox (its row committed); the envelope goes into the in-memory mailbox in
  the same step on the loop as the row's submission, so no handler can remove
  the row before it is written.
* A full mailbox makes the sender wait (backpressure) up to its timeout, then
  fails with ``Busy``; mail being replayed after a restart and outbox sends
  still waiting for room go first, keeping the arrival order.
* ``waiting_on`` records which actor each blocked handler waits for; a request
  or channel open that would close a cycle fails at once (:meth:`check_cycle`).
* While the store's disk is full (``suspended``), every write is refused
  (:meth:`writable`).

:mod:`daemon.channels` builds on this class's public methods (``live``,
``check_cycle``, ``timeout``, ``enqueue``, ``emit``, ``start_soon``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from . import chain
from .actor import FAILED, REMOVED, REQUEST, RUNNING, SEND, Actor, Envelope, PendingRequest, ReplySlot
from .chain import EXTERNAL, StoredEvent
from .errors import ActorFailed, BadInput, Busy, DiskFull, InternalError, NotFound, TheaterError, Timeout
from .store import Store
from .storeops import MailboxPut, Op, PutEvent


@dataclass(slots=True)
class Settings:
    default_timeout: float = 30.0
    mailbox_size: int = 1024
    stop_grace: float = 5.0
    debug: bool = False
    workers: int = 0  # shared worker processes; 0: one per usable CPU
    memory_limit: int | None = 1 << 30  # per worker (RLIMIT_AS); a manifest's memory_limit overrides it
    max_message: int = 1 << 20  # the largest message a handler may send or request (theaterd --max-frame)


def hex_hash(h: bytes | None) -> str | None:
    return None if h is None else h.hex()


def store_error(error: BaseException) -> TheaterError:
    """What a caller is told when its write did not reach the store."""
    if isinstance(error, TheaterError):  # DiskFull: exit 75, says how much is free
        return error
    return InternalError(f"cannot write the store: {error}")


def check_handles_sends(target: Actor) -> None:
    """A send to an actor whose module (once loaded) has no ``handle_send`` fails at once."""
    if target.handlers and "handle_send" not in target.handlers:
        raise ActorFailed(f"actor {target.name} has no handle_send")


def _put(target: Actor, env: Envelope) -> bool:
    """Put ``env`` in the target's mailbox if it has room and no earlier mail waits (replayed or
    late); False if not.  Raises :class:`NotFound` if the target is not running."""
    if target.status != RUNNING or target.mailbox_tx is None:
        raise NotFound(f"actor {target.name} is {target.status}")
    if target.replaying is None and not target.late:
        try:
            target.mailbox_tx.send_nowait(env)
            return True
        except trio.WouldBlock:
            pass
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise NotFound(f"actor {target.name} is stopping") from None
    return False


class Messaging:
    """The actor table, the chain helpers, and send/request between actors and clients.

    The attributes are set by :class:`daemon.runtime.Runtime`."""

    store: Store
    settings: Settings
    actors: dict[str, Actor]  # by id: every actor known (running, stopped, failed)
    names: dict[str, Actor]  # by name: the live (running or failed) one
    waiting_on: dict[Actor, Actor]
    _nursery: trio.Nursery | None
    _mail_ids: itertools.count[int]
    #: while the store's disk is full: why (every write is refused, no message is handled)
    suspended: DiskFull | None
    _resumed: trio.Event

    def start_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` as a task in the runtime's nursery (it outlives the caller)."""
        assert self._nursery is not None
        self._nursery.start_soon(fn, *args)

    def writable(self) -> None:
        """Raise :class:`DiskFull` while the store refuses writes."""
        if self.suspended is not None:
            raise self.store._full_error() if self.store.full is not None else self.suspended

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

    def timeout(self, timeout: float | None) -> float:
        if timeout is None:
            return self.settings.default_timeout
        if not (isinstance(timeout, (int, float)) and timeout > 0 and math.isfinite(timeout)):
            raise BadInput("timeout must be a positive number of seconds")
        return float(timeout)

    async def enqueue(self, target: Actor, env: Envelope, timeout: float) -> None:
        """Put ``env`` in the mailbox, after any replayed or late mail; when there is no room,
        wait for it (backpressure) up to ``timeout``.  With room, it goes in at once, without
        yielding to any other task (and without a cancel scope: most sends find room)."""
        self.writable()
        if _put(target, env):
            return
        with trio.move_on_after(timeout):
            while True:
                if target.room is None:
                    target.room = trio.Event()
                await target.room.wait()
                if _put(target, env):
                    return
        if target.replaying is not None:
            raise Busy(f"mailbox full: actor {target.name} is still replaying messages from before the restart")
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
        try:
            target = self.live(ref)
            data["peer"], data["peer_name"] = target.id, target.name
            check_handles_sends(target)
            limit = self.timeout(timeout)
            mail_id = next(self._mail_ids)
            env = Envelope(SEND, sender_id, msg, mail_id=mail_id)
            # The stored row must go to the writer before a handler can remove it: with room
            # the envelope goes in now and the row is submitted below, in this same step on the
            # loop (no handler can run before that); without room nothing is stored while the
            # send waits, so a send refused (or given up by its caller) leaves no row behind.
            await self.enqueue(target, env, limit)
        except TheaterError as exc:
            if sender is not None:
                data.update(outcome="error", error=str(exc))
                self.store.submit(self.record(sender, "message-server/send", data, msg))
            raise
        data["outcome"] = "ok"

        def stored(w: Any) -> None:
            finished(None if w.error is None else store_error(w.error))

        # acknowledged once the row (and the sender's event) are committed
        ops: list[Op] = [MailboxPut(mail_id, target.id, sender_id, msg)]
        ops += self.record(sender, "message-server/send", data, msg)
        self.store.submit(ops, self.store.waiter(stored))

    def check_cycle(self, sender: Actor | None, target: Actor) -> None:
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
        self.check_cycle(sender, target)
        limit = self.timeout(timeout)
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
