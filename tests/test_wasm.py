"""daemon.wasm: component actors behave like Python actor modules (committed .wasm files, fake host)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import cast

import pytest

from actors import message_server as ms
from actors.testing import ActorHarness, FakeMessageServer
from daemon.wasm import ComponentActor, ComponentError, ComponentFailed, ComponentTrap, WasiGrants, load_component
from daemon.wasm import engine as wasm_engine
from tests.conftest import EXAMPLES, ROOT

TEST_COMPONENTS = ROOT / "tests" / "wasm"
MiB = 1 << 20
_mode = {"fast": True}


@pytest.fixture(autouse=True, params=["core", "component"])
def call_path(request: pytest.FixtureRequest) -> str:
    """Every test runs twice: C examples through the core fast path, then through the component API."""
    _mode["fast"] = request.param == "core"
    return str(request.param)


def load(name: str, *, fuel: int | None = 50_000_000, memory_limit: int = 16 * MiB,
         timeout: float | None = None, cache_dir: Path | None = None) -> ComponentActor:
    actor = load_component(EXAMPLES / name, fuel=fuel, memory_limit=memory_limit, timeout=timeout,
                           wasi=WasiGrants(), cache_dir=cache_dir, fast=_mode["fast"])
    if name.startswith(("wasm-counter", "wasm-echo", "wasm-spin", "wasm-hog", "wasm-chatroom")):
        assert actor.fast_path == _mode["fast"]
    else:
        assert not actor.fast_path  # several core modules: always the component path
    return actor


def _Harness(actor: ComponentActor, state: bytes | None = None,
             host: FakeMessageServer | None = None) -> ActorHarness:
    """ActorHarness is typed for modules; a ComponentActor has the same surface."""
    return ActorHarness(cast(ModuleType, actor), state, host)


def harness(name: str, state: object = None) -> ActorHarness:
    return _Harness(load(name), None if state is None else json.dumps(state).encode())


def python_harness(name: str) -> ActorHarness:
    return ActorHarness.from_manifest(EXAMPLES / name / "manifest.toml")


# ---- counter ------------------------------------------------------------------


def test_counter_exports_every_handler_and_init() -> None:
    actor = load("wasm-counter/counter.wasm")
    assert actor.exports == {"init", "handle_send", "handle_request", "handle_channel_open",
                             "handle_channel_message", "handle_channel_close"}
    assert callable(actor.handle_request)


def test_counter_behaves_like_the_python_counter_byte_for_byte() -> None:
    wasm_c, py_c = harness("wasm-counter/counter.wasm", {"count": 0}), python_harness("counter")
    for message in ({"type": "increment", "amount": 2}, {"type": "increment"}, {"type": "increment", "amount": -5},
                    {"type": "reset"}, {"type": "increment", "amount": 40}):
        wasm_c.send(message)
        py_c.send(message)
        assert wasm_c.state == py_c.state
    assert wasm_c.request({"type": "get"}) == py_c.request({"type": "get"}) == {"count": 40}


def test_counter_init_creates_a_state_when_there_is_none() -> None:
    assert harness("wasm-counter/counter.wasm").state == b'{"count": 0}'
    assert harness("wasm-counter/counter.wasm", {"count": 7}).value == {"count": 7}


@pytest.mark.parametrize(("message", "error"), [
    ({"type": "nope"}, "unknown message type 'nope' (expected increment or reset)"),
    ({"type": "increment", "amount": "2"}, "amount must be an integer"),
    ({"type": "increment", "amount": 2.5}, "amount must be an integer"),
])
def test_counter_errors_are_ordinary_exceptions_with_the_components_message(message: object, error: str) -> None:
    actor = harness("wasm-counter/counter.wasm", {"count": 3})
    with pytest.raises(ComponentFailed) as info:
        actor.send(message)
    assert str(info.value) == error
    assert not isinstance(info.value, ComponentTrap)
    assert actor.value == {"count": 3}  # the harness keeps the state on failure, like the daemon
    actor.send({"type": "increment"})
    assert actor.value == {"count": 4}


def test_counter_refuses_channels_like_an_actor_without_channel_handlers() -> None:
    accept = harness("wasm-counter/counter.wasm").open_channel({})
    assert accept == ms.ChannelAccept(False, b"actor does not accept channels")


def test_state_none_and_empty_messages_cross_intact() -> None:
    actor = load("wasm-echo/echo.wasm")
    assert actor.handle_request(None, (b"",)) == (b'{"seen": 1}', (b"",))
    assert actor.handle_channel_close(None, ("ch_x",)) == (None,)
    assert actor.handle_channel_close(b"", ("ch_x",)) == (b"",)


# ---- echo -----------------------------------------------------------------------


def test_echo_behaves_like_the_python_echo() -> None:
    wasm_e, py_e = harness("wasm-echo/echo.wasm"), python_harness("echo")
    for h in (wasm_e, py_e):
        assert h.request({"hello": ["w", 1]}) == {"hello": ["w", 1]}
        h.send({"x": 1})
        assert h.open_channel({}) == ms.ChannelAccept(True, None)
        h.channel_message("ch_1", {"n": 1})
        h.channel_close("ch_1")
    assert wasm_e.state == py_e.state == b'{"seen": 3}'
    assert wasm_e.host.channel_messages == py_e.host.channel_messages == [("ch_1", {"n": 1})]


# ---- chatroom (imports message-context) -------------------------------------------


def _chatroom_session(h: ActorHarness) -> None:
    assert h.open_channel({"join": "  Ada Lovelace  "}, channel_id="ch_a") == ms.ChannelAccept(True, None)
    assert h.open_channel({"join": "Zo\u00eb \u2603 \U0001F600 \"q\"\\ \n"}, channel_id="ch_b").accepted
    assert h.open_channel(b"not json", channel_id="ch_c").accepted  # anon
    assert h.open_channel({"join": "\u00e9" * 100}, channel_id="ch_d").accepted  # cut to 64 characters
    assert h.open_channel({"join": 5}, channel_id="ch_e").accepted  # anon
    h.channel_message("ch_b", {"text": "hi", "n": [1, 2.5, None, True]})
    h.channel_message("ch_a", b"plain \xff text")  # not JSON (nor UTF-8): passed on as a string
    h.channel_message("ch_unknown", "\"quoted\"")
    h.channel_close("ch_a")
    h.channel_close("ch_gone")


def test_chatroom_behaves_like_the_python_chatroom() -> None:
    wasm_c = harness("wasm-chatroom/chatroom.wasm", {"members": {}})
    py_c = python_harness("chatroom")
    for h in (wasm_c, py_c):
        _chatroom_session(h)
    assert wasm_c.state == py_c.state  # byte for byte
    assert wasm_c.value["members"]["ch_d"] == "\u00e9" * 64
    assert wasm_c.host.channel_messages == py_c.host.channel_messages
    assert ("ch_c", {"from": "Ada Lovelace", "msg": "plain \ufffd text"}) in wasm_c.host.channel_messages


def test_chatroom_learns_the_channel_from_message_context() -> None:
    actor = load("wasm-chatroom/chatroom.wasm")
    # Outside a channel open the host answers none, and the chatroom refuses.
    assert actor.handle_channel_open(b'{"members": {}}', (b"{}",)) == (
        b'{"members": {}}', (ms.ChannelAccept(False, b"no channel"),))


def test_message_context_tells_the_actor_and_the_opening_channel() -> None:
    actor = _Harness(load_component(TEST_COMPONENTS / "context.wasm", fuel=None, memory_limit=16 * MiB,
                                    timeout=None, wasi=WasiGrants(), fast=_mode["fast"]))
    assert actor.request({}) == {"actor": "test-actor"}
    accept = actor.open_channel({}, channel_id="ch_\u00e9", opener="external")
    assert accept.accepted and json.loads(accept.message or b"") == {"channel": "ch_\u00e9", "opener": "external"}


def test_large_values_cross_in_both_directions_unchanged() -> None:
    actor = load("wasm-echo/echo.wasm")
    payload = bytes(range(256)) * 1024  # 256 KiB, every byte value
    state, (reply,) = actor.handle_request(b'{"seen": 41}', (payload,))
    assert reply == payload
    assert state == b'{"seen": 42}'


class FailingChannels(FakeMessageServer):
    def send_on_channel(self, channel_id: str, msg: bytes) -> None:
        raise ms.MessageServerError(f"unknown channel {channel_id}")


def test_a_host_error_reaches_the_component_as_err_and_it_fails_with_it() -> None:
    actor = _Harness(load("wasm-echo/echo.wasm"), host=FailingChannels())
    with pytest.raises(ComponentFailed, match=r"^unknown channel ch_gone$"):
        actor.channel_message("ch_gone", {"n": 1})
    assert actor.module.traps == 0  # an err result is not a trap


# ---- the greeter (Python compiled with componentize-py) -------------------------


@pytest.fixture(scope="module")
def greeter() -> ComponentActor:
    return load("wasm-greeter/greeter.wasm", memory_limit=256 * MiB, fuel=None)


def test_greeter_requests_a_python_actor_through_the_host(greeter: ComponentActor) -> None:
    actor = _Harness(greeter)
    assert actor.value == {"names_actor": "names"}
    actor.host.answer("names", {"names": ["Ada", "Grace"]})
    assert actor.request({"type": "greet"}) == {"greeting": "Hello, Ada and Grace!"}
    assert actor.host.requests == [("names", {"type": "get"})]


def test_greeter_opens_a_channel_and_talks_on_it(greeter: ComponentActor) -> None:
    actor = _Harness(greeter)
    actor.host.answer("names", {"names": ["Ada"]})
    reply = actor.request({"type": "announce", "room": "chatroom"})
    (channel,) = actor.host.closed
    assert reply == {"announced": channel}
    assert actor.host.opened == [("chatroom", {"join": "wasm-greeter"})]
    assert actor.host.channel_messages == [(channel, {"greeting": "Hello, Ada!"})]


def test_greeter_sees_host_errors_as_err_results(greeter: ComponentActor) -> None:
    actor = _Harness(greeter, b'{"names_actor": "ghost"}')
    with pytest.raises(ComponentFailed, match=r"^asking ghost: unknown actor 'ghost'$"):
        actor.request({"type": "greet"})
    actor.host.answer("ghost", {"names": ["Ada"]})
    actor.host.reject_channels("room", "full")
    with pytest.raises(ComponentFailed, match="^announcing in room: channel rejected by room: full$"):
        actor.request({"type": "announce", "room": "room"})


def test_greeter_answers_on_a_channel_opened_to_it(greeter: ComponentActor) -> None:
    actor = _Harness(greeter)
    actor.host.answer("names", {"names": ["Ada", "Grace"]})
    assert actor.open_channel({}, channel_id="ch_in") == ms.ChannelAccept(True, None)
    actor.channel_message("ch_in", {"type": "greet"})
    assert actor.host.channel_messages == [("ch_in", {"greeting": "Hello, Ada and Grace!"})]


class Interrupted(Exception):
    """Stands for a daemon exception that must unwind a handler (not a message-server error)."""


def test_other_host_exceptions_trap_the_guest_and_reach_the_caller_unchanged(greeter: ComponentActor) -> None:
    actor = _Harness(greeter)
    traps = greeter.traps

    def explode(_message: object) -> object:
        raise Interrupted("stop")

    actor.host.answer("names", explode)
    with pytest.raises(Interrupted, match="stop"):
        actor.request({"type": "greet"})
    assert greeter.traps == traps + 1
    actor.host.answer("names", {"names": ["Grace"]})
    assert actor.request({"type": "greet"}) == {"greeting": "Hello, Grace!"}


# ---- limits ---------------------------------------------------------------------


def test_fuel_exhaustion_traps_and_the_next_call_works_again() -> None:
    actor = load("wasm-spin/spin.wasm", fuel=1_000_000)
    with pytest.raises(ComponentTrap, match=r"^handler ran out of fuel$") as info:
        actor.handle_request(None, (b"{}",))
    assert info.value.reason == "handler ran out of fuel"
    assert actor.traps == 1
    assert actor.handle_send(b"s", (b'{"ping": 1}',)) == (b'{"ping": 1}',)
    with pytest.raises(ComponentTrap):  # fuel is per call: the rebuilt instance gets it all again
        actor.handle_request(None, (b"{}",))
    assert actor.handle_send(None, (b"ok",)) == (b"ok",)


def test_fuel_is_per_call_not_per_actor() -> None:
    actor = load("wasm-counter/counter.wasm", fuel=200_000)
    state = actor.init(None)[0]
    for _ in range(200):  # far more than 200_000 fuel in total
        (state,) = actor.handle_send(state, (b'{"type": "increment"}',))
    assert state == b'{"count": 200}'
    assert actor.traps == 0


def test_time_limit_traps_with_the_limit_in_the_message() -> None:
    actor = load("wasm-spin/spin.wasm", fuel=None, timeout=0.2)
    with pytest.raises(ComponentTrap, match=r"^handler exceeded its time limit of 0\.2 s$"):
        actor.handle_request(None, (b"{}",))
    assert actor.handle_send(None, (b"again",)) == (b"again",)


def test_time_spent_waiting_in_the_host_is_not_the_handlers(greeter: ComponentActor) -> None:
    # The limit is wall-clock time in the guest: generous for its ~1 ms of work on a loaded machine,
    # and well under the host's pause.
    actor = load("wasm-greeter/greeter.wasm", memory_limit=256 * MiB, fuel=None, timeout=1.0)
    h = _Harness(actor)
    pause = threading.Event()

    def slow(_message: object) -> object:
        pause.wait(2.5)  # the host takes longer than the guest's whole time limit
        return {"names": ["Ada"]}

    h.host.answer("names", slow)
    assert h.request({"type": "greet"}) == {"greeting": "Hello, Ada!"}


def test_an_answer_written_into_the_guest_after_a_long_host_call_is_not_charged_to_it() -> None:
    """Found in review: on the core path the answer of a host call (here an error string) is
    copied in through the guest's cabi_realloc, which ran against the deadline of before the
    call, so a host call longer than the guest's limit trapped ("interrupt")."""
    import time

    actor = load("wasm-echo/echo.wasm", fuel=None, timeout=0.3)
    h = _Harness(actor)

    def slow_refusal(channel_id: str, msg: bytes) -> None:
        time.sleep(0.6)  # twice the guest's whole limit, all of it in the host
        raise ms.MessageServerError("mailbox full: busy")

    h.host.send_on_channel = slow_refusal  # type: ignore[method-assign]
    with pytest.raises(ComponentFailed, match="^mailbox full: busy$"):
        h.channel_message("ch_1", {"n": 1})
    assert actor.traps == 0


