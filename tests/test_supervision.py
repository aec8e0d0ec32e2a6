"""Worker processes under the runtime: crashes, timeouts, dead letters, stuck init, forged host calls."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import trio

from daemon.chain import verify
from daemon.errors import ActorFailed, BadInput
from daemon.runtime import FAILED, RUNNING, STARTING, STOPPED, Runtime
from daemon.storeops import MailboxPut
from tests.helpers_runtime import (
    chain_events,
    default_settings,
    flush,
    hosted_runtime,
    of_type,
    wait_until,
    write_actor,
)

POISON = '''
import json, os
def handle_send(state, params):
    m = json.loads(params[0])
    if m.get("poison"):
        os._exit(3)
    s = json.loads(state or b'{"n": 0}')
    s["n"] += 1
    return (json.dumps(s).encode(),)
def handle_request(state, params):
    m = json.loads(params[0])
    if m.get("exit"):
        os._exit(m["exit"])
    if m.get("spin"):
        while True:
            pass
    return state, (state or b'{"n": 0}',)
'''

PLAIN = '''
def handle_request(state, params):
    return state, (b'"still here"',)
'''


async def _chain_ok(rt: Runtime, ref: str) -> None:
    await flush(rt.store)
    actor = rt.resolve(ref)
    rows = rt.store.events(actor.id)
    assert rows, ref
    assert verify(rows, actor.id).ok


async def test_a_worker_that_exits_fails_the_request_and_the_actor_comes_back(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home", default_settings(workers=1)) as rt:
        await rt.spawn(str(write_actor(tmp_path, "victim", POISON, 'restart = "on-failure"\n')))
        await rt.spawn(str(write_actor(tmp_path, "bystander", PLAIN)))
        before = rt.pool.started
        with pytest.raises(ActorFailed, match=r"^actor victim worker exited with code 7 while handling handle_request$"):
            await rt.request(None, "victim", b'{"exit": 7}')
        assert rt.resolve("victim").status == RUNNING
        assert await rt.request(None, "victim", b"{}") == b'{"n": 0}'
        assert await rt.request(None, "bystander", b"{}") == b'"still here"'  # moved to the new worker
        assert rt.pool.started > before
        events = await chain_events(rt, "victim")
        crash = of_type(events, "runtime/crash")[0]["data"]
        assert crash["reason"] == "worker exited with code 7 while handling handle_request"
        assert of_type(events, "runtime/restart")


async def test_the_actors_of_a_dead_worker_move_together_into_one_replacement(tmp_path: Path) -> None:
    """A killed shared worker is replaced once, however many of its actors ask at the same time, and
    none of them is placed on the replacement before it has confined itself."""
    async with hosted_runtime(tmp_path / "home", default_settings(workers=1)) as rt:
        names = ["p1", "p2", "p3"]
        for name in names:
            await rt.spawn(str(write_actor(tmp_path, name, PLAIN)))
        old = rt.resolve("p1").worker
        assert old is not None and all(rt.resolve(n).worker is old for n in names)
        before = rt.pool.started
        os.kill(old.pid, 9)
        with trio.fail_after(10):
            await old.died.wait()
        answers: list[bytes] = []

        async def ask(name: str) -> None:
            answers.append(await rt.request(None, name, b"{}"))

        async with trio.open_nursery() as nursery:
            for name in names:
                nursery.start_soon(ask, name)
        assert answers == [b'"still here"'] * 3
        new = rt.resolve("p1").worker
        assert new is not None and new is not old and all(rt.resolve(n).worker is new for n in names)
        assert rt.pool.started == before + 1
        assert [w for w in rt.pool.workers if not w.dedicated] == [new]


async def test_a_poison_send_is_dead_lettered_after_max_deliveries(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home", default_settings(workers=1)) as rt:
        actor = await rt.spawn(str(write_actor(
            tmp_path, "p", POISON, 'restart = "on-failure"\nmax_restarts = 10\nmax_deliveries = 2\n')))
        await rt.send(None, "p", b'{"poison": true}')
        await rt.send(None, "p", b"{}")
        await wait_until(lambda: actor.handled >= 1, what="the message behind the poison handled")
        assert json.loads(actor.state or b"{}") == {"n": 1}
        events = await chain_events(rt, "p")
        assert len(of_type(events, "runtime/crash")) == 2
        (dead,) = of_type(events, "runtime/dead-letter")
        assert dead["data"]["attempts"] == 2
        letters = await rt.dead_letters("p")
        assert [(x["attempts"], json.loads(x["msg"])) for x in letters] == [(2, {"poison": True})]
        assert [m for m in rt.store.load_mailbox() if m.actor == actor.id] == []
        # dropping it forgets it; retrying a dropped one is an unknown id
        await rt.drop_dead_letter(letters[0]["id"])
        assert await rt.dead_letters("p") == []


async def test_a_retried_dead_letter_is_delivered_again(tmp_path: Path) -> None:
    source = POISON.replace('if m.get("poison"):', 'if m.get("poison") and not os.path.exists(m["cured"]):')
    cured = tmp_path / "cured"
    async with hosted_runtime(tmp_path / "home", default_settings(workers=1)) as rt:
        actor = await rt.spawn(str(write_actor(tmp_path, "p", source, 'restart = "on-failure"\nmax_restarts = 10\n'
                                               'max_deliveries = 1\n')))
        await rt.send(None, "p", json.dumps({"poison": True, "cured": str(cured)}).encode())
        await wait_until(lambda: bool(rt.store.dead_letters()), what="dead-lettered")
        cured.write_text("")  # the bug is fixed (a worker may read it: it is the test's tmp dir)
        (letter,) = await rt.dead_letters()
        await rt.retry_dead_letter(letter["id"])
        await wait_until(lambda: actor.handled >= 1, what="the retried message handled")
        assert await rt.dead_letters() == []


async def test_a_handler_over_its_timeout_is_killed_and_others_keep_answering(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home", default_settings(workers=1)) as rt:
        await rt.spawn(str(write_actor(tmp_path, "spin", POISON, "handler_timeout = 0.5\n")))
        await rt.spawn(str(write_actor(tmp_path, "bystander", PLAIN)))
        with trio.fail_after(15):
            with pytest.raises(ActorFailed, match="ran longer than its handler_timeout of 0.5 s"):
                await rt.request(None, "spin", b'{"spin": true}')
        assert rt.resolve("spin").status == FAILED  # restart = "never"
        assert await rt.request(None, "bystander", b"{}") == b'"still here"'
        await _chain_ok(rt, "spin")


async def test_stop_of_an_actor_stuck_in_init_returns_and_frees_the_name(tmp_path: Path) -> None:
    stuck = "def init(state):\n    while True:\n        pass\n"
    async with hosted_runtime(tmp_path / "home") as rt:
        manifest = str(write_actor(tmp_path, "stuck", stuck))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_spawn_expecting_failure, rt, manifest)
            await wait_until(lambda: any(a.status == STARTING for a in rt.actors.values()), what="starting")
            assert [v["status"] for v in rt.list_view()] == ["starting"]
            with trio.fail_after(10):
                stopped = await rt.stop("stuck")
        assert stopped.status == STOPPED
        await rt.spawn(str(write_actor(tmp_path, "stuck", PLAIN)))  # the name is free again


async def _spawn_expecting_failure(rt: Runtime, manifest: str) -> None:
    with pytest.raises(ActorFailed, match="stopped while starting"):
        await rt.spawn(manifest)


async def test_an_init_over_its_timeout_fails_the_spawn(tmp_path: Path) -> None:
    stuck = "def init(state):\n    while True:\n        pass\n"
    async with hosted_runtime(tmp_path / "home") as rt:
        with trio.fail_after(15), pytest.raises(ActorFailed, match="init ran longer than its handler_timeout"):
            await rt.spawn(str(write_actor(tmp_path, "slowinit", stuck, "handler_timeout = 0.5\n")))


async def test_a_worker_cannot_make_host_calls_for_an_actor_it_is_not_running(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home", default_settings(workers=1)) as rt:
        a = await rt.spawn(str(write_actor(tmp_path, "a", PLAIN)))
        b = await rt.spawn(str(write_actor(tmp_path, "b", PLAIN)))
        assert a.worker is not None and b.worker is a.worker
        # b has no handler running: a forged call in its name is refused, and records nothing
        with pytest.raises(BadInput, match="only available inside a handler"):
            await rt._host_call(a.worker, {"actor": b.id, "op": "send", "target": "a", "msg": b"{}"})
        await flush(rt.store)
        assert len(await chain_events(rt, "b")) == 1


async def test_stopping_the_last_actor_of_a_dedicated_worker_ends_the_process(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        actor = await rt.spawn(str(write_actor(tmp_path, "own", PLAIN, 'isolation = "dedicated"\n')))
        worker = actor.worker
        assert worker is not None and worker.dedicated and worker.actors == {actor.id}
        shared = {w.pid for w in rt.pool.workers if not w.dedicated}
        assert worker.pid not in shared
        await rt.stop("own")
        with trio.fail_after(10):
            await worker.died.wait()
        assert not os.path.exists(f"/proc/{worker.pid}/status") or _zombie(worker.pid)


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return any(line.startswith("State:") and "Z" in line for line in f)
    except OSError:
        return True


RELAY = '''
import json
from actors import message_server
def handle_send(state, params):
    message_server.send("zsink", params[0])
    s = json.loads(state or b'{"n": 0}')
    s["n"] += 1
    return (json.dumps(s).encode(),)
'''

SINK = '''
import json
def handle_send(state, params):
    s = json.loads(state or b'{"n": 0}')
    s["n"] += 1
    return (json.dumps(s).encode(),)
'''


async def test_restored_mail_is_handled_only_once_every_actor_is_known_again(tmp_path: Path) -> None:
    # the relay (restored first: created first) forwards stored mail to zsink (restored after
    # it): before the fix the relay could run while zsink was not known yet, and its sends failed
    home = tmp_path / "home"
    async with hosted_runtime(home, shutdown=False) as rt:
        relay = await rt.spawn(str(write_actor(tmp_path, "relay", RELAY)))
        await rt.spawn(str(write_actor(tmp_path, "zsink", SINK)))
        # mail accepted for the relay just before a crash (stored, never handled)
        await flush(rt.store, [MailboxPut(10_000 + i, relay.id, "external", b"{}") for i in range(20)])
    async with hosted_runtime(home) as rt:
        relay, sink = rt.resolve("relay"), rt.resolve("zsink")
        await wait_until(lambda: sink.handled >= 20, what="all 20 relayed")
        events = await chain_events(rt, "relay")
        assert [e for e in of_type(events, "message-server/handle-send") if e["data"]["outcome"] != "ok"] == []
        assert json.loads(relay.state or b"{}") == {"n": 20}


async def test_restart_keeps_id_name_state_and_accepted_mail(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        actor = await rt.spawn(str(write_actor(tmp_path, "c", SINK)))
        await rt.send(None, "c", b"{}")
        await wait_until(lambda: actor.handled == 1)
        old_worker = actor.worker
        again = await rt.restart("c")
        assert again is actor and actor.status == RUNNING and actor.worker is not None
        assert json.loads(actor.state or b"{}") == {"n": 1}
        await rt.send(None, "c", b"{}")
        await wait_until(lambda: json.loads(actor.state or b"{}") == {"n": 2}, what="handled after the restart")
        assert of_type(await chain_events(rt, "c"), "runtime/restart")
        await rt.stop("c")
        await rt.restart(actor.id)  # a stopped actor comes back too
        assert rt.resolve("c").status == RUNNING and old_worker is not None
        await _chain_ok(rt, "c")


async def test_rm_forgets_a_stopped_actor_and_frees_its_name(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        first = await rt.spawn(str(write_actor(tmp_path, "c", SINK)))
        with pytest.raises(BadInput, match="stop it first"):
            await rt.remove("c")
        await rt.stop("c")
        await rt.remove("c")
        assert [v["name"] for v in rt.list_view(True)] == []
        second = await rt.spawn(str(write_actor(tmp_path, "c", SINK)))
        assert rt.resolve("c") is second
        assert rt.store.events(first.id)  # its chain is kept...
        await rt.stop("c")
        gone = await rt.prune(purge=True)
        assert [a.id for a in gone] == [second.id]
        assert rt.store.events(second.id) == []  # ...unless purged
        assert [v["name"] for v in rt.list_view(True)] == []
