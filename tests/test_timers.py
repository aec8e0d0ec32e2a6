"""daemon.timers: deadlines run as callbacks by one task."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio
import trio.testing

from daemon.timers import Timers


@asynccontextmanager
async def running() -> AsyncIterator[tuple[Timers, float]]:
    """Timers with their task running, and the time they started at (run under the autojump clock)."""
    timers = Timers()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        await trio.sleep(0)
        yield timers, trio.current_time()
        nursery.cancel_scope.cancel()


async def test_callbacks_run_in_deadline_order_at_their_time(autojump_clock: trio.testing.MockClock) -> None:
    fired: list[tuple[str, float]] = []
    async with running() as (timers, start):

        def note(name: str) -> Callable[[], None]:
            return lambda: fired.append((name, trio.current_time() - start))

        for name, delay in (("c", 3), ("a", 1), ("b", 2)):
            timers.at(start + delay, note(name))
        await trio.sleep(5)
    assert fired == [("a", 1), ("b", 2), ("c", 3)]


async def test_an_earlier_deadline_added_later_wakes_the_task_sooner(autojump_clock: trio.testing.MockClock) -> None:
    fired: list[float] = []
    async with running() as (timers, start):
        timers.at(start + 100, lambda: fired.append(100))
        await trio.sleep(1)  # the task now sleeps until start + 100
        timers.at(start + 2, lambda: fired.append(trio.current_time() - start))
        await trio.sleep(5)
        assert fired == [2]


async def test_cancelled_timers_never_run_and_do_not_pile_up(autojump_clock: trio.testing.MockClock) -> None:
    fired: list[int] = []

    def note(i: int) -> Callable[[], None]:
        return lambda: fired.append(i)

    async with running() as (timers, start):
        handles = [timers.at(start + 10, note(i)) for i in range(1000)]
        for handle in handles[:-1]:
            timers.cancel(handle)
        timers.cancel(handles[0])  # twice is harmless
        assert len(timers) == 1
        assert len(timers._heap) < 500  # rebuilt once the cancelled ones were the majority
        await trio.sleep(11)
        assert fired == [999]
        assert len(timers) == 0


async def test_a_callback_may_add_and_cancel_timers(autojump_clock: trio.testing.MockClock) -> None:
    fired: list[str] = []
    async with running() as (timers, start):
        later = [timers.at(start + 5, lambda: fired.append("cancelled")) for _ in range(100)]

        def first() -> None:
            fired.append("first")
            for handle in later:
                timers.cancel(handle)  # rebuilds the heap while the task walks it
            timers.at(trio.current_time() + 1, lambda: fired.append("second"))

        timers.at(start + 1, first)
        await trio.sleep(10)
        assert fired == ["first", "second"]