def test_memory_limit_traps_names_the_limit_and_the_next_call_works_again() -> None:
    actor = load("wasm-hog/hog.wasm", fuel=None, memory_limit=4 * MiB)
    with pytest.raises(ComponentTrap, match=r"^memory limit of 4194304 bytes exceeded$"):
        actor.handle_request(None, (b"{}",))
    assert actor.handle_send(None, (b"alive",)) == (b"alive",)
    assert actor.memory_bytes <= 4 * MiB


def test_a_value_larger_than_the_memory_limit_is_a_memory_trap() -> None:
    actor = load("wasm-echo/echo.wasm", memory_limit=1 * MiB)
    with pytest.raises(ComponentTrap, match=r"^memory limit of 1048576 bytes exceeded$"):
        actor.handle_request(None, (b"x" * (2 * MiB),))
    assert actor.handle_request(None, (b"small",)) == (b'{"seen": 1}', (b"small",))


def test_memory_of_an_idle_c_instance_is_small() -> None:
    assert load("wasm-counter/counter.wasm").memory_bytes <= 256 * 1024


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="fuel"):
        load("wasm-counter/counter.wasm", fuel=0)
    with pytest.raises(ValueError, match="memory_limit"):
        load("wasm-counter/counter.wasm", memory_limit=0)
    with pytest.raises(ValueError, match="timeout"):
        load("wasm-counter/counter.wasm", timeout=-1)


