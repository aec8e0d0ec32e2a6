"""Races in the worker pool that a hostile actor can provoke, made deterministic.

The e2e test ``test_init_that_spins_is_stopped_by_handler_timeout_and_frees_the_name``
hits the first one about one round in five: a shared worker killed (init over its
``handler_timeout``) while the actor is being unloaded from it.
"""

from __future__ import annotations

import socket

import trio
import trio.testing

from daemon import wire
from daemon.workerlink import Profile, Worker, WorkerDied
from daemon.workerpool import WorkerPool


async def _nothing(*args: object) -> None:
    return None


async def test_a_call_to_a_worker_that_dies_while_the_call_waits_for_the_send_lock_is_worker_died() -> None:
    """``Worker.send`` checks ``stream`` before ``async with _send_lock`` and uses it after:
    a worker marked dead meanwhile (``stream = None``) gave ``AttributeError``, which ended
    the runtime's nursery (``_unload`` catches only WorkerDied/TheaterError): the daemon exited."""
    pool = WorkerPool(1, _nothing, lambda *a: None)
    ours, theirs = socket.socketpair()
    worker = Worker(1, Profile(), False)
    worker.stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    pool.workers.append(worker)
    outcome: list[str] = []

    async def unload() -> None:
        try:
            await worker.call("unload", {"actor": "a"})
        except WorkerDied as exc:
            outcome.append(f"died: {exc}")
        except Exception as exc:  # noqa: BLE001 - what the test is about
            outcome.append(f"{type(exc).__name__}: {exc}")

    try:
        async with trio.open_nursery() as nursery:
            await worker._send_lock.acquire()  # another frame is being written
            nursery.start_soon(unload)
            await trio.testing.wait_all_tasks_blocked()
            pool._mark_dead(worker, "worker was killed by SIGKILL")  # its process was reaped
            worker._send_lock.release()
    finally:
        theirs.close()
    assert outcome == ["died: worker was killed by SIGKILL"]



async def test_a_frame_the_link_does_not_take_by_its_deadline_is_too_slow() -> None:
    """The run call's deadline is enforced where the frame waits for the link (the mailbox
    then kills the worker: tests/test_runtime.py).  A frame the socket takes at once is sent
    even with its deadline already come (it never waits); one left half written jams the
    link, so that no other frame can follow its first part."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    worker = Worker(1, Profile(), False)
    worker.stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
    worker.link = ours
    try:
        await worker.send(wire.Call(1, "ping", {}), trio.current_time())  # taken at once: no wait
        start = trio.current_time()
        outcome = "waited past the deadline"
        with trio.move_on_after(20):
            try:  # far more than the socket's buffer, and nobody reads the other end
                await worker.send(wire.Call(2, "run", {"blob": b"x" * (16 << 20)}), start + 0.3)
                outcome = "sent"
            except trio.TooSlowError:
                outcome = "too slow"
        assert outcome == "too slow"
        assert 0.25 <= trio.current_time() - start < 10
        assert worker._send_lock.locked() is False
        assert worker.jammed
        try:
            await worker.send(wire.Call(3, "ping", {}))
        except WorkerDied as exc:
            assert "half written" in str(exc)
        else:
            raise AssertionError("a frame was sent after half of another")
    finally:
        theirs.close()
        ours.close()
