"""Where actors run, what happens when they crash, and the dead letters.

Theory of operation
-------------------
Placement: an actor's module is loaded into one worker process
(:meth:`Supervisor._host_actor`, shared workers or a dedicated one, by its
manifest) before it handles anything, and again on another worker after its
worker died; :meth:`Supervisor._unplace` takes it off (a dedicated worker ends
with its actor).

Crashes: a handler that crashes, runs past its ``handler_timeout`` or takes its
worker down is blamed by :meth:`Supervisor._worker_gone` (the actor the daemon
killed the worker for; else those whose handlers were running, not waiting in
a host call).  Invariants:

* What an unfinished handler did is forgotten (:meth:`Supervisor._discard`):
  its events and sends never happened, the chain head goes back.
* Every crash is a ``runtime/crash`` event; a stored send that crashed its
  actor ``max_deliveries`` times becomes a dead letter (``runtime/dead-letter``)
  instead of being delivered again.
* The manifest's restart policy is applied before the crashed message's
  caller hears of the crash; past ``max_restarts`` within ``restart_window``
  (or with ``restart = "never"``) the actor is ``failed``: its mailbox closes
  and its channels are closed.  Actors that only shared the worker move to a
  new one without a crash.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio

from . import chain
from .actor import CH_OPEN, FAILED, HANDLERS, SEND, Actor, Envelope
from .channels import ChannelRegistry
from .errors import ActorFailed, BadInput, NotFound, TheaterError
from .files import LIMITS, read_regular_file
from .jobs import Job
from .manifest import DEFAULT_MEMORY_LIMIT, Manifest
from .outbox import Outbox
from .storeops import DeadLetter, DeadLetterDrop, DeadLetterRetry, MailboxAttempt, Op, PutEvent, SetStatus
from .workerlink import Profile, Worker, WorkerDied
from .workerpool import WorkerPool

log = logging.getLogger("theaterd.runtime")

#: a component stops itself at its handler_timeout (a trap); its worker is killed only this much later
WASM_GRACE = 5.0
#: how long a worker may take to drop an actor's code (stop, rm) before it is thought stuck
UNLOAD_TIMEOUT = 30.0


class Supervisor(Outbox):
    """Placing actors on workers; crashes, restart policy and dead letters."""

    pool: WorkerPool
    channels: ChannelRegistry

    # ------------------------------------------------------------------
    # placing the actor on a worker and loading its module

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
            self._nursery.start_soon(_unload, self.pool, worker, actor.id)

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

    # ------------------------------------------------------------------
    # a handler crashed or its worker died

    def _discard(self, job: Job) -> None:
        """Forget what an unfinished handler did: its events and sends never happened."""
        if job.base_head is not None:
            job.actor.head = job.base_head
        job.ops, job.deliveries, job.pending_bytes = [], [], 0

    def _worker_died(self, job: Job, reason: str) -> Outcome:
        """The actor's worker died during ``job``: blame the actor whose handler was running."""
        actor, batch = job.actor, job.batch
        actor.worker = None
        if job.crash is not None:  # it had crashed already; the worker died after
            return job.requeue + batch[job.done:], job.crash, job.settle or nothing
        self._discard(job)
        rest = batch[job.done:]
        if not rest:
            return [], None, nothing
        if not job.blamed:  # another actor took the worker down: this one just moves
            return rest, None, nothing
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
            return retry, functools.partial(self.channels.decided, channel, reply, None, error)
        if reply is None:
            return retry, nothing
        return retry, functools.partial(reply.fail, ActorFailed(f"actor {actor.name} {crash}"))

    def _fail_all(self, actor: Actor, batch: list[Envelope], reason: str) -> None:
        for env in batch:
            if env.reply is not None:
                env.reply.fail(ActorFailed(f"actor {actor.name} {reason}"))

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
        # an event of the target's chain: never beside a running handler's events (which a
        # crash would take back), so between two of its jobs
        with trio.fail_after(self.settings.default_timeout):
            while target.job is not None:
                await trio.sleep(0.01)
        ev = self._event(target, "runtime/dead-letter-retry", {"mail": letter_id, "new_mail": mail_id,
                                                              "peer": row.sender})
        await self._commit([DeadLetterRetry(letter_id, mail_id), PutEvent(ev)])
        self._deliver([(target, Envelope(SEND, row.sender, row.payload, mail_id=mail_id, sent=row.sent))])
        return {"id": letter_id, "actor": target.id, "name": target.name, "mail": mail_id}

    async def drop_dead_letter(self, letter_id: int) -> dict[str, Any]:
        row = await self._dead_letter(letter_id)
        await self._commit([DeadLetterDrop(letter_id)])
        return {"id": letter_id, "actor": row.actor, "dropped": True}


async def _unload(pool: WorkerPool, worker: Worker, actor_id: str) -> None:
    """Have the worker drop an actor's code; a worker that does not answer in time is stuck
    (its main thread starved) and goes, so that nothing of the actor stays in it."""
    with trio.move_on_after(UNLOAD_TIMEOUT):
        try:
            await worker.call("unload", {"actor": actor_id})
        except (WorkerDied, TheaterError):
            pass
        return
    pool.kill(worker, f"it did not unload actor {actor_id} within {UNLOAD_TIMEOUT:g} s", culprit=actor_id)


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


Outcome = tuple[list[Envelope], str | None, Callable[[], None]]  # (handle again, crash, tell the caller)


def nothing() -> None:
    pass
