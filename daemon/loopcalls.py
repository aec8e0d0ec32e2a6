"""Calls into the event loop from other threads, with coalesced wake-ups.

``trio.lowlevel.TrioToken.run_sync_soon`` writes to a wake-up socket on every
call.  Under load the store writer and the handler threads each finish
thousands of things a second, and one syscall plus one scheduler pass per
completion became a large share of the daemon's CPU.  :class:`LoopCalls`
queues the callbacks and wakes the loop only when no wake-up is already
pending, then runs everything queued in one pass, in submission order.

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

    def __call__(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the event loop soon (thread-safe, never blocks)."""
        self._queue.append((fn, args))
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
