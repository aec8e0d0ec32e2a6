"""Calls into the event loop from other threads, with coalesced wake-ups.

``trio.lowlevel.TrioToken.run_sync_soon`` writes to a wake-up socket on every
call.  Under load the store writer and the handler threads each finish
thousands of things a second, and one syscall plus one scheduler pass per
completion became a large share of the daemon's CPU.  :class:`LoopCalls`
queues the callbacks and wakes the loop only when no wake-up is already
pending, then runs everything queued in one pass, in submission order.

A worker thread can *hold* its calls for the length of a job
(:meth:`LoopCalls.hold`, :meth:`LoopCalls.release`): the store settling the
job's replies and the job's own result then reach the loop together, in one
wake-up, after the thread has finished its work, instead of the loop waking
while the thread still runs and the two taking turns at the GIL.

While a pass runs, :attr:`LoopCalls.draining` is true; the hooks in
:attr:`LoopCalls.after_drain` run at its end.  The server uses the two to
write all the replies settled in one pass with one system call per
connection.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

import trio


class LoopCalls:
    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._token = token
        self._queue: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._pending = False
        self._lock = threading.Lock()
        self.draining = False
        self.after_drain: list[Callable[[], None]] = []
        self._local = threading.local()

    def __call__(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the event loop soon (thread-safe, never blocks)."""
        held = getattr(self._local, "held", None)
        if held is not None:
            held.append((fn, args))
            return
        self._queue.append((fn, args))
        self._wake()

    def now(self, fn: Callable[..., Any], *args: Any) -> None:
        """Like calling this, but never held: for things that are not this thread's to hold
        (the store settling other callers' batches that a handler thread committed)."""
        self._queue.append((fn, args))
        self._wake()

    def hold(self) -> None:
        """From now on, this thread's calls wait for :meth:`release` (or :meth:`flush_held`)."""
        self._local.held = []

    def flush_held(self) -> None:
        """Send this thread's held calls on now, and go on holding."""
        held = getattr(self._local, "held", None)
        if held:
            self._local.held = []
            self._queue.extend(held)
            self._wake()

    def release(self, fn: Callable[..., Any] | None = None, *args: Any) -> None:
        """Stop holding: send the held calls on, then ``fn(*args)`` if given."""
        held = getattr(self._local, "held", None) or []
        self._local.held = None
        if fn is not None:
            held.append((fn, args))
        if held:
            self._queue.extend(held)
            self._wake()

    def _wake(self) -> None:
        with self._lock:
            if self._pending:
                return
            self._pending = True
        self._token.run_sync_soon(self._drain)

    def _drain(self) -> None:
        with self._lock:
            self._pending = False
        queue = self._queue
        self.draining = True
        try:
            while queue:
                fn, args = queue.popleft()
                fn(*args)
        finally:
            self.draining = False
            for hook in self.after_drain:
                hook()
