"""The runtime in-process: mailboxes, request/reply, failures, cycles, stop, spawn errors, restore."""

from __future__ import annotations

import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import trio

from daemon import chain
from daemon.errors import ActorFailed, BadInput, Busy, NotFound, Timeout
from daemon.jsontext import check_json
from daemon.runtime import FAILED, RUNNING, STOPPED
from daemon.store import DB_NAME, Store
from daemon.storeops import MailboxPut
from tests.helpers_runtime import (
    EXAMPLES,
    chain_events,
    default_settings,
    example,
    flush,
    hosted_runtime,
    of_type,
    request_json,
    state_of,
    wait_until,
    write_actor,
)

# ----------------------------------------------------------------------
# test actors

LOG = """
import json, threading, time

_lock = threading.Lock()
_active = 0
_overlap = False


def handle_send(state, params):
    global _active, _overlap
    with _lock:
        _active += 1
        if _active > 1:
            _overlap = True
    try:
        time.sleep(0.0005)
        seen = json.loads(state)["seen"] if state else []
        seen.append(json.loads(params[0])["n"])
        return (json.dumps({"seen": seen}).encode(),)
    finally:
        with _lock:
            _active -= 1


def handle_request(state, params):
    seen = json.loads(state)["seen"] if state else []
    return state, (json.dumps({"seen": seen, "overlap": _overlap}).encode(),)
"""

FLAKY = """
import json


def handle_send(state, params):
    m = json.loads(params[0])
    if m.get("fail"):
        raise ValueError(m["fail"])
    n = json.loads(state)["n"] if state else 0
    return (json.dumps({"n": n + 1}).encode(),)


def handle_request(state, params):
    m = json.loads(params[0])
    if m.get("fail"):
        raise ValueError(m["fail"])
    if m.get("shape"):
        return b"{}"
    n = (json.loads(state)["n"] if state else 0) + 1
    return json.dumps({"n": n}).encode(), (json.dumps({"n": n}).encode(),)
"""

SEND_ONLY = """
def handle_send(state, params):
    return (state,)
"""

REQUEST_ONLY = """
def handle_request(state, params):
    return state, (b"{}",)
"""

SLEEPER = """
import json, time


def handle_request(state, params):
    time.sleep(json.loads(params[0]).get("sleep", 0))
    n = (json.loads(state)["n"] if state else 0) + 1
    return json.dumps({"n": n}).encode(), (json.dumps({"n": n}).encode(),)
"""

FORWARDER = """
import json
from actors import message_server


def handle_request(state, params):
    target = json.loads(state)["to"]
    message_server.send(target, params[0])
    return state, (b'{"forwarded": true}',)
"""

RELAY = """
import json
from actors import message_server


def handle_request(state, params):
    peer = json.loads(state)["peer"]
    return state, (message_server.request(peer, params[0]),)
"""

BAD_INIT = """
def init(state):
    raise RuntimeError("init exploded")


def handle_request(state, params):
    return state, (b"{}",)
"""

GOOD_INIT = """
import json


def init(state):
    return (json.dumps({"ready": True}).encode(),)


def handle_request(state, params):
    return state, (state,)
"""


def _counter_copy(root: Path, name: str, manifest_extra: str = "") -> Path:
    source = (EXAMPLES / "counter" / "counter.py").read_text()
    return write_actor(root, name, source, manifest_extra)


# ----------------------------------------------------------------------
# mailbox order and failures


