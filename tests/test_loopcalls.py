"""daemon.loopcalls: calls into the event loop from threads, coalesced, and held per job."""

from __future__ import annotations

import threading

import trio

from daemon.loopcalls import LoopCalls


async def _in_thread(fn: object) -> None:
    await trio.to_thread.run_sync(fn)  # type: ignore[arg-type]


async def test_calls_from_threads_run_on_the_loop_in_order() -> None:
    calls = LoopCalls(trio.lowlevel.current_trio_token())
    loop_thread = threading.get_ident()
    seen: list[tuple[int, int]] = []
    done = trio.Event()

    def work() -> None:
        for i in range(200):
            calls(lambda i=i: seen.append((i, threading.get_ident())))
        calls(done.set)

    await _in_thread(work)
    with trio.fail_after(10):
        await done.wait()
    assert [i for i, _ in seen] == list(range(200))
    assert {ident for _, ident in seen} == {loop_thread}


async def test_held_calls_wait_for_release_and_then_come_first() -> None:
    calls = LoopCalls(trio.lowlevel.current_trio_token())
    seen: list[str] = []
    held_checked = threading.Event()
    release_now = threading.Event()
    done = trio.Event()

    def job() -> None:
        calls.hold()
        calls(seen.append, "settle 1")
        calls(seen.append, "settle 2")
        held_checked.set()
        release_now.wait(10)
        calls.release(seen.append, "result")
        calls(done.set)  # no longer holding: goes at once

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_in_thread, job)
        await trio.to_thread.run_sync(held_checked.wait, 10)
        await trio.sleep(0.05)
        assert seen == []  # held while the job runs
        release_now.set()
        with trio.fail_after(10):
            await done.wait()
    assert seen == ["settle 1", "settle 2", "result"]


async def test_flush_held_sends_what_is_held_and_goes_on_holding() -> None:
    calls = LoopCalls(trio.lowlevel.current_trio_token())
    seen: list[str] = []
    flushed = trio.Event()
    step = threading.Event()

    def job() -> None:
        calls.hold()
        calls(seen.append, "before the host call")
        calls(flushed.set)
        calls.flush_held()
        step.wait(10)
        calls(seen.append, "after")
        calls.release()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(_in_thread, job)
        with trio.fail_after(10):
            await flushed.wait()
        assert seen == ["before the host call"]
        step.set()
    with trio.fail_after(10):
        while len(seen) < 2:
            await trio.sleep(0.01)
    assert seen == ["before the host call", "after"]


async def test_a_pass_is_marked_draining_and_ends_with_the_hooks() -> None:
    calls = LoopCalls(trio.lowlevel.current_trio_token())
    log: list[tuple[str, bool]] = []
    calls.after_drain.append(lambda: log.append(("hook", calls.draining)))
    done = trio.Event()

    def work() -> None:
        calls(lambda: log.append(("call", calls.draining)))
        calls(lambda: log.append(("call", calls.draining)))
        calls(done.set)

    assert not calls.draining
    await _in_thread(work)
    with trio.fail_after(10):
        await done.wait()
    await trio.sleep(0)
    calls_seen = [entry for entry in log if entry[0] == "call"]
    assert calls_seen == [("call", True), ("call", True)]
    assert ("hook", False) in log
    assert log.index(("hook", False)) > log.index(("call", True))
