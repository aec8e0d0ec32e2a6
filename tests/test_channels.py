"""Channels in-process: actor-to-actor and client ends, open/accept/reject, ordering, closing, chain events."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from daemon.channels import ClientEnd
from daemon.errors import ActorFailed, BadInput, NotFound, Timeout
from daemon.runtime import Runtime
from tests.helpers_runtime import chain_events, hosted_runtime, of_type, request_json, wait_until, write_actor

CHANNEL_ID = re.compile(r"^ch_[0-9a-f]{32}$")

# One module for every channel-speaking test actor.  Its state records what it saw:
#   opens:  [{"channel", "opener", "msg"}]  (from current_channel() in handle_channel_open)
#   msgs:   [[channel, message]]            (handle_channel_message)
#   closes: [channel]                       (handle_channel_close)
# With {"echo": true} in the state it echoes every channel message back as {"echo": message}.
PEER = """
import json, time
from actors import message_server as ms


def _load(state):
    s = json.loads(state) if state else {}
    for key in ("opens", "msgs", "closes"):
        s.setdefault(key, [])
    return s


def _dump(s):
    return json.dumps(s).encode()


def handle_request(state, params):
    s = _load(state)
    m = json.loads(params[0])
    op = m["op"]
    out = None
    if op == "open":
        ch = ms.open_channel(m["to"], json.dumps(m.get("initial", {})).encode(), m.get("timeout"))
        for x in m.get("send", []):
            ms.send_on_channel(ch, json.dumps(x).encode())
        if m.get("close"):
            ms.close_channel(ch)
        out = {"channel": ch}
    elif op == "send":
        for x in m["msgs"]:
            ms.send_on_channel(m["ch"], json.dumps(x).encode())
    elif op == "close":
        ms.close_channel(m["ch"])
    elif op == "get":
        out = s
    return _dump(s), (json.dumps(out).encode(),)


def handle_channel_open(state, params):
    s = _load(state)
    info = ms.current_channel()
    m = json.loads(params[0])
    s["opens"].append({"channel": info.channel_id, "opener": info.opener, "msg": m})
    if "sleep" in m:
        time.sleep(m["sleep"])
    if "reject" in m:
        return _dump(s), (ms.ChannelAccept(False, m["reject"].encode()),)
    if "greet" in m:
        ms.send_on_channel(info.channel_id, json.dumps(m["greet"]).encode())
    return _dump(s), (ms.ChannelAccept(True),)


def handle_channel_message(state, params):
    ch, msg = params
    s = _load(state)
    m = json.loads(msg)
    s["msgs"].append([ch, m])
    if s.get("echo"):
        ms.send_on_channel(ch, json.dumps({"echo": m}).encode())
    return (_dump(s),)


def handle_channel_close(state, params):
    (ch,) = params
    s = _load(state)
    s["closes"].append(ch)
    return (_dump(s),)
"""

# no channel handlers at all
MUTE = """
def handle_request(state, params):
    return state, (b"null",)
"""


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[Runtime]:
    async with hosted_runtime(tmp_path / "home") as runtime:
        peer = str(write_actor(tmp_path, "peer", PEER))
        await runtime.spawn(peer, name="alice")
        await runtime.spawn(peer, name="bob", state=b'{"echo": true}')
        await runtime.spawn(peer, name="carol")
        await runtime.spawn(str(write_actor(tmp_path, "mute", MUTE)))
        yield runtime


async def get(rt: Runtime, name: str) -> dict[str, Any]:
    """The actor's recorded state, read through its mailbox (so after everything queued before)."""
    return await request_json(rt, name, {"op": "get"})


async def open_channel(rt: Runtime, opener: str, to: str, **extra: Any) -> str:
    reply = await request_json(rt, opener, {"op": "open", "to": to, **extra})
    return reply["channel"]


