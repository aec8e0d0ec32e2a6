"""Regression tests for races found in review: each failed before its fix."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import trio

from daemon.chain import verify
from daemon.runtime import Settings
from tests.helpers_runtime import default_settings, flush, hosted_runtime, wait_until, write_actor

COUNTING = '''
import json
def handle_send(state, params):
    s = json.loads(state or b'{"n":0}')
    s["n"] += 1
    return (json.dumps(s).encode(),)
'''

STUCK = '''
import time, json
def handle_send(state, params):
    m = json.loads(params[0])
    if m.get("stuck"):
        time.sleep(m["stuck"])
    return (state,)
'''


async def test_concurrent_sends_into_a_full_mailbox_are_handled_once_across_a_restart(tmp_path: Path) -> None:
    # a sender parked on a full mailbox used to store its row after the handler removed it:
    # the row stayed, and the message was handled again after a restart
    settings = Settings(default_timeout=20, stop_grace=2, mailbox_size=4)
    n = 120
    async with hosted_runtime(tmp_path / "home", settings) as rt:
        actor = await rt.spawn(str(write_actor(tmp_path, "a", COUNTING)), state=b'{"n":0}')

        async def busy() -> None:  # keep the loop busy so parked senders resume late
            while True:
                start = time.perf_counter()
                while time.perf_counter() - start < 0.002:
                    pass
                await trio.sleep(0)

        async with trio.open_nursery() as background:
            for _ in range(4):
                background.start_soon(busy)
            async with trio.open_nursery() as senders:
                for _ in range(n):
                    senders.start_soon(rt.send, None, "a", b"{}")
            background.cancel_scope.cancel()
        await wait_until(lambda: actor.handled >= n, timeout=60)
        await flush(rt.store)
        assert [m for m in rt.store.load_mailbox() if m.actor == actor.id] == []
    async with hosted_runtime(tmp_path / "home", settings) as rt:
        await trio.sleep(0.5)
        again = rt.resolve("a")
        assert again.handled == n and again.state == b'{"n": %d}' % n


async def test_a_stop_that_abandons_a_batch_leaves_no_chain_gap(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home", default_settings(stop_grace=0.5)) as rt:
        actor = await rt.spawn(str(write_actor(tmp_path, "a", STUCK)))
        await rt.send(None, "a", b'{"stuck": 0.3}')  # holds the mailbox: the next two form one batch
        await rt.send(None, "a", b"{}")
        await rt.send(None, "a", b'{"stuck": 3}')
        await trio.sleep(0.5)
        await rt.stop("a")
        await flush(rt.store)
        rows = rt.store.events(actor.id)
        assert [seq for seq, _, _ in rows] == list(range(1, actor.head.seq + 1))
        assert verify(rows, actor.id).ok


async def test_a_busy_handler_does_not_hold_up_another_actor_of_the_same_worker(tmp_path: Path) -> None:
    settings = default_settings(workers=1)
    async with hosted_runtime(tmp_path / "home", settings) as rt:
        await rt.spawn(str(write_actor(tmp_path, "a", STUCK)))
        await rt.spawn(str(write_actor(tmp_path, "b", STUCK)))
        await rt.send(None, "a", b'{"stuck": 0.5}')
        await rt.send(None, "b", b"{}")  # must wait for the one thread, then be handled
        await wait_until(lambda: rt.resolve("b").handled >= 1, timeout=20)


SENDS_THEN_REPLIES = '''
import json
from actors import message_server
def handle_request(state, params):
    m = json.loads(params[0])
    for _ in range(m["n"]):
        message_server.send("a", b"{}")
    if m.get("then_request"):
        message_server.request("a", b"{}")
    return state, (b"{}",)
'''

COUNTING_REQUESTS = COUNTING + '''
def handle_request(state, params):
    return state, (state,)
'''


async def test_outbox_sends_are_queued_before_the_senders_reply_or_next_host_call(tmp_path: Path) -> None:
    # the sender's reply must not reach its caller before the sends it made are in the
    # target's mailbox; a request made after them by the caller (or by the sender itself)
    # would overtake them
    async with hosted_runtime(tmp_path / "home") as rt:
        await rt.spawn(str(write_actor(tmp_path, "a", COUNTING_REQUESTS)), state=b'{"n":0}')
        await rt.spawn(str(write_actor(tmp_path, "b", SENDS_THEN_REPLIES)))
        expected = 0
        for round in range(60):
            n = 1 + round % 3
            expected += n
            await rt.request(None, "b", json.dumps({"n": n, "then_request": round % 2 == 1}).encode())
            assert json.loads(await rt.request(None, "a", b"{}")) == {"n": expected}


IDLE_TARGET = '''
def handle_send(state, params):
    return (state,)
'''

SEND_THEN_SLEEP = '''
import time
from actors import message_server
def handle_send(state, params):
    message_server.send("target", b"{}")  # queued in this handler's batch (the outbox)
    time.sleep(1.0)  # ... which is stored only when the handler returns
    return (state,)
'''


async def test_an_outbox_send_stored_after_its_target_stopped_leaves_no_row(tmp_path: Path) -> None:
    # found in review: the stop cleared the stored mailbox, then the sender's batch stored
    # the row; the closed mailbox left it there forever (reloaded at every start)
    async with hosted_runtime(tmp_path / "home", default_settings(stop_grace=0.2)) as rt:
        await rt.spawn(str(write_actor(tmp_path, "target", IDLE_TARGET)))
        await rt.spawn(str(write_actor(tmp_path, "sender", SEND_THEN_SLEEP)))
        target = rt.resolve("target")
        await rt.send(None, "sender", b"{}")
        await wait_until(lambda: rt.resolve("sender").current == "handle_send", what="sender busy")
        await trio.sleep(0.1)  # the send is in the sender's batch, not yet stored
        await rt.stop("target")
        await wait_until(lambda: rt.resolve("sender").handled >= 1, timeout=5, what="sender done")
        await flush(rt.store)
        await flush(rt.store)  # (the removal is submitted once the row's batch is settled)
        assert [row for row in rt.store.load_mailbox() if row.actor == target.id] == []


CRASH_FIRST = '''
import json, time
def handle_send(state, params):
    if json.loads(params[0]).get("crash"):
        time.sleep(0.3)
        return "not a tuple"
    return (state,)
'''


async def _failed_with_mail(rt: Any, tmp_path: Path) -> Any:
    """An actor that failed on its first message, with three more stored behind it."""
    actor = await rt.spawn(str(write_actor(tmp_path, "crashy", CRASH_FIRST)))
    await rt.send(None, "crashy", b'{"crash": true}')
    for _ in range(3):
        await rt.send(None, "crashy", b"{}")
    await wait_until(lambda: actor.status == "failed", what="crashy failed")
    await flush(rt.store)
    return actor


async def test_stopping_a_failed_actor_drops_its_stored_mailbox(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        actor = await _failed_with_mail(rt, tmp_path)
        # kept while failed: the three behind it, and the one that crashed it (to be delivered again)
        assert len([row for row in rt.store.load_mailbox() if row.actor == actor.id]) == 4
        stopped = await rt.stop("crashy")
        assert stopped.dropped == 4
        assert [row for row in rt.store.load_mailbox() if row.actor == actor.id] == []


async def test_a_stop_of_a_failed_actor_finishes_even_if_its_caller_goes_away(tmp_path: Path) -> None:
    # found in review: the caller's cancellation left it stopped in memory, failed in the store
    async with hosted_runtime(tmp_path / "home") as rt:
        actor = await _failed_with_mail(rt, tmp_path)
        with trio.move_on_after(0):  # the caller goes away at the first checkpoint
            await rt.stop("crashy")
        await flush(rt.store)
        (row,) = [r for r in rt.store.load_actors() if r.id == actor.id]
        assert (actor.status, row.status) == ("stopped", "stopped")
        assert [m for m in rt.store.load_mailbox() if m.actor == actor.id] == []
