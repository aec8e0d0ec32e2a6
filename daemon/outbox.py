"""Where a handler's sends go, and what it prints.

Theory of operation
-------------------
A handler's ``send`` is part of its handling's transaction (a transactional
outbox): the mailbox row and the sender's event join the running job's store
group (:class:`daemon.jobs.Job`), and the envelope goes to the target's mailbox
(:meth:`Outbox._deliver`) once that group is in the store's queue, never before.
Invariants:

* A nearly full target makes the sending handler wait for room *before*
  anything is recorded, so a crash meanwhile cannot double the message.
* Sends can be stored before the handling's own event: at a ``request`` or
  channel call (so they reach their targets first) and every
  :data:`CHECKPOINT_SENDS` sends or :data:`CHECKPOINT_BYTES` bytes (so a handler's
  pending sends stay bounded): :meth:`Outbox._checkpoint`.  The stored message
  being handled then records how many of its handling's sends are stored
  (``Envelope.sent``, ``MailboxSent``), in the same group; a retry of the
  handling (after a crash, or a restart of the daemon) skips that many sends,
  so none is sent twice.  This assumes the handler sends the same messages in
  the same order when retried; a handler that does not gets its first sends
  skipped anyway.  This covers ``send`` only: a retried handling makes its
  requests and channel calls again.
* Deliveries keep their order per target: when the mailbox is full (or mail
  from before a restart is still being replayed) they wait in ``actor.late``
  and one task per target (:meth:`Outbox._deliver_late`) feeds them in.
* A delivery that finds the mailbox closed because the target was stopped for
  good removes its own stored row; on daemon shutdown the rows stay for the
  next start.
* What actor code prints, and its handler errors, is kept per actor (bounded)
  for ``logs`` and ``inspect``, never written to the daemon's own log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from . import chain
from .actor import RUNNING, SEND, Actor, Envelope
from .errors import Busy, NotFound, TheaterError
from .jobs import Job
from .messaging import Messaging, check_handles_sends, store_error
from .storeops import MailboxDelete, MailboxPut, MailboxSent, Op
from .workerlink import Worker

if TYPE_CHECKING:
    from collections import deque
    from collections.abc import Callable

    from .actor import ReplySlot

#: the longest line of an actor's log kept
MAX_LOG_LINE = 2000
#: a handler's sends are stored ahead of its handling once this many are pending ...
CHECKPOINT_SENDS = 256
#: ... or this many bytes
CHECKPOINT_BYTES = 8 << 20


class Outbox(Messaging):
    """Delivering outbox sends to mailboxes; actor logs."""

    async def _outbox_send(self, job: Job, ref: str, msg: bytes, timeout: float | None) -> None:
        """A handler's send: part of its handling's transaction (a transactional outbox).

        The mailbox row and the sender's event are stored in the same group as the
        handler's own event; the message reaches the target's mailbox once that group is
        in the store's queue.  A nearly full target makes the sender wait for room first
        (backpressure) without storing anything yet, so a crash cannot double it.

        Sends are counted by position in the handling, failed ones too, so that a retry
        lines up with the attempt before it: the first ``env.sent`` calls of a retry are
        skipped and answered as done (one that failed the first time included)."""
        sender = job.actor
        env = job.batch[job.done] if job.done < len(job.batch) else None
        if env is not None and job.sends < env.sent:
            job.sends += 1
            return
        data: dict[str, Any] = {"peer": ref, "size": len(msg)}
        try:
            target = self.live(ref)
            data["peer"], data["peer_name"] = target.id, target.name
            check_handles_sends(target)
            limit = self.timeout(timeout)
            if target is not sender:
                await self._wait_for_room(target, limit)
        except TheaterError as exc:
            job.sends += 1
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
        job.sends += 1
        job.pending_bytes += len(msg)
        if len(job.deliveries) >= CHECKPOINT_SENDS or job.pending_bytes >= CHECKPOINT_BYTES:
            self._checkpoint(job)

    def _checkpoint(self, job: Job) -> None:
        """Store what the running handler did so far, ahead of its handling, with the count of
        its sends: so that a retry does not send them again.  The count is kept on the
        envelope (a request or channel message is run again when a neighbour's crash took
        the worker) and, for a stored message, in the same store group (a retry after a
        restart of the daemon)."""
        env = job.batch[job.done] if job.done < len(job.batch) else None
        if env is not None and job.sends > env.sent:
            env.sent = job.sends
            if env.mail_id is not None:
                job.ops.append(MailboxSent(env.mail_id, job.sends))
        self._flush(job)

    def _flush(self, job: Job, reply: ReplySlot | None = None,
               after_commit: Callable[[], None] | None = None) -> None:
        """Hand the job's events to the store (one group), then its sends to their mailboxes.

        ``after_commit`` (answering a client) runs once the group is stored; if the store
        fails instead, ``reply`` fails with that error."""
        ops, deliveries = job.ops, job.deliveries
        job.ops, job.deliveries, job.pending_bytes = [], [], 0
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

    async def _wait_for_room(self, target: Actor, limit: float) -> None:
        if target.status == RUNNING and not _crowded(target):
            return  # (most sends: no cancel scope)
        with trio.move_on_after(limit):
            while target.status == RUNNING and _crowded(target):
                if target.room is None:
                    target.room = trio.Event()
                await target.room.wait()
            if target.status != RUNNING:
                raise NotFound(f"actor {target.name} is {target.status}")
            return
        raise Busy(f"mailbox full: actor {target.name} has {target.mailbox_depth} messages waiting")

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
            await feed(target, target.late)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self._undeliverable(target, list(target.late))
            target.late.clear()
        finally:
            target.late_drained.set()
            wake_senders(target)

    def _undeliverable(self, target: Actor, envs: list[Envelope]) -> None:
        """Outbox sends that found the target's mailbox closed.  A stop that cleared the
        stored mailbox may have come before their rows were stored: remove them (after
        them, in the store's order).  Otherwise the target is shutting down with the
        daemon, and the rows stay for the next start."""
        if target.cleared:
            ops: list[Op] = [MailboxDelete(env.mail_id) for env in envs if env.mail_id is not None]
            if ops:
                self.store.submit(ops)

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


async def feed(actor: Actor, queue: deque[Envelope]) -> None:
    """Put ``queue``'s envelopes into ``actor``'s mailbox in order, waiting for room.  An
    envelope leaves the queue once it is in the mailbox (so that whoever clears the queue
    meanwhile, a stop, never drops one twice or loses one)."""
    while queue:
        env = queue[0]
        await actor.mailbox_tx.send(env)
        if queue and queue[0] is env:
            queue.popleft()


def wake_senders(actor: Actor) -> None:
    """Wake the senders waiting for room in ``actor``'s mailbox."""
    room, actor.room = actor.room, None
    if room is not None:
        room.set()


def _crowded(actor: Actor) -> bool:
    """A handler's send to ``actor`` waits: it has no mailbox yet, mail goes in ahead of it
    (replayed or late), or its mailbox is half full (leaving room for clients; a mailbox of
    one message is full with one)."""
    if actor.mailbox_tx is None:
        return True
    return (actor.replaying is not None or bool(actor.late)
            or actor.mailbox_depth >= max(1, actor.mailbox_size // 2))


def _settle_after(waiter: Any, reply: ReplySlot | None, settle: Callable[[], None]) -> None:
    if waiter.error is None:
        settle()
    elif reply is not None:  # the caller must not believe what was not stored
        reply.fail(store_error(waiter.error))