class Pushes:
    """A client end's connection: records every push."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []
        self.end = ClientEnd(lambda event, data: self.items.append((event, data)))

    def of(self, event: str) -> list[dict[str, Any]]:
        return [data for ev, data in self.items if ev == event]

    def messages(self) -> list[Any]:
        return [json.loads(d["msg"]) for d in self.of("channel-message")]


async def client_open(rt: Runtime, pushes: Pushes, to: str, msg: Any = None) -> str:
    ch = await rt.channels.open_from_client(pushes.end, to, json.dumps(msg or {}).encode(), None)
    rt.channels.release(ch)
    return ch.id


# ----------------------------------------------------------------------
# open, accept, reject


async def test_actor_to_actor_channel_accept_and_echo(rt: Runtime) -> None:
    alice, bob = rt.resolve("alice"), rt.resolve("bob")
    ch = await open_channel(rt, "alice", "bob", initial={"hi": 1}, send=[{"n": 0}, {"n": 1}])
    assert CHANNEL_ID.match(ch)
    b = await get(rt, "bob")
    assert b["opens"] == [{"channel": ch, "opener": alice.id, "msg": {"hi": 1}}]
    assert b["msgs"] == [[ch, {"n": 0}], [ch, {"n": 1}]]
    a = await get(rt, "alice")  # bob's echoes were queued in alice's mailbox before this request
    assert a["msgs"] == [[ch, {"echo": {"n": 0}}], [ch, {"echo": {"n": 1}}]]
    assert a["closes"] == [] and b["closes"] == []
    views = rt.channels.views()
    assert len(views) == 1
    view = views[0]
    assert (view["id"], view["opener"], view["opener_name"], view["target"], view["target_name"]) == (
        ch, alice.id, "alice", bob.id, "bob")
    assert (view["from_opener"], view["from_target"]) == (2, 2)
    assert rt.channels.count_for(alice) == 1 and rt.channels.count_for(rt.resolve("carol")) == 0
    assert rt.waiting_on == {}


async def test_reject_with_a_message(rt: Runtime) -> None:
    with pytest.raises(ActorFailed, match=r"channel rejected by bob: go away"):
        await open_channel(rt, "alice", "bob", initial={"reject": "go away"})
    b = await get(rt, "bob")
    assert len(b["opens"]) == 1
    rejected = b["opens"][0]["channel"]
    assert rt.channels.views() == []
    with pytest.raises(ActorFailed, match=rf"^channel {rejected} is closed$"):
        rt.channels.get(rejected)
    assert rt.waiting_on == {}
    # a client opener gets the same error
    pushes = Pushes()
    with pytest.raises(ActorFailed, match=r"^channel rejected by bob: not you either$"):
        await rt.channels.open_from_client(pushes.end, "bob", b'{"reject": "not you either"}', None)
    assert pushes.items == []


async def test_a_target_without_handle_channel_open_rejects(rt: Runtime) -> None:
    with pytest.raises(ActorFailed, match=r"channel rejected by mute: actor does not accept channels"):
        await open_channel(rt, "alice", "mute")
    pushes = Pushes()
    with pytest.raises(ActorFailed, match=r"^channel rejected by mute: actor does not accept channels$"):
        await rt.channels.open_from_client(pushes.end, "mute", b"{}", None)
    events = of_type(await chain_events(rt, "mute"), "message-server/handle-channel-open")
    assert [e["data"]["accepted"] for e in events] == [False, False]


async def test_opening_to_an_unknown_actor(rt: Runtime) -> None:
    with pytest.raises(ActorFailed, match=r"unknown actor 'nobody'"):
        await open_channel(rt, "alice", "nobody")
    with pytest.raises(NotFound, match=r"unknown actor 'nobody'"):
        await rt.channels.open_from_client(Pushes().end, "nobody", b"{}", None)


async def test_opening_a_channel_to_oneself_is_a_cycle(rt: Runtime) -> None:
    with pytest.raises(ActorFailed, match=r"request cycle: alice -> alice"):
        await open_channel(rt, "alice", "alice")
    assert rt.channels.views() == [] and rt.waiting_on == {}


async def test_an_open_the_opener_gave_up_on_is_closed_for_the_target(rt: Runtime) -> None:
    # The client's open times out while bob is still deciding; bob then accepts.  The
    # channel never opens, so bob (which recorded it as open) must be told it closed.
    pushes = Pushes()
    with pytest.raises(Timeout, match=r"^opening a channel to bob timed out"):
        await rt.channels.open_from_client(pushes.end, "bob", b'{"sleep": 0.8}', 0.3)
    # the close notice follows the decision asynchronously: wait for open and close to be handled
    await wait_until(lambda: rt.resolve("bob").handled >= 2, what="bob's handle_channel_open and close")
    b = await get(rt, "bob")
    (opened,) = b["opens"]
    assert rt.channels.views() == []
    with pytest.raises(ActorFailed, match="is closed"):
        rt.channels.get(opened["channel"])
    assert b["closes"] == [opened["channel"]], "bob accepted a channel that silently vanished"
    assert pushes.items == []


async def test_an_open_timeout_names_the_timeout_given(rt: Runtime) -> None:
    # like "request to X timed out after 0.3 s": the limit the caller set, not the time left
    with pytest.raises(Timeout, match=r"^opening a channel to bob timed out after 0.3 s$"):
        await rt.channels.open_from_client(Pushes().end, "bob", b'{"sleep": 0.6}', 0.3)
    with pytest.raises(ActorFailed, match=r"opening a channel to bob timed out after 0.3 s"):
        await open_channel(rt, "alice", "bob", initial={"sleep": 0.6}, timeout=0.3)
    events = of_type(await chain_events(rt, "alice"), "message-server/open-channel")
    assert [e["data"]["outcome"] for e in events] == ["timeout"]
    await wait_until(lambda: rt.resolve("bob").handled >= 2, what="bob to finish deciding")


async def test_current_channel_inside_handle_channel_open(rt: Runtime) -> None:
    alice = rt.resolve("alice")
    from_actor = await open_channel(rt, "alice", "carol", initial={"who": "alice"})
    pushes = Pushes()
    from_client = await client_open(rt, pushes, "carol", {"who": "terminal"})
    c = await get(rt, "carol")
    assert c["opens"] == [
        {"channel": from_actor, "opener": alice.id, "msg": {"who": "alice"}},
        {"channel": from_client, "opener": "external", "msg": {"who": "terminal"}},
    ]


async def test_the_target_may_send_first_during_open(rt: Runtime) -> None:
    ch = await open_channel(rt, "alice", "bob", initial={"greet": {"hello": "from bob"}}, send=[{"n": 0}])
    await get(rt, "bob")  # bob has handled {"n": 0}, so its echo is queued at alice
    a = await get(rt, "alice")
    assert a["msgs"] == [[ch, {"hello": "from bob"}], [ch, {"echo": {"n": 0}}]]


async def test_a_client_gets_what_the_target_sent_during_open_only_after_release(rt: Runtime) -> None:
    pushes = Pushes()
    ch = await rt.channels.open_from_client(pushes.end, "bob", b'{"greet": {"hello": "terminal"}}', None)
    assert pushes.items == []  # held back until the opener has its reply
    rt.channels.release(ch)
    assert pushes.items == [("channel-message", {"channel": ch.id, "msg": b'{"hello": "terminal"}'})]
    await rt.channels.send(pushes.end, ch.id, b'{"n": 1}')
    await wait_until(lambda: len(pushes.of("channel-message")) == 2, what="the echo")
    assert pushes.messages() == [{"hello": "terminal"}, {"echo": {"n": 1}}]


async def test_one_hundred_messages_keep_their_order(rt: Runtime) -> None:
    sent = [{"n": i} for i in range(100)]
    ch = await open_channel(rt, "alice", "bob", send=sent)
    b = await get(rt, "bob")
    assert b["msgs"] == [[ch, m] for m in sent]
    a = await get(rt, "alice")
    assert a["msgs"] == [[ch, {"echo": m}] for m in sent]
    # and from a client end, both directions
    pushes = Pushes()
    cid = await client_open(rt, pushes, "bob")
    for m in sent:
        await rt.channels.send(pushes.end, cid, json.dumps(m).encode())
    await wait_until(lambda: len(pushes.of("channel-message")) == 100, what="100 echoes")
    assert pushes.messages() == [{"echo": m} for m in sent]
    assert [m for c, m in (await get(rt, "bob"))["msgs"] if c == cid] == sent


# ----------------------------------------------------------------------
# closing


async def test_close_by_the_opener_notifies_the_target_once(rt: Runtime) -> None:
    ch = await open_channel(rt, "alice", "bob")
    await request_json(rt, "alice", {"op": "close", "ch": ch})
    b = await get(rt, "bob")
    assert b["closes"] == [ch]
    # the other end cannot close it again, nor send on it
    with pytest.raises(ActorFailed, match=rf"channel {ch} is closed"):
        await request_json(rt, "bob", {"op": "close", "ch": ch})
    with pytest.raises(ActorFailed, match=rf"channel {ch} is closed"):
        await request_json(rt, "bob", {"op": "send", "ch": ch, "msgs": [1]})
    assert (await get(rt, "bob"))["closes"] == [ch]
    assert (await get(rt, "alice"))["closes"] == []  # the closer is not notified of its own close
    assert rt.channels.views() == []


async def test_close_by_the_target_notifies_the_opener_once(rt: Runtime) -> None:
    ch = await open_channel(rt, "alice", "carol")
    await request_json(rt, "carol", {"op": "close", "ch": ch})
    assert (await get(rt, "alice"))["closes"] == [ch]
    with pytest.raises(ActorFailed, match=rf"channel {ch} is closed"):
        await request_json(rt, "alice", {"op": "close", "ch": ch})
    assert (await get(rt, "alice"))["closes"] == [ch]
    assert (await get(rt, "carol"))["closes"] == []


async def test_open_send_and_close_in_one_handler(rt: Runtime) -> None:
    ch = await open_channel(rt, "alice", "carol", send=[{"n": 1}, {"n": 2}], close=True)
    c = await get(rt, "carol")
    assert c["msgs"] == [[ch, {"n": 1}], [ch, {"n": 2}]]
    assert c["closes"] == [ch]  # after the messages, as they were sent


async def test_a_client_end_gets_messages_and_one_channel_closed_push(rt: Runtime) -> None:
    pushes = Pushes()
    ch = await client_open(rt, pushes, "bob")
    await rt.channels.send(pushes.end, ch, b'{"n": 1}')
    await wait_until(lambda: pushes.of("channel-message"), what="the echo")
    assert pushes.items == [("channel-message", {"channel": ch, "msg": b'{"echo": {"n": 1}}'})]
    await request_json(rt, "bob", {"op": "close", "ch": ch})
    assert pushes.of("channel-closed") == [{"channel": ch, "reason": "closed by bob"}]
    with pytest.raises(ActorFailed, match=rf"^channel {ch} is closed$"):
        await rt.channels.send(pushes.end, ch, b"{}")
    with pytest.raises(ActorFailed, match=rf"^channel {ch} is closed$"):
        await rt.channels.close(pushes.end, ch)
    await get(rt, "bob")
    assert len(pushes.of("channel-closed")) == 1
    assert (await get(rt, "bob"))["closes"] == []


async def test_a_client_closing_notifies_the_actor_once(rt: Runtime) -> None:
    pushes = Pushes()
    ch = await client_open(rt, pushes, "carol")
    await rt.channels.close(pushes.end, ch)
    assert (await get(rt, "carol"))["closes"] == [ch]
    assert pushes.of("channel-closed") == []


async def test_close_for_client_notifies_the_actor_ends(rt: Runtime) -> None:
    pushes, bystander = Pushes(), Pushes()
    one = await client_open(rt, pushes, "carol")
    two = await client_open(rt, pushes, "bob")
    kept = await client_open(rt, bystander, "carol")
    await rt.channels.close_for_client([pushes.end])
    assert (await get(rt, "carol"))["closes"] == [one]
    assert (await get(rt, "bob"))["closes"] == [two]
    assert pushes.of("channel-closed") == []  # the client is gone: nobody to tell
    assert [v["id"] for v in rt.channels.views()] == [kept]
    await rt.channels.close_for_client([pushes.end])  # again: nothing left, nobody notified twice
    assert (await get(rt, "carol"))["closes"] == [one]


async def test_stopping_a_participant_closes_its_channels(rt: Runtime) -> None:
    pushes = Pushes()
    between = await open_channel(rt, "alice", "bob")
    from_client = await client_open(rt, pushes, "bob")
    unrelated = await open_channel(rt, "alice", "carol")
    await rt.stop("bob")
    assert (await get(rt, "alice"))["closes"] == [between]
    assert pushes.of("channel-closed") == [{"channel": from_client, "reason": "actor bob stopped"}]
    assert [v["id"] for v in rt.channels.views()] == [unrelated]
    with pytest.raises(ActorFailed, match=rf"channel {between} is closed"):
        await request_json(rt, "alice", {"op": "send", "ch": between, "msgs": [1]})
    # stopping the opener tells the target
    await rt.stop("alice")
    assert (await get(rt, "carol"))["closes"] == [unrelated]
    assert rt.channels.views() == []


async def test_shutdown_closes_everything(rt: Runtime) -> None:
    pushes = Pushes()
    between = await open_channel(rt, "alice", "bob")
    from_client = await client_open(rt, pushes, "carol")
    await rt.shutdown()
    assert rt.channels.channels == {}
    assert pushes.of("channel-closed") == [{"channel": from_client, "reason": "the daemon is shutting down"}]
    # the actor ends handled their close before they stopped
    closes = {name: json.loads(rt.resolve(name).state or b"{}").get("closes") for name in ("alice", "bob", "carol")}
    assert closes == {"alice": [between], "bob": [between], "carol": [from_client]}
    assert all(a.status == "stopped" for a in rt.actors.values())


# ----------------------------------------------------------------------
# errors and ids


async def test_unknown_and_closed_channels_are_different_errors(rt: Runtime) -> None:
    pushes = Pushes()
    unknown = "ch_" + "0" * 32
    with pytest.raises(NotFound, match=rf"^unknown channel {unknown}$"):
        await rt.channels.send(pushes.end, unknown, b"{}")
    with pytest.raises(NotFound, match=rf"^unknown channel {unknown}$"):
        await rt.channels.close(pushes.end, unknown)
    with pytest.raises(ActorFailed, match=rf"unknown channel {unknown}"):  # inside a handler
        await request_json(rt, "alice", {"op": "send", "ch": unknown, "msgs": [1]})
    ch = await client_open(rt, pushes, "carol")
    await rt.channels.close(pushes.end, ch)
    with pytest.raises(ActorFailed, match=rf"^channel {ch} is closed$"):
        await rt.channels.send(pushes.end, ch, b"{}")
    with pytest.raises(NotFound):
        rt.channels.get("ch_" + "1" * 32)


async def test_a_non_participant_cannot_use_a_channel(rt: Runtime) -> None:
    ch = await open_channel(rt, "alice", "bob")
    carol = rt.resolve("carol")
    with pytest.raises(ActorFailed, match=rf"channel {ch} does not belong to carol"):
        await request_json(rt, "carol", {"op": "send", "ch": ch, "msgs": [1]})
    with pytest.raises(ActorFailed, match=rf"channel {ch} does not belong to carol"):
        await request_json(rt, "carol", {"op": "close", "ch": ch})
    with pytest.raises(BadInput, match=rf"^channel {ch} does not belong to carol$"):
        await rt.channels.send(carol, ch, b"{}")
    stranger = Pushes()
    with pytest.raises(BadInput, match=rf"^channel {ch} does not belong to external$"):
        await rt.channels.send(stranger.end, ch, b"{}")
    with pytest.raises(BadInput, match=rf"^channel {ch} does not belong to external$"):
        await rt.channels.close(stranger.end, ch)
    # nothing was delivered and the channel is still open
    assert (await get(rt, "bob"))["msgs"] == []
    assert [v["id"] for v in rt.channels.views()] == [ch]
    events = of_type(await chain_events(rt, "carol"), "message-server/send-on-channel")
    assert [e["data"]["outcome"] for e in events] == ["error", "error"]  # from the handler and from above
    assert all(e["data"]["error"] == f"channel {ch} does not belong to carol" for e in events)


async def test_channel_ids_are_random_and_unique(rt: Runtime) -> None:
    pushes = Pushes()
    ids = [await client_open(rt, pushes, "carol") for _ in range(20)]
    ids += [await open_channel(rt, "alice", "carol") for _ in range(5)]
    assert all(CHANNEL_ID.match(i) for i in ids)
    assert len(set(ids)) == 25
    assert sorted(v["id"] for v in rt.channels.views()) == sorted(ids)


# ----------------------------------------------------------------------
# chain events


async def test_channel_events_on_both_ends(rt: Runtime) -> None:
    alice, bob = rt.resolve("alice"), rt.resolve("bob")
    ch = await open_channel(rt, "alice", "bob", initial={"hi": 1}, send=[{"n": 1}])
    await get(rt, "bob")  # bob has echoed before alice closes
    await request_json(rt, "alice", {"op": "close", "ch": ch})
    await get(rt, "bob")
    with pytest.raises(ActorFailed):
        await open_channel(rt, "alice", "bob", initial={"reject": "no"})
    await get(rt, "bob")

    a = await chain_events(rt, "alice")
    opens = of_type(a, "message-server/open-channel")
    assert len(opens) == 2
    assert opens[0]["data"]["outcome"] == "accepted" and opens[0]["data"]["channel"] == ch
    assert opens[0]["data"]["peer"] == bob.id and opens[0]["data"]["peer_name"] == "bob"
    assert opens[0]["payload"] == {"hi": 1}
    assert opens[1]["data"]["outcome"] == "rejected"
    assert opens[1]["data"]["error"] == "channel rejected by bob: no"
    sends = of_type(a, "message-server/send-on-channel")
    assert [(e["data"]["channel"], e["data"]["peer"], e["data"]["outcome"], e["payload"]) for e in sends] == [
        (ch, bob.id, "ok", {"n": 1})]
    closes = of_type(a, "message-server/close-channel")
    assert [(e["data"]["channel"], e["data"]["peer"], e["data"]["outcome"]) for e in closes] == [(ch, bob.id, "ok")]
    received = of_type(a, "message-server/handle-channel-message")
    assert [(e["data"]["channel"], e["data"]["peer"], e["payload"]) for e in received] == [
        (ch, bob.id, {"echo": {"n": 1}})]
    assert of_type(a, "message-server/handle-channel-close") == []

    b = await chain_events(rt, "bob")
    handled_opens = of_type(b, "message-server/handle-channel-open")
    assert [(e["data"]["accepted"], e["data"]["peer"], e["data"]["peer_name"]) for e in handled_opens] == [
        (True, alice.id, "alice"), (False, alice.id, "alice")]
    assert handled_opens[0]["data"]["channel"] == ch and handled_opens[0]["data"]["outcome"] == "ok"
    messages = of_type(b, "message-server/handle-channel-message")
    assert [(e["data"]["channel"], e["data"]["peer"], e["payload"]) for e in messages] == [(ch, alice.id, {"n": 1})]
    echoes = of_type(b, "message-server/send-on-channel")
    assert [(e["data"]["channel"], e["data"]["peer"]) for e in echoes] == [(ch, alice.id)]
    handled_closes = of_type(b, "message-server/handle-channel-close")
    assert [(e["data"]["channel"], e["data"]["peer"]) for e in handled_closes] == [(ch, alice.id)]
    # bob's chain for this channel, in order (the echo is recorded while its handler runs)
    order = [e["type"] for e in b if e["data"].get("channel") == ch]
    assert order == [
        "message-server/handle-channel-open",
        "message-server/send-on-channel",
        "message-server/handle-channel-message",
        "message-server/handle-channel-close",
    ]


async def test_client_channel_events_name_the_external_peer(rt: Runtime) -> None:
    pushes = Pushes()
    ch = await client_open(rt, pushes, "bob", {"x": 1})
    await rt.channels.send(pushes.end, ch, b'{"n": 5}')
    await rt.channels.close(pushes.end, ch)
    await get(rt, "bob")
    b = await chain_events(rt, "bob")
    mine = [e for e in b if e["data"].get("channel") == ch]
    assert [e["type"] for e in mine] == [
        "message-server/handle-channel-open",
        "message-server/send-on-channel",
        "message-server/handle-channel-message",
        "message-server/handle-channel-close",
    ]
    handled = [e for e in mine if e["type"].startswith("message-server/handle-")]
    assert all(e["data"]["peer"] == "external" for e in handled)
    assert mine[0]["data"]["accepted"] is True
