"""Manifest parsing and validation: one clear BadInput per problem."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from daemon.errors import BadInput, ErrorCode
from daemon.files import LIMITS
from daemon.manifest import HANDLER_TYPES, Manifest, Sandbox, Wasi, check_name, load_manifest
from tests.helpers_runtime import EXAMPLES


def write(tmp_path: Path, text: str, *, component: str | None = "actor.py", name: str = "manifest.toml") -> Path:
    if component is not None:
        (tmp_path / component).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / component).write_text("def handle_send(state, params):\n    return (state,)\n")
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


BASIC = 'name = "worker"\ncomponent = "actor.py"\n'


def test_a_minimal_manifest(tmp_path: Path) -> None:
    m = load_manifest(write(tmp_path, BASIC))
    assert isinstance(m, Manifest)
    assert m.name == "worker"
    assert m.path == (tmp_path / "manifest.toml").resolve() and m.path.is_absolute()
    assert m.component == (tmp_path / "actor.py").resolve()
    assert m.init_state is None
    assert m.handlers == ("message-server",)  # added automatically
    assert (m.restart, m.max_restarts, m.restart_window, m.mailbox_size) == ("never", 3, 60.0, None)
    assert (m.isolation, m.memory_limit, m.handler_timeout, m.max_deliveries) == ("shared", 1 << 30, 60.0, 3)
    assert m.sandbox == Sandbox(read=(), write=(), network=False)
    assert m.wasi == Wasi(stdout=False, stderr=False, clock=False, random=False)


def test_a_full_manifest(tmp_path: Path) -> None:
    text = BASIC + """
description = "does work"
version = "1.2"
restart = "on-failure"
max_restarts = 5
restart_window = 2.5
mailbox_size = 16
isolation = "dedicated"
memory_limit = 268435456
handler_timeout = 2.5
max_deliveries = 1
init_state = { count = 0, tags = ["a", "b"], nested = { ok = true } }

[[handlers]]
type = "message-server"
config = { verbose = true }

[sandbox]
read = ["data", "/etc/ssl/certs"]
write = ["out/../scratch"]
network = true