# ---- loading ----------------------------------------------------------------------


def _load_path(path: Path, wasi: WasiGrants = WasiGrants()) -> ComponentActor:
    return load_component(path, fuel=None, memory_limit=16 * MiB, timeout=None, wasi=wasi, fast=_mode["fast"])


def test_garbage_is_not_a_component(tmp_path: Path) -> None:
    path = tmp_path / "garbage.wasm"
    path.write_bytes(b"definitely not wasm")
    with pytest.raises(ComponentError,
                       match=r"garbage\.wasm is not a WebAssembly component: not a WebAssembly binary$"):
        _load_path(path)


def test_a_truncated_component_is_not_a_component(tmp_path: Path) -> None:
    path = tmp_path / "cut.wasm"
    path.write_bytes((EXAMPLES / "wasm-counter" / "counter.wasm").read_bytes()[:600])
    with pytest.raises(ComponentError, match=r"cut\.wasm is not a WebAssembly component: "):
        _load_path(path)


def test_a_core_module_is_not_a_component() -> None:
    with pytest.raises(ComponentError, match=r"core-module\.wasm is not a WebAssembly component: it is a core module"):
        _load_path(TEST_COMPONENTS / "core-module.wasm")


def test_a_missing_file_is_a_component_error(tmp_path: Path) -> None:
    with pytest.raises(ComponentError, match="cannot read .*absent.wasm"):
        _load_path(tmp_path / "absent.wasm")


