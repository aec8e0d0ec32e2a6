"""An actor's life: spawn, stop, restart, rm and prune; restore at start-up, shutdown.

Theory of operation
-------------------
An actor is ``starting`` while its module loads in a worker and its ``init``
runs (a stop cancels that), ``running`` once its spawn event is stored and its
mailbox task exists, ``stopping`` while its mailbox drains, then ``stopped``
(or ``failed`` by the restart policy, see :mod:`daemon.supervisor`), and
``removed`` after ``rm``.  Invariants:

* A start, a stop or a restart that has begun always finishes, even if its
  caller goes away (bounded by ``handler_timeout`` and the stop grace period; a
  handler still running then takes its worker with it).  Only a stop of a
  starting actor cancels its start.
* A stop drops the messages accepted and not handled (and says how many); a
  daemon shutdown keeps them, and the stored status ``running``, so that they
  are handled exactly once after the next start.  ``restart`` keeps them too.
* At start-up every manifest is loaded before any actor handles anything, and
  mail stored before the restart is handled first, in order.
* ``rm`` forgets an actor (its name is free) but keeps its chain unless
  ``purge``.
"""

from __future__ import annotations

import gc
import itertools
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import trio

from . import chain
from .actor import FAILED, REMOVED, RUNNING, STARTING, STOPPED, STOPPING, Actor
from .errors import ActorFailed, BadInput, Busy, NotFound, TheaterError
from .jobs import BadResult, check_result
from .jsontext import check_json
from .mailbox import Mailboxes
from .manifest import Manifest, check_name, load_manifest
from .messaging import hex_hash
from .storeops import MailboxClear, Op, PutActor, PutEvent, PutState, RemoveActor, SetStatus, state_hash
from .supervisor import WASM_GRACE
from .workerlink import WorkerDied

log = logging.getLogger("theaterd.runtime")


class Lifecycle(Mailboxes):
    """Spawning, stopping, restarting and forgetting actors."""

    _spawned: int  # actors spawned since the daemon started

    # ------------------------------------------------------------------
    # restore and shutdown

    async def _restore(self) -> None:
        rows = await trio.to_thread.run_sync(self.store.load_actors)
        mail = await trio.to_thread.run_sync(self.store.load_mailbox)
        top = await trio.to_thread.run_sync(self.store.max_mail_id)
        self._mail_ids = itertools.count(max(top, max((m.id for m in mail), default=0)) + 1)
        pending: dict[str, list[Any]] = {}
        for m in mail:
            pending.setdefault(m.actor, []).append(m)
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
                self._start_replay(actor, queued)
        log.info("restored %d actors", sum(a.status == RUNNING for a in self.actors.values()))
        gc.freeze()  # long-lived actor objects: keep them out of every full collection

    async def shutdown(self) -> None:
        """Close every channel and stop every actor gracefully."""
        await self.channels.close_everything("the daemon is shutting down")
        actors = [a for a in self.actors.values() if a.status == RUNNING]
        async with trio.open_nursery() as nursery:
            for actor in actors:
                nursery.start_soon(self._stop_actor, actor, STOPPED, None, False, False)
        await self.pool.close()

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
            # Once begun, a start finishes even if its caller goes away (it is bounded by
            # handler_timeout): cancelling it would take a shared worker down with init.
            # Only a stop of the starting actor cancels it.
            with trio.CancelScope(shield=True) as scope:
                actor.cancel_scope = scope
                await self._host_actor(actor)
                if "init" in actor.handlers:
                    actor.state = await self._run_init(actor)
            if scope.cancelled_caught:
                failure = "stopped while starting"
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
        data: dict[str, Any] = {"name": name, "manifest": str(manifest.path), "state_hash": hex_hash(h)}
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
            try:
                await self._commit([
                    PutActor(actor.id, name, str(manifest.path), actor.status if failure else RUNNING,
                             actor.created_us, actor.reason),
                    PutEvent(ev),
                    PutState(actor.id, h, actor.state, 0),
                ])
            except TheaterError:  # (the disk is full): nothing of it was stored
                self._forget_start(actor)
                raise
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
        """A spawn that stored nothing (not a usable component, or the store refused it)."""
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
        limit = float(actor.manifest.handler_timeout) + (WASM_GRACE if actor.manifest.kind == "wasm" else 0)
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
        except trio.Cancelled:  # stopped while starting: init may never return
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
        # once begun, a restart finishes (bounded by the stop grace and handler_timeout), even
        # if its caller goes away: a half-restarted actor would hold its name forever
        with trio.CancelScope(shield=True):
            restarted = await self._restart(actor)
        return restarted

    async def _restart(self, actor: Actor) -> Actor:
        was = actor.status
        if was == RUNNING:
            await self._stop_actor(actor, STOPPED, None, record=False, persist=False)
        self._unplace(actor)
        self.names[actor.name] = actor
        actor.status, actor.reason, actor.cleared = STARTING, None, False
        actor.restarts.clear()
        try:
            actor.manifest = await trio.to_thread.run_sync(load_manifest, str(actor.manifest.path))
            await self._host_actor(actor)
        except TheaterError as exc:
            actor.status, actor.reason = FAILED, f"restart failed: {exc}"
            self.store.submit([SetStatus(actor.id, FAILED, actor.reason)])
            raise ActorFailed(f"actor {actor.name} {actor.reason}") from None
        actor.restart_count += 1
        ev = self._event(actor, "runtime/restart", {"attempt": actor.restart_count, "reason": "restarted by request"})
        try:
            await self._commit([PutEvent(ev), SetStatus(actor.id, RUNNING, None)])
        except TheaterError:
            actor.status = was if was != RUNNING else STOPPED
            self._unplace(actor)
            raise
        mail = [m for m in await trio.to_thread.run_sync(self.store.load_mailbox) if m.actor == actor.id]
        actor.status = RUNNING
        self._start_mailbox(actor)
        if mail:
            self._start_replay(actor, mail)
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


def _load_manifests(paths: list[str]) -> list[Manifest | TheaterError]:
    """Each manifest, or why it cannot be loaded (runs on a thread)."""
    loaded: list[Manifest | TheaterError] = []
    for path in paths:
        try:
            loaded.append(load_manifest(path))
        except TheaterError as exc:
            loaded.append(exc)
    return loaded
