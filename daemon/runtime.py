"""The daemon's actors: :class:`Runtime`, built as one linear stack of layers.

Theory of operation
-------------------
Each layer is a class in a module of its own and builds only on the layers
below it (imports go one way, downwards)::

    Messaging    daemon.messaging   the actor table, chain events, send and request,
                                    cycle check, timeouts, refusing writes on a full disk
    Outbox       daemon.outbox      a handler's sends, delivered once its store group
                                    is queued; what actors print (their logs)
    Supervisor   daemon.supervisor  placing actors on workers; crashes, the restart
                                    policy, dead letters
    Mailboxes    daemon.mailbox     the mailbox tasks: batches run in workers, results
                                    settled in order, host calls, replays of stored mail
    Lifecycle    daemon.lifecycle   spawn, stop, restart, rm, prune; restore at start-up,
                                    shutdown
    Runtime      (this module)      construction, serve, a full disk, the views

Every attribute is set in :meth:`Runtime.__init__`; the first layer to use
one declares it.  Each module's docstring states its own invariants.  The
channel registry (:mod:`daemon.channels`) and the worker pool
(:mod:`daemon.workerpool`) are held by the runtime, not inherited.

:meth:`Runtime.serve` restores the actors from the store (every manifest
first), then hosts them until cancelled.  When the store's disk is full, no
message is handled and every write is refused (``suspended``); once space is
back, :meth:`Runtime._resync` waits for the running handlers, reloads every
actor's chain head, state and mailbox from the store (what was handled but not
stored is handled again; stored mail goes back in ahead of new mail), stores
the statuses whose writes were refused (failed, stopped, removed), then lets
handling go on.

Other modules import the statuses, the envelope and reply types, ``Runtime``
and ``Settings`` from here (``__all__``).
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import trio

from . import chain
from .actor import (
    CH_CLOSE,
    CH_MESSAGE,
    CH_OPEN,
    FAILED,
    HANDLERS,
    REMOVED,
    REQUEST,
    RUNNING,
    SEND,
    STARTING,
    STOPPED,
    STOPPING,
    Actor,
    Envelope,
    PendingRequest,
    ReplySlot,
)
from .channels import ChannelRegistry
from .errors import DiskFull
from .lifecycle import Lifecycle
from .loopcalls import LoopCalls
from .mailbox import take
from .messaging import Settings
from .store import Store, StoreError
from .storeops import MailboxClear, Op, SetStatus
from .timers import Timers
from .workerlink import Profile
from .workerpool import WorkerPool, default_worker_count

__all__ = [  # (what server.py, __main__.py and the tests import from here)
    "CH_CLOSE", "CH_MESSAGE", "CH_OPEN", "FAILED", "HANDLERS", "REMOVED", "REQUEST", "RUNNING", "SEND",
    "STARTING", "STOPPED", "STOPPING", "Actor", "Envelope", "PendingRequest", "ReplySlot", "Runtime", "Settings",
]

log = logging.getLogger("theaterd.runtime")


class Runtime(Lifecycle):
    """All actors of one daemon.  Create it, then ``await runtime.serve(...)`` in a nursery."""

    def __init__(self, store: Store, settings: Settings | None = None) -> None:
        self.store = store
        self.settings = settings or Settings()
        self.pool = WorkerPool(self.settings.workers or default_worker_count(), self._host_call, self._worker_log,
                               default_profile=Profile(memory_limit=self.settings.memory_limit))
        self.pool.on_death = self._worker_gone
        self.actors = {}
        self.names = {}
        self.waiting_on = {}
        self.channels = ChannelRegistry(self)
        self._nursery = None
        self._mail_ids = itertools.count(1)
        self._token: trio.lowlevel.TrioToken | None = None
        self.call_soon: LoopCalls | None = None  # once serving (or given by the caller before)
        self.timers = Timers()  # request deadlines of client connections
        self._spawned = 0
        self.suspended = None
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
            self.store.on_failure = self._store_failed
            if self.store.full is not None:
                self._store_full(self.store.full)
            await nursery.start(self.pool.run)
            await self._restore()
            task_status.started()
            await trio.sleep_forever()

    def _store_failed(self, error: BaseException) -> None:
        """A write failed for another reason than space: the daemon stops (theaterd exits
        1 with one line).  Everything acknowledged is stored; a restart resumes from it."""
        async def fail() -> None:
            raise StoreError(f"the store failed ({error}); stopping: a restart resumes from the last"
                             " stored state, which holds everything acknowledged")

        assert self._nursery is not None
        self._nursery.start_soon(fail)

    # ------------------------------------------------------------------
    # a full disk

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
        # a status changed in memory whose write was refused (a stop, a failure): store it now
        fixes: list[Op] = []
        for a in self.actors.values():
            if a.id in rows and rows[a.id].status != a.status and a.status in (FAILED, STOPPED, REMOVED):
                fixes.append(SetStatus(a.id, a.status, a.reason))
                if a.status == STOPPED and a.cleared:
                    fixes.append(MailboxClear(a.id))
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
        while (env := take(actor.mailbox_rx, actor.backlog)) is not None:
            waiting.append(env)
        waiting.extend(actor.late)
        actor.late.clear()
        running = actor.replay
        if running is not None:  # a replay still feeding the mailbox: what it holds is stale now
            waiting.extend(running.pending)
            running.pending.clear()
        kept = [env for env in waiting if env.mail_id is None]
        for env in waiting:
            if env.mail_id is not None:
                env.void = True
        stored = [Envelope(SEND, m.sender, m.payload, mail_id=m.id, attempts=m.attempts, sent=m.sent) for m in rows]
        queue = stored + kept
        if queue:
            self._start_replay(actor, queue)

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


