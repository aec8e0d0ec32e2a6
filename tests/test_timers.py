"""daemon.timers: deadlines run as callbacks by one task."""

from __future__ import annotations

from collections.abc import Callable

import trio
import trio.testing

from daemon.timers import Timers


async def test_callbacks_run_in_deadline_order_at_their_time(autojump_clock: trio.testing.MockClock) -> None:
    timers = Timers()
    fired: list[tuple[str, float]] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        await trio.sleep(0)
        now = trio.current_time()
        timers.at(now + 3, lambda: fired.append(("c", trio.current_time() - now)))
        timers.at(now + 1, lambda: fired.append(("a", trio.current_time() - now)))
        timers.at(now + 2, lambda: fired.append(("b", trio.current_time() - now)))
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert [name for name, _ in fired] == ["a", "b", "c"]
    assert [round(at, 6) for _, at in fired] == [1, 2, 3]


async def test_an_earlier_deadline_added_later_wakes_the_task_sooner(autojump_clock: trio.testing.MockClock) -> None:
    timers = Timers()
    fired: list[float] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        start = trio.current_time()
        timers.at(start + 100, lambda: fired.append(100))
        await trio.sleep(1)  # the task now sleeps until start + 100
        timers.at(start + 2, lambda: fired.append(trio.current_time() - start))
        await trio.sleep(5)
        assert fired == [2]
        nursery.cancel_scope.cancel()


async def test_cancelled_timers_never_run_and_do_not_pile_up(autojump_clock: trio.testing.MockClock) -> None:
    timers = Timers()
    fired: list[int] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        start = trio.current_time()
        def note(i: int) -> Callable[[], None]:
            return lambda: fired.append(i)

        handles = [timers.at(start + 10, note(i)) for i in range(1000)]
        for handle in handles[:-1]:
            timers.cancel(handle)
        timers.cancel(handles[0])  # twice is harmless
        assert len(timers) == 1
        assert len(timers._heap) < 500  # rebuilt once the cancelled ones were the majority
        await trio.sleep(11)
        assert fired == [999]
        assert len(timers) == 0
        nursery.cancel_scope.cancel()


async def test_a_callback_may_add_and_cancel_timers(autojump_clock: trio.testing.MockClock) -> None:
    timers = Timers()
    fired: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(timers.run)
        start = trio.current_time()
        later = [timers.at(start + 5, lambda: fired.append("cancelled")) for _ in range(100)]

        def first() -> None:
            fired.append("first")
            for handle in later:
                timers.cancel(handle)  # rebuilds the heap while the task walks it
            timers.at(trio.current_time() + 1, lambda: fired.append("second"))

        timers.at(start + 1, first)
        await trio.sleep(10)
        assert fired == ["first", "second"]
        nursery.cancel_scope.cancel()