def test_an_unknown_import_is_named() -> None:
    with pytest.raises(ComponentError, match=r"imports example:missing/thing, which the host does not provide"):
        _load_path(TEST_COMPONENTS / "bad-import.wasm")


def test_a_host_import_with_the_wrong_type_is_named() -> None:
    with pytest.raises(ComponentError, match=r"imports theater:simple/message-server-host#send as func\(n: u32\), "
                                             r"but the host provides func\(actor-id: string"):
        _load_path(TEST_COMPONENTS / "wrong-host.wasm")


def test_a_component_without_handlers_is_refused() -> None:
    with pytest.raises(ComponentError, match="exports no handler interface"):
        _load_path(TEST_COMPONENTS / "no-handlers.wasm")


def test_compilation_is_cached_per_file_and_rebuilt_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "c.wasm"
    path.write_bytes((EXAMPLES / "wasm-counter" / "counter.wasm").read_bytes())
    first, second = _load_path(path), _load_path(path)
    assert first._component is second._component
    assert first._program is second._program
    assert first._store is not second._store  # one Store per actor
    path.write_bytes((EXAMPLES / "wasm-echo" / "echo.wasm").read_bytes())
    third = _load_path(path)
    assert third._component is not first._component
    assert third.handle_request(None, (b"e",)) == (b'{"seen": 1}', (b"e",))


