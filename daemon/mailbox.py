"""One task per actor: take a message, hand it to the actor's worker, settle the result.

Theory of operation
-------------------
Each running actor has a bounded mailbox (a trio memory channel) and one
*mailbox task* (``actor:<name>``) in the runtime's nursery.  The task takes
envelopes in arrival order, hands queued sends/requests to the actor's worker
in one ``run`` call (at most :data:`BATCH`), and settles each result as it
comes back, on the event loop, in order (:meth:`Mailboxes._result`).
Invariants:

* One batch per actor at a time, handled in mailbox order; the actor's
  ``state``, ``head`` and counters change only here, on the event loop.
* A handled message's event, the actor's new state and the removal of its
  durable mailbox row go in one store group with the events of what its handler
  did (:meth:`daemon.outbox.Outbox._flush`): they commit together or not at all.
  A ``request`` or channel call stores what the handler did so far ahead of it
  (:meth:`daemon.outbox.Outbox._checkpoint`), and so may many sends; a stored
  message then remembers how many of its handling's sends are stored, and a
  retry of the handling skips that many, so none is sent twice.
* What stays inside the daemon (a reply to an actor, outbox sends, channel
  messages) goes on as soon as the group is in the store's queue; a reply to a
  client waits for the commit, and fails if the store refuses the group.
* A handler error is the caller's error and an ``outcome: error`` event; the
  actor keeps serving.  A crash goes to the restart policy
  (:mod:`daemon.supervisor`) before its caller is told.
* While a handler waits in a host call (request, channel open), the time does
  not count against its ``handler_timeout``, and other actors in its worker run.
* Mail stored before a restart, or reloaded once a full disk has room again,
  is put back first (:meth:`Mailboxes._start_replay`); senders wait until it
  is in.  A newer replay takes over what an older one had not fed in yet.
* While the disk is full the task handles nothing.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from actors import message_server as ms

from .actor import CH_OPEN, FAILED, HANDLERS, REQUEST, SEND, STOPPED, Actor, Envelope
from .chain import EXTERNAL
from .errors import ActorFailed, BadInput, DiskFull, NotFound, TheaterError, Timeout
from .jobs import BadResult, HandlerResult, Job, check_result
from .jobs import item as _item
from .messaging import hex_hash
from .outbox import feed, wake_senders
from .storeops import MailboxDelete, Op, PutState, state_hash
from .supervisor import WASM_GRACE, Outcome, Supervisor, nothing
from .workerlink import Worker, WorkerDied

log = logging.getLogger("theaterd.runtime")

BATCH = 64  # sends/requests handed to one worker hop at most


@dataclass(eq=False, slots=True)
class Replay:
    """Mail being fed into an actor's mailbox ahead of new mail (after a restart or a resync)."""

    pending: deque[Envelope]


