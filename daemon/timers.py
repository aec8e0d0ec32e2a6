"""Deadlines without a task each: one task runs callbacks when their time comes.

A request from a client waits for its reply with a timeout.  A task per
request (sleeping in ``move_on_after``) cost a scheduler round trip on every
reply; instead the reply is written by a callback, and the timeout is a
:class:`Timer` in a heap that one task watches.  Cancelled timers stay in the
heap until they are due or until they are the majority, then the heap is
rebuilt, so memory stays proportional to the live ones.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable

import trio


class Timer:
    """A pending callback; cancel it with :meth:`Timers.cancel`."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[], None]) -> None:
        self.fn: Callable[[], None] | None = fn  # None once run or cancelled


class Timers:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Timer]] = []
        self._order = itertools.count()
        self._scope: trio.CancelScope | None = None
        self._cancelled = 0

    def __len__(self) -> int:
        return len(self._heap) - self._cancelled

    def at(self, deadline: float, fn: Callable[[], None]) -> Timer:
        """Run ``fn()`` on the event loop at ``deadline`` (trio's clock) unless cancelled first."""
        timer = Timer(fn)
        heapq.heappush(self._heap, (deadline, next(self._order), timer))
        scope = self._scope
        if scope is not None and deadline < scope.deadline:
            scope.deadline = deadline
        return timer

    def cancel(self, timer: Timer) -> None:
        if timer.fn is None:
            return
        timer.fn = None
        self._cancelled += 1
        if self._cancelled > 64 and self._cancelled * 2 > len(self._heap):
            self._heap = [entry for entry in self._heap if entry[2].fn is not None]
            heapq.heapify(self._heap)
            self._cancelled = 0

    async def run(self) -> None:
        """Run due callbacks until cancelled (start it in a nursery)."""
        while True:
            with trio.CancelScope(deadline=self._heap[0][0] if self._heap else math.inf) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            now = trio.current_time()
            while self._heap and self._heap[0][0] <= now:  # a callback may rebuild the heap
                timer = heapq.heappop(self._heap)[2]
                fn = timer.fn
                if fn is None:
                    self._cancelled -= 1
                    continue
                timer.fn = None
                fn()