def test_a_cache_dir_keeps_the_compiled_code(tmp_path: Path) -> None:
    source = tmp_path / "echo.wasm"
    source.write_bytes((EXAMPLES / "wasm-echo" / "echo.wasm").read_bytes() + b"")
    cache = tmp_path / "cache"
    load_component(source, fuel=None, memory_limit=MiB, timeout=None, cache_dir=cache)
    entries = sorted(cache.glob("*.cwasm"))
    assert entries  # the component (and, on the fast path, its core module)
    wasm_engine.forget_compiled()  # a new process, as far as the in-memory cache knows
    actor = load_component(source, fuel=None, memory_limit=MiB, timeout=None, cache_dir=cache, fast=_mode["fast"])
    assert actor.handle_request(None, (b"c",)) == (b'{"seen": 1}', (b"c",))
    assert sorted(cache.glob("*.cwasm")) == entries


def test_without_a_grant_a_wasi_import_is_refused() -> None:
    with pytest.raises(ComponentError,
                       match=r"hello-wasi\.wasm imports wasi:io/error@0\.2\.0, which needs a WASI grant"):
        _load_path(TEST_COMPONENTS / "hello-wasi.wasm")


def test_granted_stdout_reaches_pythons_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    actor = _load_path(TEST_COMPONENTS / "hello-wasi.wasm", WasiGrants(stdout=True, clock=True))
    assert actor.handle_request(b"s", (b"{}",)) == (b"s", (b'{"ticked": true}',))
    assert capsys.readouterr().out == "hello from wasm\n"