class Mailboxes(Supervisor):
    """The mailbox tasks, and running their messages in the actors' workers."""


    def _start_mailbox(self, actor: Actor) -> None:
        actor.mailbox_size = size = actor.manifest.mailbox_size or self.settings.mailbox_size
        actor.mailbox_tx, actor.mailbox_rx = trio.open_memory_channel[Envelope](size)
        actor.done = trio.Event()
        assert self._nursery is not None
        self._nursery.start_soon(self._mailbox_loop, actor, name=f"actor:{actor.name}")

    def _start_replay(self, actor: Actor, mail: list[Any]) -> None:
        """Feed ``mail`` (stored rows or envelopes) into the actor's mailbox ahead of new mail."""
        envs = [m if isinstance(m, Envelope) else
                Envelope(SEND, m.sender, m.payload, mail_id=m.id, attempts=m.attempts, sent=m.sent)
                for m in mail]
        run = Replay(deque(envs))
        actor.replay = run
        if actor.replaying is None:
            actor.replaying = trio.Event()
        assert self._nursery is not None
        self._nursery.start_soon(self._replay, actor, run)

    async def _replay(self, actor: Actor, run: Replay) -> None:
        try:
            await feed(actor, run.pending)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        finally:
            if actor.replay is run:  # (a newer replay, if any, ends the replaying)
                actor.replay = None
                if actor.replaying is not None:
                    actor.replaying.set()
                    actor.replaying = None
                wake_senders(actor)

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
                    env = take(rx, backlog)
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
                        while len(batch) < BATCH and (nxt := take(rx, backlog)) is not None:
                            if nxt.kind not in (SEND, REQUEST):
                                backlog.appendleft(nxt)
                                break
                            batch.append(nxt)
                    wake_senders(actor)
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
            # whatever is still queued will not be handled now
            while (env := take(rx, backlog)) is not None:
                if env.reply is not None:
                    env.reply.fail(self._not_handled(actor))
            wake_senders(actor)
            actor.done.set()

    def _not_handled(self, actor: Actor) -> TheaterError:
        if actor.status == FAILED:
            return ActorFailed(f"actor {actor.name} has failed: {actor.reason}")
        return NotFound(f"actor {actor.name} stopped before handling the message")

    # ------------------------------------------------------------------
    # running handlers in the actor's worker

    async def _handle_batch(self, actor: Actor, batch: list[Envelope]) -> Outcome:
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
        timeout = float(actor.manifest.handler_timeout) + (WASM_GRACE if actor.manifest.kind == "wasm" else 0)
        items = [_item(env) for env in batch]
        try:
            job.limit = timeout
            job.deadline = trio.current_time() + timeout
            self._busy(job)
            try:  # a worker that stops reading its link is stuck too
                pending = await worker.start_call("run", {"actor": actor.id, "state": actor.state, "items": items},
                                                  pushes=functools.partial(self._result, job), deadline=job.deadline)
            except trio.TooSlowError:
                # Its handlers did not run: on a worker of its own, its code (a thread it left
                # behind) is what stalls the link; on a shared one, whoever is running there.
                self.pool.kill(worker, f"it took no run call for {timeout:g} s (actor {actor.name}'s handler_timeout)",
                               culprit=actor.id if worker.dedicated else None)
                await worker.died.wait()
                job.blamed = worker.dedicated
                raise WorkerDied(worker.kill_reason or worker.dead or "killed")
            try:
                in_time = await _wait_for_run(job, pending.done)
            finally:
                worker.forget(pending)
            if not in_time:
                fn = HANDLERS[batch[job.done].kind][0] if job.done < len(batch) else "a handler"
                self.pool.kill(worker, f"{fn} ran longer than its handler_timeout of {timeout:g} s",
                               culprit=actor.id)
                await worker.died.wait()
                raise WorkerDied(worker.kill_reason or worker.dead or "killed")
            worker.answer(pending)
            if job.crash is None and job.done < len(batch):
                # a worker answers a run after a result for each message (or a crash): one
                # that does not would have the batch run again and again
                raise TheaterError(f"it answered a run with {job.done} results for {len(batch)} messages")
        except WorkerDied as exc:
            return self._worker_died(job, str(exc))
        except NotFound as exc:  # the worker no longer has the module: load it again, run the rest
            log.warning("actor %s: %s", actor.name, exc)
            self._unplace(actor, worker)
            return batch[job.done:], None, nothing
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
            return job.requeue + batch[job.done:], job.crash, job.settle or nothing
        self._flush(job)
        return batch[job.done:], None, nothing

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
        job.sends = 0
        if result.outcome == "crash":
            job.crash = result.error
            retry, job.settle = self._crashed(job, env, result.error)
            job.requeue = [env] if retry else []
        else:
            self._settle(job, env, result)
        job.deadline = trio.current_time() + job.limit  # (the wait re-arms when its old deadline comes)
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
        data["state_hash"] = hex_hash(h)
        reply = env.reply
        if reply is not None and reply.abandoned:
            data["reply"] = "discarded: the caller timed out"
        if env.sent:
            data["sends_stored_before"] = env.sent  # stored ahead of this event (at a request)
        self.emit(actor, etype, data, env.payload)
        ops = job.ops
        ops.append(PutState(actor.id, h, actor.state, actor.handled))
        if env.mail_id is not None:
            ops.append(MailboxDelete(env.mail_id))
        settle: Callable[[], None] | None
        if kind == CH_OPEN:
            channel = env.channel
            settle = functools.partial(self.channels.decided, channel, reply, accept, error)
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

    # ------------------------------------------------------------------
    # host calls: a handler waiting on the daemon

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
        if len(msg) > self.settings.max_message:
            raise BadInput(f"message too large: {len(msg)} bytes (at most {self.settings.max_message})")
        if job.in_host:
            # (from another thread of the handler: one call at a time keeps the handler's time
            # limit and the cycle check true)
            raise BadInput("one message-server call at a time: this handler is already waiting on one")
        timeout = args.get("timeout")
        left = job.deadline - trio.current_time()
        if left <= 0:  # (the mailbox task is about to stop it: no time to wait on the daemon)
            raise Timeout(f"the handler ran past its handler_timeout of {job.limit:g} s")
        job.in_host += 1
        job.deadline = math.inf  # waiting on the daemon is not the handler's time
        try:
            if op == "send":
                await self._outbox_send(job, _text(args, "target"), msg, timeout)
                return None
            self._checkpoint(job)  # what the handler did so far goes first (sends keep their order)
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
            if actor.job is job:
                job.deadline = trio.current_time() + left
                wait = job.wait
                if wait is not None and wait.deadline > job.deadline:  # (re-armed while this call waited)
                    wait.deadline = job.deadline


async def _wait_for_run(job: Job, done: trio.Event) -> bool:
    """Wait for a run's answer while the handler is within its time; False when it is not.

    ``job.deadline`` moves on with every result and is infinite while the handler waits
    in a host call; rather than moving a cancel scope's deadline each time (trio keeps
    deadlines in a heap), the wait is armed at the deadline it had and, when that comes,
    armed again at the current one if it is later."""
    while not done.is_set():
        with trio.CancelScope(deadline=job.deadline) as wait:
            job.wait = wait
            await done.wait()
        job.wait = None
        if not done.is_set() and trio.current_time() >= job.deadline:
            return False
    return True


def take(rx: Any, backlog: deque[Envelope]) -> Envelope | None:
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


def _text(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str):
        raise BadInput(f"{key} must be text")
    return value