[wasi]
stdout = true
clock = true
"""
    m = load_manifest(str(write(tmp_path, text)))  # a str path works too
    assert m.handlers == ("message-server",)  # listed once, not duplicated
    assert (m.restart, m.max_restarts, m.restart_window, m.mailbox_size) == ("on-failure", 5, 2.5, 16)
    assert (m.isolation, m.memory_limit, m.handler_timeout, m.max_deliveries) == ("dedicated", 1 << 28, 2.5, 1)
    base = tmp_path.resolve()
    assert m.sandbox == Sandbox(read=(base / "data", Path("/etc/ssl/certs")), write=(base / "scratch",), network=True)
    assert m.wasi == Wasi(stdout=True, stderr=False, clock=True, random=False)
    assert m.init_state is not None
    assert json.loads(m.init_state) == {"count": 0, "tags": ["a", "b"], "nested": {"ok": True}}
    assert b" " not in m.init_state  # compact JSON


@pytest.mark.parametrize(
    ("toml_value", "expected"),
    [
        ("{ count = 0 }", b'{"count":0}'),
        ("[1, 2, 3]", b"[1,2,3]"),
        ('"hello"', b'"hello"'),
        ("42", b"42"),
        ("1.5", b"1.5"),
        ("false", b"false"),
        ("{}", b"{}"),
        ('{ when = 1979-05-27T07:32:00Z }', b'{"when":"1979-05-27 07:32:00+00:00"}'),
    ],
)
def test_init_state_becomes_json_bytes(tmp_path: Path, toml_value: str, expected: bytes) -> None:
    m = load_manifest(write(tmp_path, BASIC + f"init_state = {toml_value}\n"))
    assert m.init_state == expected
    json.loads(m.init_state)


def test_component_is_relative_to_the_manifest(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "code.py").write_text("")
    path = write(tmp_path / "actor", 'name = "w"\ncomponent = "../shared/code.py"\n', component=None)
    assert load_manifest(path).component == (tmp_path / "shared" / "code.py").resolve()


def test_the_examples_load() -> None:
    manifests = sorted(EXAMPLES.rglob("manifest.toml"))
    assert len(manifests) >= 4
    by_name = {load_manifest(p).name: load_manifest(p) for p in manifests}
    assert {"counter", "echo", "greeter", "names"} <= set(by_name)
    assert by_name["counter"].init_state == b'{"count":0}'
    assert by_name["echo"].init_state is None
    for m in by_name.values():
        assert m.component.is_file()
        assert "message-server" in m.handlers


# ----------------------------------------------------------------------
# the file itself


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(BadInput, match=rf"^manifest {path} does not exist$") as info:
        load_manifest(path)
    assert info.value.code == ErrorCode.BAD_INPUT


def test_a_directory(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=rf"^manifest {tmp_path} is a directory, not a regular file$"):
        load_manifest(tmp_path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "manifest.toml"
    path.write_bytes(b'name = "caf\xe9"\n')
    with pytest.raises(BadInput, match=r"is not UTF-8 text$"):
        load_manifest(path)


@pytest.mark.parametrize("text", ['name = "x"\ncomponent =\n', "name = 'x\n", "[[handlers]\n", "= 1\n", 'a = 1\na = 2\n'])
def test_not_toml(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BadInput, match=rf"^manifest {path} is not valid TOML: "):
        load_manifest(path)


# ----------------------------------------------------------------------
# fields


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('component = "actor.py"\n', r"'name' is missing or not a string"),
        ('name = 5\ncomponent = "actor.py"\n', r"'name' is missing or not a string"),
        ('name = ""\ncomponent = "actor.py"\n', r"'name' is missing or not a string"),
        ('name = "9lives"\ncomponent = "actor.py"\n', r"invalid actor name '9lives'"),
        ('name = "has space"\ncomponent = "actor.py"\n', r"invalid actor name 'has space'"),
        ('name = "w\\n"\ncomponent = "actor.py"\n', r"invalid actor name 'w\\n'"),  # a trailing newline
        ('name = "w"\n', r"'component' \(path to the actor's Python file or \.wasm component\) is missing"),
        ('name = "w"\ncomponent = 3\n', r"'component' \(path to the actor's Python file or \.wasm component\) is missing"),
        ('name = "w"\ncomponent = "gone.py"\n', r"component .*gone.py does not exist"),
        ('name = "w"\ncomponent = "."\n', r"component .* is a directory, not a regular file"),
        (BASIC + 'handlers = "message-server"\n', r"'handlers' must be an array of tables \(\[\[handlers\]\]\)"),
        (BASIC + "handlers = [1]\n", r"each \[\[handlers\]\] entry needs a string 'type'"),
        (BASIC + "[[handlers]]\nconfig = {}\n", r"each \[\[handlers\]\] entry needs a string 'type'"),
        (BASIC + "[[handlers]]\ntype = 7\n", r"each \[\[handlers\]\] entry needs a string 'type'"),
        (BASIC + '[[handlers]]\ntype = "http"\n', r"unknown handler type 'http' \(known: message-server\)"),
        (BASIC + '[[handlers]]\ntype = "message-server"\nconfig = "x"\n', r"handler 'config' must be a table"),
        (BASIC + 'restart = "always"\n', r"'restart' must be \"never\" or \"on-failure\""),
        (BASIC + "max_restarts = -1\n", r"'max_restarts' must be a non-negative integer"),
        (BASIC + "max_restarts = true\n", r"'max_restarts' must be a non-negative integer"),
        (BASIC + "max_restarts = 1.5\n", r"'max_restarts' must be a non-negative integer"),
        (BASIC + "restart_window = 0\n", r"'restart_window' must be a positive number of seconds"),
        (BASIC + "restart_window = -3\n", r"'restart_window' must be a positive number of seconds"),
        (BASIC + "restart_window = true\n", r"'restart_window' must be a positive number of seconds"),
        (BASIC + 'restart_window = "60"\n', r"'restart_window' must be a positive number of seconds"),
        (BASIC + "mailbox_size = 0\n", r"'mailbox_size' must be a positive integer"),
        (BASIC + "mailbox_size = false\n", r"'mailbox_size' must be a positive integer"),
        (BASIC + "mailbox_size = 2.0\n", r"'mailbox_size' must be a positive integer"),
    ],
)
def test_invalid_fields(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BadInput, match=message) as info:
        load_manifest(path)
    text = str(info.value)
    assert "\n" not in text  # one line
    if "invalid actor name" not in text:
        assert text.startswith(f"manifest {path}: ")


def test_max_restarts_zero_is_allowed(tmp_path: Path) -> None:
    assert load_manifest(write(tmp_path, BASIC + "max_restarts = 0\n")).max_restarts == 0


def test_handler_types() -> None:
    assert HANDLER_TYPES == frozenset({"message-server"})


# ----------------------------------------------------------------------
# names


@pytest.mark.parametrize("name", ["a", "Z", "counter", "a1", "a.b-c_d", "A" + "b" * 63, "x-" * 10 + "y"])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "1a", "-a", ".a", "_a", "a b", "a/b", "a:b", "é", "a" * 65, "a\n", "a\x00b", "ch_" + "é"],
)
def test_invalid_names(name: str) -> None:
    with pytest.raises(BadInput, match=r"invalid actor name .*: use 1-64 letters, digits, '_', '.' or '-', starting with a letter"):
        check_name(name)


# ----------------------------------------------------------------------
# unknown keys, and the keys of isolation, limits, sandbox and wasi


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASIC + "mailbox_sise = 3\n", r": unknown key 'mailbox_sise'; did you mean mailbox_size\?$"),
        (BASIC + "restart_windw = 3\n", r": unknown key 'restart_windw'; did you mean restart_window\?$"),
        (BASIC + 'owner = "ops"\n', r": unknown key 'owner' \(known: name, component, .*, wasi\)$"),
        (BASIC + "[sandbox]\nreads = []\n", r": unknown key in \[sandbox\] 'reads'; did you mean read\?$"),
        (BASIC + "[wasi]\nstdot = true\n", r": unknown key in \[wasi\] 'stdot'; did you mean stdout\?$"),
        (BASIC + '[[handlers]]\ntype = "message-server"\nconfg = {}\n',
         r": unknown key in \[\[handlers\]\] 'confg'; did you mean config\?$"),
    ],
)
def test_unknown_keys_are_errors_with_a_suggestion(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BadInput, match=rf"^manifest {path}{message}") as info:
        load_manifest(path)
    assert info.value.code == ErrorCode.BAD_INPUT


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASIC + 'isolation = "private"\n', r"'isolation' must be \"shared\" or \"dedicated\""),
        (BASIC + "memory_limit = 0\n", r"'memory_limit' must be a positive integer \(bytes\)"),
        (BASIC + "memory_limit = 1.5\n", r"'memory_limit' must be a positive integer \(bytes\)"),
        (BASIC + 'memory_limit = "1G"\n', r"'memory_limit' must be a positive integer \(bytes\)"),
        (BASIC + "handler_timeout = 0\n", r"'handler_timeout' must be a positive number of seconds"),
        (BASIC + "handler_timeout = inf\n", r"'handler_timeout' must be a positive number of seconds"),
        (BASIC + "handler_timeout = nan\n", r"'handler_timeout' must be a positive number of seconds"),
        (BASIC + "handler_timeout = true\n", r"'handler_timeout' must be a positive number of seconds"),
        (BASIC + "max_deliveries = 0\n", r"'max_deliveries' must be an integer of at least 1"),
        (BASIC + "max_deliveries = true\n", r"'max_deliveries' must be an integer of at least 1"),
        (BASIC + 'sandbox = "none"\n', r"'sandbox' must be a table \(\[sandbox\]\)"),
        (BASIC + '[sandbox]\nread = "data"\n', r"'sandbox.read' must be a list of paths \(strings\)"),
        (BASIC + "[sandbox]\nwrite = [1]\n", r"'sandbox.write' must be a list of paths \(strings\)"),
        (BASIC + '[sandbox]\nwrite = [""]\n', r"'sandbox.write' must be a list of paths \(strings\)"),
        (BASIC + '[sandbox]\nnetwork = "yes"\n', r"'sandbox.network' must be true or false"),
        (BASIC + "wasi = 1\n", r"'wasi' must be a table \(\[wasi\]\)"),
        (BASIC + "[wasi]\nclock = 1\n", r"'wasi.clock' must be true or false"),
    ],
)
def test_invalid_new_fields(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BadInput, match=rf"^manifest {path}: {message}$"):
        load_manifest(path)


@pytest.mark.parametrize("name", ["abcdef01-2345-6789-abcd-ef0123456789", "ABCDEF01-2345-6789-ABCD-EF0123456789",
                                  "deadbeefdeadbeefdeadbeefdeadbeef", "dEaDbEeF-dead-beef-dead-beefdeadbeef"])
def test_a_name_that_looks_like_an_actor_id_is_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(BadInput, match=r"looks like an actor id \(a UUID\)"):
        check_name(name)
    path = write(tmp_path, f'name = "{name}"\ncomponent = "actor.py"\n')
    with pytest.raises(BadInput, match=rf"^invalid actor name '{name}': it looks like an actor id"):
        load_manifest(path)


@pytest.mark.parametrize("name", ["abcdef01-2345", "deadbeef", "face-cafe", "abcdef01-2345-6789-abcd-ef012345678g"])
def test_hex_names_that_are_not_ids_are_fine(name: str) -> None:
    assert check_name(name) == name


# ----------------------------------------------------------------------
# what is read: regular files, bounded


def test_a_fifo_manifest_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "manifest.toml"
    os.mkfifo(fifo)
    with pytest.raises(BadInput, match=rf"^manifest {fifo} is a FIFO, not a regular file$"):
        load_manifest(fifo)


def test_a_device_manifest_is_refused() -> None:
    with pytest.raises(BadInput, match=r"^manifest /dev/zero is a character device, not a regular file$"):
        load_manifest("/dev/zero")


def test_a_manifest_over_1_mib_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, BASIC + "#" * (1 << 20) + "\n")
    with pytest.raises(BadInput, match=r"is too large: \d+ bytes, the limit is 1 MiB$"):
        load_manifest(path)


def test_a_fifo_component_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, 'name = "w"\ncomponent = "pipe.py"\n', component=None)
    os.mkfifo(tmp_path / "pipe.py")
    with pytest.raises(BadInput, match=rf"^manifest {path}: component .*pipe.py is a FIFO, not a regular file$"):
        load_manifest(path)


def test_a_component_over_the_limit_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LIMITS, "component", 1000)
    path = write(tmp_path, BASIC)
    (tmp_path / "actor.py").write_text("#" * 1001)
    with pytest.raises(BadInput, match=r": component .*actor.py is too large: 1001 bytes, the limit is 1000 bytes$"):
        load_manifest(path)