async def test_messages_handled_one_at_a_time_in_arrival_order(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        await rt.spawn(str(write_actor(tmp_path, "log", LOG)))
        for n in range(100):  # each returns once the message is durably in the mailbox
            await rt.send(None, "log", json.dumps({"n": n}).encode())
        finished: list[Any] = []
        for n in range(100, 200):  # enqueued back to back without waiting for the store
            await rt.send_start(None, "log", json.dumps({"n": n}).encode(), None, finished.append)
        reply = await request_json(rt, "log", {})
        assert reply["seen"] == list(range(200))
        assert reply["overlap"] is False
        await flush(rt.store)
        assert finished == [None] * 100

        events = await chain_events(rt, "log")
        sends = of_type(events, "message-server/handle-send")
        assert [e["payload"]["n"] for e in sends] == list(range(200))
        assert all(e["data"]["outcome"] == "ok" and e["data"]["peer"] == "external" for e in sends)
        assert events[-1]["type"] == "message-server/handle-request"
        assert rt.store.load_mailbox() == []  # every durable mailbox row was removed once handled
        assert rt.resolve("log").handled == 201


async def test_handler_error_is_the_callers_error_and_the_actor_keeps_serving(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        await rt.spawn(str(write_actor(tmp_path, "flaky", FLAKY)))
        assert await request_json(rt, "flaky", {}) == {"n": 1}
        with pytest.raises(ActorFailed, match=r"^ValueError: bad thing 42$"):
            await rt.request(None, "flaky", b'{"fail": "bad thing 42"}')
        assert state_of(rt, "flaky") == {"n": 1}  # a failed handler does not change the state
        assert await request_json(rt, "flaky", {}) == {"n": 2}

        events = of_type(await chain_events(rt, "flaky"), "message-server/handle-request")
        assert [e["data"]["outcome"] for e in events] == ["ok", "error", "ok"]
        assert events[1]["data"]["error"] == "ValueError: bad thing 42"
        assert "error" not in events[0]["data"]
        assert rt.resolve("flaky").status == RUNNING


async def test_send_handler_error_is_recorded_and_the_mailbox_row_removed(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        await rt.spawn(str(write_actor(tmp_path, "flaky", FLAKY)))
        await rt.send(None, "flaky", b'{"fail": "cannot take this"}')  # accepted: the failure is the actor's
        await rt.send(None, "flaky", b"{}")
        assert await request_json(rt, "flaky", {}) == {"n": 2}
        events = of_type(await chain_events(rt, "flaky"), "message-server/handle-send")
        assert [e["data"]["outcome"] for e in events] == ["error", "ok"]
        assert events[0]["data"]["error"] == "ValueError: cannot take this"
        assert rt.store.load_mailbox() == []


async def test_missing_handlers(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        await rt.spawn(str(write_actor(tmp_path, "sendonly", SEND_ONLY)))
        await rt.spawn(str(write_actor(tmp_path, "requestonly", REQUEST_ONLY)))
        with pytest.raises(ActorFailed, match=r"^actor sendonly does not handle requests$"):
            await rt.request(None, "sendonly", b"{}")
        # a send that could never be handled is refused at once, not accepted and failed later
        with pytest.raises(ActorFailed, match=r"^actor requestonly has no handle_send$"):
            await rt.send(None, "requestonly", b"{}")
        assert await rt.request(None, "requestonly", b"{}") == b"{}"
        assert of_type(await chain_events(rt, "requestonly"), "message-server/handle-send") == []
        assert [m for m in rt.store.load_mailbox() if m.actor == rt.resolve("requestonly").id] == []
        events = of_type(await chain_events(rt, "sendonly"), "message-server/handle-request")
        assert events[0]["data"]["error"] == "actor sendonly does not handle requests"


async def test_handler_returning_the_wrong_shape_crashes_the_actor(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        flaky = await rt.spawn(str(write_actor(tmp_path, "flaky", FLAKY)))
        crash = r"handle_request crashed: handle_request must return \(new_state, \(reply,\)\), got b'\{\}'"
        with pytest.raises(ActorFailed, match=rf"^actor flaky {crash}$"):
            await rt.request(None, "flaky", b'{"shape": true}')
        assert flaky.status == FAILED
        with pytest.raises(ActorFailed, match=rf"^actor flaky has failed: {crash}$"):
            await rt.request(None, "flaky", b"{}")
        events = await chain_events(rt, "flaky")
        # a crashed handling changed nothing: only the crash is recorded, naming the handler
        assert [e["type"] for e in events][-2:] == ["runtime/spawn", "runtime/crash"]
        assert events[-1]["data"]["handler"] == "handle_request"
        assert events[-1]["data"]["reason"].startswith("handle_request crashed: ")


async def test_on_failure_restart_keeps_the_actor_serving(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        flaky = await rt.spawn(str(write_actor(tmp_path, "flaky", FLAKY, 'restart = "on-failure"\n')))
        assert await request_json(rt, "flaky", {}) == {"n": 1}
        with pytest.raises(ActorFailed, match="handle_request crashed"):
            await rt.request(None, "flaky", b'{"shape": true}')
        assert flaky.status == RUNNING
        assert await request_json(rt, "flaky", {}) == {"n": 2}  # the state survives the restart
        types = [e["type"] for e in await chain_events(rt, "flaky")]
        assert types.count("runtime/crash") == 1 and types.count("runtime/restart") == 1


async def test_unknown_actor_and_bad_timeout(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        with pytest.raises(NotFound, match="unknown actor 'nobody'"):
            await rt.request(None, "nobody", b"{}")
        with pytest.raises(NotFound, match="unknown actor 'nobody'"):
            await rt.send(None, "nobody", b"{}")
        await rt.spawn(example("counter"))
        with pytest.raises(BadInput, match="timeout must be a positive number"):
            await rt.request(None, "counter", b'{"type": "get"}', timeout=-1)


# ----------------------------------------------------------------------
# actor to actor


async def test_actor_to_actor_request_greeter_and_names(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        names = await rt.spawn(example("names"))
        greeter = await rt.spawn(example("greeter"))
        assert await request_json(rt, "greeter", {"type": "greet"}) == {"greeting": "Hello, Ada and Grace!"}
        await rt.send(None, "names", b'{"type": "add", "name": "Linus"}')
        assert await request_json(rt, "greeter", {"type": "greet"}) == {
            "greeting": "Hello, Ada, Grace and Linus!"
        }

        g_events = await chain_events(rt, "greeter")
        asked = of_type(g_events, "message-server/request")
        assert len(asked) == 2
        assert asked[0]["data"]["peer"] == names.id and asked[0]["data"]["peer_name"] == "names"
        assert asked[0]["data"]["outcome"] == "ok"
        assert asked[0]["payload"] == {"type": "get"}
        # the outgoing request is recorded before the handling event that made it
        types = [e["type"] for e in g_events]
        assert types.index("message-server/request") < types.index("message-server/handle-request")

        handled = of_type(await chain_events(rt, "names"), "message-server/handle-request")
        assert [e["data"]["peer"] for e in handled] == [greeter.id, greeter.id]
        assert handled[0]["data"]["peer_name"] == "greeter"
        assert rt.waiting_on == {}


async def test_handler_level_send_to_another_actor(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        counter = await rt.spawn(example("counter"))
        fwd = await rt.spawn(str(write_actor(tmp_path, "fwd", FORWARDER)), state=b'{"to": "counter"}')
        for _ in range(3):
            assert await request_json(rt, "fwd", {"type": "increment", "amount": 2}) == {"forwarded": True}
        # fwd's send returned only once the message was in counter's mailbox, so this request comes after
        assert await request_json(rt, "counter", {"type": "get"}) == {"count": 6}

        sent = of_type(await chain_events(rt, "fwd"), "message-server/send")
        assert len(sent) == 3
        assert sent[0]["data"]["peer"] == counter.id and sent[0]["data"]["outcome"] == "ok"
        handled = of_type(await chain_events(rt, "counter"), "message-server/handle-send")
        assert [e["data"]["peer"] for e in handled] == [fwd.id] * 3
        assert rt.store.load_mailbox() == []


async def test_a_sleeping_handler_does_not_block_another_actor(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        await rt.spawn(str(write_actor(tmp_path, "sleeper", SLEEPER)))
        await rt.spawn(example("counter"))
        replies: list[Any] = []
        async with trio.open_nursery() as nursery:

            async def slow() -> None:
                replies.append(await request_json(rt, "sleeper", {"sleep": 2}))

            nursery.start_soon(slow)
            await wait_until(lambda: rt.resolve("sleeper").current == "handle_request", what="sleeper busy")
            view = {v["name"]: v for v in rt.list_view()}
            assert view["sleeper"]["busy"]["handler"] == "handle_request"
            started = time.monotonic()
            assert await request_json(rt, "counter", {"type": "get"}) == {"count": 0}
            elapsed = time.monotonic() - started
            assert elapsed < 1.5, f"counter's request took {elapsed:.2f} s while sleeper slept"
            assert not replies  # the sleeper is really still asleep
        assert replies == [{"n": 1}]


async def test_request_timeout_and_the_discarded_reply(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        await rt.spawn(str(write_actor(tmp_path, "slow", SLEEPER)))
        with pytest.raises(Timeout, match=r"^request to slow timed out after 0.3 s$"):
            await rt.request(None, "slow", b'{"sleep": 0.8}', timeout=0.3)
        # the handler still finishes; its event records that nobody got the reply
        await wait_until(lambda: rt.resolve("slow").handled == 1, what="the slow handler to finish")
        events = of_type(await chain_events(rt, "slow"), "message-server/handle-request")
        assert len(events) == 1
        assert events[0]["data"]["outcome"] == "ok"
        assert events[0]["data"]["reply"].startswith("discarded")
        # the actor keeps serving, and its state includes the timed-out request
        assert await request_json(rt, "slow", {}) == {"n": 2}
        events = of_type(await chain_events(rt, "slow"), "message-server/handle-request")
        assert "reply" not in events[1]["data"]


async def test_a_full_mailbox_pushes_back(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        source = SLEEPER + "\ndef handle_send(state, params):\n    return (state,)\n"
        busy = await rt.spawn(str(write_actor(tmp_path, "tiny", source, "mailbox_size = 1\n")))
        replies: dict[str, Any] = {}
        async with trio.open_nursery() as nursery:

            async def ask(name: str, msg: Any) -> None:
                replies[name] = await request_json(rt, "tiny", msg)

            nursery.start_soon(ask, "slow", {"sleep": 0.8})
            await wait_until(lambda: busy.current == "handle_request", what="tiny busy")
            nursery.start_soon(ask, "queued", {})
            await wait_until(lambda: busy.mailbox_depth == 1, what="tiny's mailbox to fill")
            with pytest.raises(Busy, match=r"^mailbox full: actor tiny has 1 messages waiting$"):
                await rt.request(None, "tiny", b"{}", timeout=0.2)
            with pytest.raises(Busy, match=r"^mailbox full"):
                await rt.send(None, "tiny", b"{}", timeout=0.2)
        # handled in order (the two callers may wake in either order: trio shuffles a batch)
        assert replies == {"slow": {"n": 1}, "queued": {"n": 2}}
        assert rt.store.load_mailbox() == []  # the refused send left no durable row


async def test_request_cycle_between_two_actors_fails_fast(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        manifest = str(write_actor(tmp_path, "relay", RELAY))
        await rt.spawn(manifest, name="a", state=b'{"peer": "b"}')
        await rt.spawn(manifest, name="b", state=b'{"peer": "a"}')
        started = time.monotonic()
        # outside -> b -> a -> b: a's request to b would close the cycle
        with pytest.raises(ActorFailed, match=r"request cycle: a -> b -> a"):
            await rt.request(None, "b", b"{}")
        assert time.monotonic() - started < 3  # the default timeout is 5 s: no deadlock was waited out
        assert rt.waiting_on == {}
        a_events = await chain_events(rt, "a")
        asked = of_type(a_events, "message-server/request")
        assert asked and asked[0]["data"]["outcome"] == "error"
        assert "request cycle: a -> b -> a" in asked[0]["data"]["error"]
        # both actors keep serving
        assert rt.resolve("a").status == RUNNING and rt.resolve("b").status == RUNNING


async def test_three_actor_cycle(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        manifest = str(write_actor(tmp_path, "relay", RELAY))
        await rt.spawn(manifest, name="x", state=b'{"peer": "y"}')
        await rt.spawn(manifest, name="y", state=b'{"peer": "z"}')
        await rt.spawn(manifest, name="z", state=b'{"peer": "x"}')
        with pytest.raises(ActorFailed, match=r"request cycle: z -> x -> y -> z"):
            await rt.request(None, "x", b"{}")
        assert rt.waiting_on == {}


async def test_self_request_is_a_cycle(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        await rt.spawn(str(write_actor(tmp_path, "relay", RELAY)), name="selfish", state=b'{"peer": "selfish"}')
        started = time.monotonic()
        with pytest.raises(ActorFailed, match=r"request cycle: selfish -> selfish"):
            await rt.request(None, "selfish", b"{}")
        assert time.monotonic() - started < 3
        assert rt.waiting_on == {}


async def test_relay_without_cycle_works(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        await rt.spawn(str(write_actor(tmp_path, "relay", RELAY)), name="front", state=b'{"peer": "counter"}')
        await rt.spawn(example("counter"))
        assert await request_json(rt, "front", {"type": "get"}) == {"count": 0}


# ----------------------------------------------------------------------
# stop


async def test_stop_an_actor_whose_handler_hangs(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home", default_settings(stop_grace=0.5)) as rt:
        manifest = str(write_actor(tmp_path, "hang", SLEEPER))
        first = await rt.spawn(manifest)
        outcomes: list[BaseException] = []

        async def ask(msg: bytes) -> None:
            try:
                await rt.request(None, "hang", msg)
            except (NotFound, ActorFailed) as exc:
                outcomes.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, b'{"sleep": 3}')
            await wait_until(lambda: first.current == "handle_request", what="the hanging handler")
            nursery.start_soon(ask, b"{}")  # queued behind it
            await wait_until(lambda: first.mailbox_depth == 1, what="the queued request")
            started = time.monotonic()
            await rt.stop("hang")
            elapsed = time.monotonic() - started
        assert elapsed < 2.5, f"stop took {elapsed:.2f} s with stop_grace=0.5"
        assert first.status == STOPPED
        messages = sorted(str(e) for e in outcomes)
        assert messages == [
            "actor hang stopped before handling the message",
            "actor hang was stopped while handling the message",
        ]
        assert all(isinstance(e, NotFound) for e in outcomes)
        assert "hang" not in rt.names
        assert [v["name"] for v in rt.list_view()] == []
        assert [v["status"] for v in rt.list_view(include_stopped=True)] == [STOPPED]
        events = await chain_events(rt, first.id)
        assert events[-1]["type"] == "runtime/stop"
        with pytest.raises(NotFound, match="actor hang is stopped"):
            await rt.request(None, first.id, b"{}")
        with pytest.raises(NotFound, match="already stopped"):
            await rt.stop(first.id)
        # the name is free again
        second = await rt.spawn(manifest)
        assert second.id != first.id
        assert await request_json(rt, "hang", {}) == {"n": 1}


# ----------------------------------------------------------------------
# spawn errors


async def test_spawn_errors(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        missing = tmp_path / "nowhere" / "manifest.toml"
        with pytest.raises(BadInput, match=r"manifest .*nowhere/manifest.toml does not exist"):
            await rt.spawn(str(missing))

        bad_toml = tmp_path / "bad.toml"
        bad_toml.write_text('name = "x"\ncomponent = \n')
        with pytest.raises(BadInput, match=r"manifest .*bad.toml is not valid TOML"):
            await rt.spawn(str(bad_toml))

        unknown = write_actor(tmp_path, "weird", SEND_ONLY, '[[handlers]]\ntype = "http-server"\n')
        with pytest.raises(BadInput, match=r"unknown handler type 'http-server' \(known: message-server\)"):
            await rt.spawn(str(unknown))

        broken = write_actor(tmp_path, "broken", "def handle_send(state, params)\n    return (state,)\n")
        with pytest.raises(ActorFailed, match=r"^actor broken failed to start: "):
            await rt.spawn(str(broken))
        assert rt.resolve("broken").status == FAILED

        counter = example("counter")
        first = await rt.spawn(counter)
        with pytest.raises(BadInput, match=rf"an actor named 'counter' is already running \(id {first.id}\)"):
            await rt.spawn(counter)
        with pytest.raises(BadInput, match=r"invalid actor name '9lives'"):
            await rt.spawn(counter, name="9lives")
        with pytest.raises(BadInput, match=r"initial state is not valid JSON"):
            await rt.spawn(counter, name="counter2", state=b"{not json")
        assert "counter2" not in rt.names
        # the same manifest under another name, with an explicit state
        other = await rt.spawn(counter, name="counter2", state=b'{"count": 41}')
        await rt.send(None, "counter2", b'{"type": "increment"}')
        assert await request_json(rt, "counter2", {"type": "get"}) == {"count": 42}
        running = sorted(v["name"] for v in rt.list_view() if v["status"] == RUNNING)
        assert running == ["counter", "counter2"]
        assert {first.id, other.id} == {a.id for a in rt.actors.values() if a.status == RUNNING}


async def test_init_that_raises_fails_the_spawn_and_frees_the_name(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        bad = write_actor(tmp_path, "starter", BAD_INIT)
        with pytest.raises(ActorFailed, match=r"^actor starter failed to start: RuntimeError: init exploded$"):
            await rt.spawn(str(bad))
        failed = rt.resolve("starter")
        assert failed.status == FAILED
        with pytest.raises(ActorFailed, match="actor starter has failed: failed to start: RuntimeError: init exploded"):
            await rt.request(None, "starter", b"{}")
        events = await chain_events(rt, failed.id)
        assert [e["type"] for e in events] == ["runtime/spawn"]
        assert events[0]["data"]["outcome"] == "error"
        assert events[0]["data"]["error"] == "failed to start: RuntimeError: init exploded"

        # the name is free again for a working actor
        good = write_actor(tmp_path / "v2", "starter", GOOD_INIT)
        actor = await rt.spawn(str(good))
        assert actor.id != failed.id
        assert rt.resolve("starter") is actor
        assert await request_json(rt, "starter", {}) == {"ready": True}
        events = await chain_events(rt, actor.id)
        assert [e["type"] for e in events] == ["runtime/spawn", "message-server/handle-request"]
        assert events[0]["parent_hash"] is None
        assert events[0]["data"]["name"] == "starter"
        assert "outcome" not in events[0]["data"] or events[0]["data"]["outcome"] == "ok"


# ----------------------------------------------------------------------
# restore


def _verify(store: Store, actor_id: str) -> chain.Verdict:
    verdict = chain.verify(store.iter_events(actor_id), actor=actor_id)
    assert verdict.ok, verdict
    assert verdict.checked == store.max_seq(actor_id)
    return verdict


async def _populate(rt: Any, tmp_path: Path) -> dict[str, Any]:
    counter = await rt.spawn(example("counter"))
    names = await rt.spawn(example("names"))
    for amount in (1, 2, 3):
        await rt.send(None, "counter", json.dumps({"type": "increment", "amount": amount}).encode())
    await rt.send(None, "names", b'{"type": "add", "name": "Edsger"}')
    assert await request_json(rt, "counter", {"type": "get"}) == {"count": 6}
    assert await request_json(rt, "names", {"type": "get"}) == {"names": ["Ada", "Grace", "Edsger"]}
    await flush(rt.store)
    return {a.id: (a.name, a.state, a.head, a.handled) for a in (counter, names)}


async def _check_restored(rt: Any, before: dict[str, Any]) -> None:
    assert set(rt.actors) == set(before)
    for actor_id, (name, state, head, handled) in before.items():
        actor = rt.actors[actor_id]
        assert actor.name == name
        assert actor.status == RUNNING, (actor.name, actor.status, actor.reason)
        assert actor.state == state
        assert actor.head == head
        assert actor.handled == handled
        assert rt.resolve(name) is actor
    assert await request_json(rt, "counter", {"type": "get"}) == {"count": 6}
    await rt.send(None, "names", b'{"type": "add", "name": "Barbara"}')
    assert await request_json(rt, "names", {"type": "get"}) == {"names": ["Ada", "Grace", "Edsger", "Barbara"]}
    for actor_id, (_name, _state, head, _handled) in before.items():
        events = await chain_events(rt, actor_id)
        first_new = events[head.seq]  # seq head.seq + 1
        assert first_new["seq"] == head.seq + 1
        assert first_new["parent_hash"] == head.hash.hex()
        _verify(rt.store, actor_id)


async def test_restore_after_a_crash(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with hosted_runtime(home, shutdown=False) as rt:  # no shutdown: like SIGKILL
        before = await _populate(rt, tmp_path)
    async with hosted_runtime(home) as rt:
        await _check_restored(rt, before)


async def test_restore_after_a_clean_shutdown(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with hosted_runtime(home) as rt:  # exits through Runtime.shutdown()
        before = await _populate(rt, tmp_path)
    async with hosted_runtime(home) as rt:
        await _check_restored(rt, before)


async def test_stopped_actors_stay_stopped_after_restore(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with hosted_runtime(home, shutdown=False) as rt:
        old = await rt.spawn(example("counter"))
        await rt.stop("counter")
    async with hosted_runtime(home) as rt:
        assert rt.actors[old.id].status == STOPPED
        assert "counter" not in rt.names
        new = await rt.spawn(example("counter"))
        assert new.id != old.id
        _verify(rt.store, old.id)


async def test_durable_mailbox_row_is_handled_exactly_once_after_restore(tmp_path: Path) -> None:
    home = tmp_path / "home"
    async with hosted_runtime(home, shutdown=False) as rt:
        counter = await rt.spawn(example("counter"))
        assert await request_json(rt, "counter", {"type": "get"}) == {"count": 0}
    # a message that was accepted (stored in the mailbox) but never handled before the crash
    store = Store(home)
    store.start(trio.lowlevel.current_trio_token().run_sync_soon)
    try:
        await flush(store, [MailboxPut(7, counter.id, "external", b'{"type": "increment", "amount": 5}')])
    finally:
        store.close()

    async with hosted_runtime(home, shutdown=False) as rt:
        assert await request_json(rt, "counter", {"type": "get"}) == {"count": 5}
        events = of_type(await chain_events(rt, "counter"), "message-server/handle-send")
        assert len(events) == 1
        assert events[0]["payload"] == {"type": "increment", "amount": 5}
        assert events[0]["data"]["peer"] == "external"
        assert rt.store.load_mailbox() == []
        # new sends get fresh mailbox ids and work as usual
        await rt.send(None, "counter", b'{"type": "increment"}')
        assert await request_json(rt, "counter", {"type": "get"}) == {"count": 6}
        assert rt.store.load_mailbox() == []

    async with hosted_runtime(home) as rt:  # and it is not handled a second time
        assert await request_json(rt, "counter", {"type": "get"}) == {"count": 6}
        events = of_type(await chain_events(rt, "counter"), "message-server/handle-send")
        assert len(events) == 2
        _verify(rt.store, counter.id)

    with sqlite3.connect(home / DB_NAME) as db:
        assert db.execute("SELECT count(*) FROM mailbox").fetchone() == (0,)
    db.close()


async def test_restore_with_more_pending_mail_than_the_mailbox_holds(tmp_path: Path) -> None:
    # With mailbox_size N, up to N + 1 durable rows can be pending at a crash:
    # N queued in the mailbox plus the one being handled.  All must be handled after restore.
    home = tmp_path / "home"
    manifest = _counter_copy(tmp_path, "small", "mailbox_size = 2\n")
    async with hosted_runtime(home, shutdown=False) as rt:
        small = await rt.spawn(str(manifest))
    store = Store(home)
    store.start(trio.lowlevel.current_trio_token().run_sync_soon)
    try:
        await flush(store, [
            MailboxPut(i, small.id, "external", json.dumps({"type": "increment", "amount": i}).encode())
            for i in (1, 2, 3)
        ])
    finally:
        store.close()
    async with hosted_runtime(home) as rt:
        assert await request_json(rt, "small", {"type": "get"}) == {"count": 6}
        assert rt.store.load_mailbox() == []


@pytest.mark.parametrize("text", [b'{"a": 1}', b"[]", b'"\\ud83d\\ude00"', '"caf\u00e9"'.encode(), b" 3 "])
def test_json_check_accepts_utf8_json(text: bytes) -> None:
    check_json(text)


@pytest.mark.parametrize("text", [
    b"", b"not json", b"NaN", b"[Infinity]", b"\xff", b'"\\ud800"', b'{"a": "\\udc00x"}',
    '{"a": 1}'.encode("utf-16"), '{"a": 1}'.encode("utf-32-le"),
])
def test_json_check_refuses_anything_else(text: bytes) -> None:
    with pytest.raises(BadInput, match="state is not valid JSON"):
        check_json(text, "state")


STUCK_ON_FIRST = """
import json, time
def handle_send(state, params):
    if json.loads(params[0]).get("stuck"):
        time.sleep(2)
    return (state,)
"""


async def test_stop_drops_the_messages_it_did_not_handle_and_says_how_many(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home", default_settings(stop_grace=0.2)) as rt:
        await rt.spawn(str(write_actor(tmp_path, "slow", STUCK_ON_FIRST)))
        await rt.spawn(example("counter"))
        await rt.send(None, "counter", b'{"type": "increment"}')  # another actor's mail stays
        await rt.send(None, "slow", b'{"stuck": true}')
        for _ in range(4):
            await rt.send(None, "slow", b"{}")
        await wait_until(lambda: rt.resolve("slow").current == "handle_send", what="slow busy")
        slow = rt.resolve("slow")
        await rt.stop("slow")
        assert all(row.actor != slow.id for row in rt.store.load_mailbox())
        (stop,) = of_type(await chain_events(rt, slow.id), "runtime/stop")
        assert stop["data"] == {"reason": "stopped", "dropped": 5} and slow.dropped == 5
        assert await request_json(rt, "counter", {"type": "get"}) == {"count": 1}


async def test_a_worker_that_answers_a_run_without_every_result_is_killed_not_asked_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run answered with fewer results than messages (and no crash) is a worker breaking the
    link protocol: it is killed and the actor's crash handling applies, instead of the batch
    being run again and again."""
    from daemon import workerlink

    real_start = workerlink.Worker.start_call
    lying: list[bool] = [True]

    async def start_call(self: workerlink.Worker, op: str, args: Any, pushes: Any = None,
                         deadline: float = math.inf) -> Any:
        if op == "run" and lying[0]:
            lying[0] = False
            pending = workerlink._Pending(result={"count": 0})  # answered at once, no "done" push at all
            pending.done.set()
            return pending
        return await real_start(self, op, args, pushes=pushes, deadline=deadline)

    monkeypatch.setattr(workerlink.Worker, "start_call", start_call)
    async with hosted_runtime(tmp_path / "home") as rt:
        await rt.spawn(str(write_actor(tmp_path, "flaky", FLAKY, 'restart = "on-failure"\n')))
        with pytest.raises(ActorFailed, match="answered a run with 0 results for 1 messages"):
            await rt.request(None, "flaky", b"{}")
        assert await request_json(rt, "flaky", {}) == {"n": 1}  # a new worker, and it serves
        crashes = [e for e in await chain_events(rt, "flaky") if e["type"] == "runtime/crash"]
        assert len(crashes) == 1 and "answered a run with 0 results" in crashes[0]["data"]["reason"]


async def test_a_worker_that_stops_reading_its_link_is_killed_at_the_handler_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found in review: with the run call sent outside the handler's deadline, a worker that
    no longer read its link (its main thread starved) left the actor busy forever."""
    from daemon import workerlink, wire

    real_send = workerlink.Worker.send
    stuck: list[bool] = [True]

    async def send(self: workerlink.Worker, frame: Any, deadline: float = math.inf) -> None:
        if isinstance(frame, wire.Call) and frame.op == "run" and stuck[0]:
            stuck[0] = False
            await trio.sleep_until(deadline)  # the socket takes nothing (Worker.send's contract:
            raise trio.TooSlowError           # tests/test_workerpool_races.py)
        await real_send(self, frame, deadline)

    monkeypatch.setattr(workerlink.Worker, "send", send)
    async with hosted_runtime(tmp_path / "home") as rt:
        flaky = await rt.spawn(str(write_actor(tmp_path, "flaky", FLAKY, 'restart = "on-failure"\nhandler_timeout = 0.5\n')))
        await wait_until(lambda: flaky.worker is not None, what="flaky placed")
        stuck_worker = flaky.worker
        with trio.fail_after(30):
            # its handler never ran: a shared worker is killed and the message runs on another, unblamed
            assert await request_json(rt, "flaky", {}) == {"n": 1}
        assert stuck_worker is not None and not stuck_worker.alive
        assert "took no run call for 0.5 s" in (stuck_worker.kill_reason or "")
        assert [e for e in await chain_events(rt, "flaky") if e["type"] == "runtime/crash"] == []


FLOOD = """
import json
from actors import message_server

def handle_request(state, params):
    order = json.loads(params[0])
    errors = []
    for i in range(order["n"]):
        try:
            message_server.send(order["to"], json.dumps({"i": i, "sleep": order["sleep"]}).encode(),
                                timeout=order.get("timeout"))
        except message_server.MessageServerError as exc:
            errors.append(str(exc))
    return state, (json.dumps(errors).encode(),)
"""

SLOW_SINK = """
import json, time

def handle_send(state, params):
    msg = json.loads(params[0])
    time.sleep(msg["sleep"])
    seen = json.loads(state or b"[]")
    seen.append(msg["i"])
    return (json.dumps(seen).encode(),)

def handle_request(state, params):
    return state, (state or b"[]",)
"""


async def _busy_sink(rt: Any, tmp_path: Path, sleep: float) -> None:
    """``sink`` (mailbox of 2) handling one slow message with one more queued: half full."""
    sink = await rt.spawn(str(write_actor(tmp_path, "sink", SLOW_SINK, "mailbox_size = 2\n")))
    await rt.spawn(str(write_actor(tmp_path, "flood", FLOOD)))
    for i in (100, 101):
        await rt.send(None, "sink", json.dumps({"i": i, "sleep": sleep}).encode())
    await wait_until(lambda: sink.current == "handle_send" and sink.mailbox_depth == 1, what="sink busy")


async def test_a_handlers_sends_wait_for_room_in_a_crowded_mailbox_and_all_arrive_in_order(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        await _busy_sink(rt, tmp_path, 1.5)
        with trio.fail_after(60):
            start = trio.current_time()
            errors = await request_json(rt, "flood", {"to": "sink", "n": 6, "sleep": 0.01, "timeout": 30})
            assert errors == []
            assert trio.current_time() - start >= 0.5  # it waited for the sink's first message
            assert await request_json(rt, "sink", {}) == [100, 101, *range(6)]


async def test_a_handlers_send_to_a_mailbox_that_stays_crowded_fails_busy_at_its_timeout(tmp_path: Path) -> None:
    async with hosted_runtime(tmp_path / "home") as rt:
        await _busy_sink(rt, tmp_path, 3)
        with trio.fail_after(60):
            start = trio.current_time()
            errors = await request_json(rt, "flood", {"to": "sink", "n": 3, "sleep": 0, "timeout": 0.2})
            assert errors == ["mailbox full: actor sink has 1 messages waiting"] * 3
            assert 0.5 <= trio.current_time() - start < 3


ASK_THEN_SPIN = """
import json
from actors import message_server

def handle_request(state, params):
    message_server.request("sleeper", json.dumps({"sleep": 1.2}).encode())
    while True:  # then spin: stopped at the handler's time left
        pass
"""


async def test_a_host_call_longer_than_the_handler_timeout_does_not_count_but_the_time_after_it_does(
        tmp_path: Path) -> None:
    """The time a handler waits in a host call is not its own (the limit is paused), and after
    the call its limit runs again: a spin after a wait longer than the limit is still stopped."""
    async with hosted_runtime(tmp_path / "home") as rt:
        await rt.spawn(str(write_actor(tmp_path, "sleeper", SLEEPER)))
        await rt.spawn(str(write_actor(tmp_path, "asker", ASK_THEN_SPIN, "handler_timeout = 0.5\n")))
        with trio.fail_after(30):
            start = trio.current_time()
            with pytest.raises(ActorFailed, match="ran longer than its handler_timeout of 0.5 s"):
                await rt.request(None, "asker", b"{}")
            assert 1.2 <= trio.current_time() - start < 10  # 1.2 s waiting (not counted), then 0.5 s spinning


async def test_a_handlers_sends_to_an_idle_actor_with_a_mailbox_of_one_go_through(tmp_path: Path) -> None:
    """Found in review: "half full" of a mailbox of one was 0 messages, so every handler's
    send to such an actor waited out its timeout and failed Busy, the mailbox empty."""
    async with hosted_runtime(tmp_path / "home") as rt:
        await rt.spawn(str(write_actor(tmp_path, "sink", SLOW_SINK, "mailbox_size = 1\n")))
        await rt.spawn(str(write_actor(tmp_path, "flood", FLOOD)))
        with trio.fail_after(60):
            errors = await request_json(rt, "flood", {"to": "sink", "n": 3, "sleep": 0, "timeout": 5})
            assert errors == []
            assert await request_json(rt, "sink", {}) == [0, 1, 2]