def test_stdout_not_granted_is_discarded(capsys: pytest.CaptureFixture[str]) -> None:
    actor = _load_path(TEST_COMPONENTS / "hello-wasi.wasm", WasiGrants(clock=True))
    assert actor.handle_request(None, (b"{}",)) == (None, (b'{"ticked": true}',))
    assert capsys.readouterr() == ("", "")


def test_actors_in_threads_do_not_share_hosts() -> None:
    """Each thread's bound host serves the component it calls (the daemon binds one per worker)."""
    results: dict[str, list[tuple[str, object]]] = {}

    def run(tag: str) -> None:
        actor = _Harness(load("wasm-echo/echo.wasm"), host=FakeMessageServer(tag))
        for i in range(50):
            actor.channel_message(f"ch_{tag}", {"i": i})
        results[tag] = actor.host.channel_messages

    threads = [threading.Thread(target=run, args=(t,)) for t in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for tag in ("a", "b", "c"):
        assert results[tag] == [(f"ch_{tag}", {"i": i}) for i in range(50)]


def test_post_return_runs_after_every_call_so_the_guest_heap_does_not_grow() -> None:
    """The C examples free a call's data in cabi_post_*; without it 100 calls of 100 KB would pass 2 MiB."""
    actor = load("wasm-echo/echo.wasm", memory_limit=2 * MiB)
    for _ in range(100):
        actor.handle_request(None, (b"x" * 100_000,))
    assert actor.traps == 0
    assert actor.memory_bytes < 1 * MiB


# ---- a guest that breaks the canonical ABI ---------------------------------------------


@pytest.mark.parametrize(("call", "cause"), [
    (lambda a: a.handle_request(None, (b"x",)), "(pointer|list pointer/length) out of bounds"),
    (lambda a: a.handle_send(None, (b"x",)), "invalid utf-8"),
    (lambda a: a.handle_channel_message(None, ("ch_1", b"x")), "(pointer|string pointer/length) out of bounds"),
])
def test_malformed_results_and_host_calls_trap_instead_of_reading_outside_the_guest(
        call: Callable[[ComponentActor], object], cause: str) -> None:
    actor = _Harness(load_component(TEST_COMPONENTS / "evil.wasm", fuel=None, memory_limit=MiB, timeout=None,
                                        fast=_mode["fast"]))
    with pytest.raises(ComponentTrap, match=f"^handler trapped: .*{cause}"):
        call(cast(ComponentActor, actor.module))
    assert actor.host.channel_messages == []
    assert actor.module.handle_channel_close(b"s", ("ch_1",)) == (b"s",)  # rebuilt, working


def test_a_bool_is_true_when_not_zero_as_the_canonical_abi_says() -> None:
    actor = load_component(TEST_COMPONENTS / "evil.wasm", fuel=None, memory_limit=MiB, timeout=None,
                           fast=_mode["fast"])
    assert actor.handle_channel_open(None, (b"x",)) == (None, (ms.ChannelAccept(True, None),))


def test_a_dropped_actor_frees_its_instance_and_linear_memory() -> None:
    import gc
    import weakref

    from daemon.wasm import memory

    actor = load("wasm-counter/counter.wasm")
    tag = actor._memory_tag
    assert memory.owned_bytes(tag) > 0
    ref = weakref.ref(actor)
    del actor
    gc.collect()
    assert ref() is None
    assert memory.owned_bytes(tag) == 0


def test_handlers_a_component_does_not_export_are_not_attributes() -> None:
    """A component built against a trimmed world (only handle-request) looks like a module
    with only handle_request: the daemon's getattr(module, name, None) sees None."""
    actor = load_component(TEST_COMPONENTS / "only-request.wasm", fuel=None, memory_limit=MiB, timeout=None,
                           fast=_mode["fast"])
    assert actor.exports == {"handle_request"}
    assert getattr(actor, "handle_send", None) is None
    assert getattr(actor, "init", None) is None
    assert not hasattr(actor, "handle_channel_open")
    assert actor.handle_request(b"s", (b'{"q": 1}',)) == (b"s", (b'{"q": 1}',))
