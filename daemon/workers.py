"""Worker threads that run actor handlers off the event loop.

``trio.to_thread.run_sync`` is general and measured about 170 us per call on
this machine; actor handlers need less: a pool of plain threads fed from a
``SimpleQueue``, each result handed back with one ``run_sync_soon``.  The pool
grows when every thread is busy (a handler blocked in a request to another
actor holds its thread), up to ``max_threads``, and idle threads retire.

A waiting task can always be cancelled: the job is then *abandoned* and its
result, whenever the thread finishes, is dropped.  That is how a handler that
never returns still lets ``theaterctl stop`` and shutdown proceed.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

import outcome
import trio

from .errors import Busy
from .loopcalls import LoopCalls

IDLE_SECONDS = 30.0


class _Job:
    __slots__ = ("fn", "args", "task", "abandoned")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], task: trio.lowlevel.Task) -> None:
        self.fn = fn
        self.args = args
        self.task = task
        self.abandoned = False


class WorkerPool:
    def __init__(self, max_threads: int = 512, call_soon: LoopCalls | None = None) -> None:
        self.max_threads = max_threads
        self.call_soon = call_soon  # thread-safe "run on the event loop" (defaults to the token's)
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._token: trio.lowlevel.TrioToken | None = None

    @property
    def threads(self) -> int:
        return self._threads

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on a worker thread and return (or raise) its outcome."""
        if self._token is None:
            self._token = trio.lowlevel.current_trio_token()
        await trio.lowlevel.checkpoint_if_cancelled()
        job = _Job(fn, args, trio.lowlevel.current_task())
        with self._lock:
            if self._idle == 0:
                if self._threads >= self.max_threads:
                    raise Busy(f"all {self.max_threads} handler threads are busy")
                self._threads += 1
                threading.Thread(target=self._work, name="theater-handler", daemon=True).start()
            else:
                self._idle -= 1
        self._queue.put(job)

        def abort(_: Any) -> trio.lowlevel.Abort:
            job.abandoned = True
            return trio.lowlevel.Abort.SUCCEEDED

        return await trio.lowlevel.wait_task_rescheduled(abort)

    def _deliver(self, job: _Job, result: outcome.Outcome) -> None:
        if not job.abandoned:
            trio.lowlevel.reschedule(job.task, result)

    def _work(self) -> None:
        get = self._queue.get
        while True:
            try:
                job = get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._idle > 0:
                        self._idle -= 1
                        self._threads -= 1
                        return
                continue
            if job is None:
                with self._lock:
                    self._threads -= 1
                return
            calls = self.call_soon
            if calls is not None:
                calls.hold()  # what the job sends to the loop goes with its result, in one wake-up
            result = outcome.capture(job.fn, *job.args)
            job.fn = job.args = None  # type: ignore[assignment]
            with self._lock:
                self._idle += 1
            assert self._token is not None
            try:
                if calls is not None:
                    calls.release(self._deliver, job, result)
                else:
                    self._token.run_sync_soon(self._deliver, job, result)
            except trio.RunFinishedError:
                return
