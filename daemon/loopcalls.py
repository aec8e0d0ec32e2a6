"""Calls into the event loop from other threads, with coalesced wake-ups.

``trio.lowlevel.TrioToken.run_sync_soon`` writes to a wake-up socket on every
call.  Under load the store writer and the handler threads each finish
thousands of things a second, and one syscall plus one scheduler pass per
completion became a large share of the daemon's CPU.  :class:`LoopCalls`
queues the callbacks and wakes the loop only when no wake-up is already
pending, then runs everything queued in one pass, in submission order.
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

    def __call__(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the event loop soon (thread-safe, never blocks)."""
        self._queue.append((fn, args))
        with self._lock:
            if self._pending:
                return
            self._pending = True
        self._token.run_sync_soon(self._drain)

    def _drain(self) -> None:
        with self._lock:
            self._pending = False
        queue = self._queue
        while queue:
            fn, args = queue.popleft()
            fn(*args)
