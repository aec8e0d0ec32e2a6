"""daemon.loopcalls: calls into the event loop from threads, coalesced."""

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
