"""actors.testing: the ActorHarness and FakeMessageServer, on the example actors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actors import message_server as ms
from actors.testing import ActorHarness, FakeMessageServer
from tests.helpers_runtime import EXAMPLES


def manifest(name: str) -> Path:
    return EXAMPLES / name / "manifest.toml"


# ----------------------------------------------------------------------
# counter


def test_counter_starts_from_its_init_state() -> None:
    counter = ActorHarness.from_manifest(manifest("counter"))
    assert counter.value == {"count": 0}
    assert counter.request({"type": "get"}) == {"count": 0}


def test_counter_counts() -> None:
    counter = ActorHarness.from_manifest(manifest("counter"))
    counter.send({"type": "increment", "amount": 2})
    counter.send({"type": "increment"})
    assert counter.request({"type": "get"}) == {"count": 3}
    assert counter.value == {"count": 3}
    counter.send({"type": "reset"})
    assert counter.request({"type": "get"}) == {"count": 0}
    assert counter.host.sent == [] and counter.host.requests == []


def test_counter_with_an_explicit_state_and_raw_bytes() -> None:
    counter = ActorHarness.from_manifest(manifest("counter"), state={"count": 40})
    counter.send(b'{"type": "increment", "amount": 2}')
    assert counter.request(b'{"type": "get"}') == {"count": 42}


def test_counter_handler_errors_reach_the_test_and_keep_the_state() -> None:
    counter = ActorHarness.from_manifest(manifest("counter"))
    counter.send({"type": "increment"})
    with pytest.raises(ValueError, match="amount must be an integer"):
        counter.send({"type": "increment", "amount": "lots"})
    with pytest.raises(ValueError, match="unknown message type 'explode'"):
        counter.send({"type": "explode"})
    with pytest.raises(ValueError, match="unknown request type 'count'"):
        counter.request({"type": "count"})
    assert counter.value == {"count": 1}


def test_counter_from_file_without_state_runs_init() -> None:
    counter = ActorHarness.from_file(EXAMPLES / "counter" / "counter.py")
    assert counter.value == {"count": 0}  # init filled in the empty state


def test_each_harness_has_its_own_module_and_state() -> None:
    one = ActorHarness.from_manifest(manifest("counter"))
    two = ActorHarness.from_manifest(manifest("counter"))
    assert one.module is not two.module
    one.send({"type": "increment", "amount": 5})
    assert two.request({"type": "get"}) == {"count": 0}


# ----------------------------------------------------------------------
# greeter (asks names)


def test_greeter_asks_names_through_the_fake_host() -> None:
    greeter = ActorHarness.from_manifest(manifest("greeter"))
    greeter.host.answer("names", {"names": ["Ada"]})
    assert greeter.request({"type": "greet"}) == {"greeting": "Hello, Ada!"}
    assert greeter.host.requests == [("names", {"type": "get"})]
    greeter.host.answer("names", {"names": ["Ada", "Grace", "Linus"]})
    assert greeter.request({"type": "greet"}) == {"greeting": "Hello, Ada, Grace and Linus!"}
    greeter.host.answer("names", {"names": []})
    assert greeter.request({"type": "greet"}) == {"greeting": "Hello, nobody!"}
    assert len(greeter.host.requests) == 3


def test_greeter_with_a_callable_answer_and_another_directory() -> None:
    greeter = ActorHarness.from_manifest(manifest("greeter"), state={"names_actor": "people"})
    greeter.host.answer("people", lambda msg: {"names": [msg["type"].upper()]})
    assert greeter.request({"type": "greet"}) == {"greeting": "Hello, GET!"}
    assert greeter.host.requests == [("people", {"type": "get"})]


def test_greeter_without_an_answer_fails_like_the_daemon_would() -> None:
    greeter = ActorHarness.from_manifest(manifest("greeter"))
    with pytest.raises(ms.MessageServerError, match="unknown actor 'names'"):
        greeter.request({"type": "greet"})
    with pytest.raises(ValueError, match="expected"):
        greeter.request({"type": "wave"})


def test_names_and_greeter_together() -> None:
    names = ActorHarness.from_manifest(manifest("names"))
    names.send({"type": "add", "name": "Barbara"})
    greeter = ActorHarness.from_manifest(manifest("greeter"))
    greeter.host.answer("names", lambda msg: names.request(msg))
    assert greeter.request({"type": "greet"}) == {"greeting": "Hello, Ada, Grace and Barbara!"}


# ----------------------------------------------------------------------
# echo (channels)


def test_echo_accepts_channels_and_echoes_through_the_host() -> None:
    echo = ActorHarness.from_manifest(manifest("echo"))
    accept = echo.open_channel({"hello": 1}, channel_id="ch_one")
    assert accept == ms.ChannelAccept(True, None)
    echo.channel_message("ch_one", {"n": 1})
    echo.channel_message("ch_one", b'{"n": 2}')
    assert echo.host.channel_messages == [("ch_one", {"n": 1}), ("ch_one", {"n": 2})]
    assert echo.value == {"seen": 2}
    echo.channel_close("ch_one")
    assert echo.value == {"seen": 2}
    assert echo.host.closed == []  # echo does not close channels itself


def test_echo_requests_and_sends() -> None:
    echo = ActorHarness.from_manifest(manifest("echo"))
    assert echo.state is None
    assert echo.request({"anything": [1, 2]}) == {"anything": [1, 2]}
    echo.send({"ignored": True})
    assert echo.value == {"seen": 2}


def test_current_channel_is_set_only_inside_open(tmp_path: Path) -> None:
    source = tmp_path / "spy.py"
    source.write_text(
        "import json\n"
        "from actors import message_server as ms\n"
        "def handle_channel_open(state, params):\n"
        "    info = ms.current_channel()\n"
        "    return json.dumps([info.channel_id, info.opener, ms.current_actor()]).encode(), (ms.ChannelAccept(False, b'no'),)\n"
        "def handle_channel_message(state, params):\n"
        "    return (json.dumps(ms.current_channel()).encode(),)\n"
    )
    spy = ActorHarness.from_file(source)
    assert spy.open_channel({}, channel_id="ch_x", opener="actor-7") == ms.ChannelAccept(False, b"no")
    assert spy.value == ["ch_x", "actor-7", "test-actor"]
    spy.channel_message("ch_x", {})
    assert spy.value is None
    # outside a handler there is no host at all
    with pytest.raises(ms.MessageServerError, match="only available inside an actor's handler"):
        ms.send("anyone", b"{}")
    assert ms.current_channel() is None


def test_fake_host_records_opens_rejections_sends_and_closes(tmp_path: Path) -> None:
    source = tmp_path / "chatty.py"
    source.write_text(
        "import json\n"
        "from actors import message_server as ms\n"
        "def handle_request(state, params):\n"
        "    m = json.loads(params[0])\n"
        "    ch = ms.open_channel(m['to'], b'{\"hi\": 1}')\n"
        "    ms.send_on_channel(ch, '{\"text\": \"str is fine\"}')\n"
        "    ms.close_channel(ch)\n"
        "    ms.send(m['to'], b'[1]')\n"
        "    return state, (json.dumps({'channel': ch}).encode(),)\n"
    )
    host = FakeMessageServer(actor_id="me")
    chatty = ActorHarness(ActorHarness.from_file(source).module, host=host)
    reply = chatty.request({"to": "room"})
    ch = reply["channel"]
    assert ch.startswith("ch_")
    assert host.opened == [("room", {"hi": 1})]
    assert host.channel_messages == [(ch, {"text": "str is fine"})]
    assert host.closed == [ch]
    assert host.sent == [("room", [1])]
    host.reject_channels("wall", "busy")
    with pytest.raises(ms.MessageServerError, match="channel rejected by wall: busy"):
        chatty.request({"to": "wall"})
    assert json.loads(json.dumps(host.opened)) == [["room", {"hi": 1}]]
