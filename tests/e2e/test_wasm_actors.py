"""Component actors through the real daemon and CLI: the same contract as Python actors,
the runtime's limits, refusals at spawn, and interop with Python actors both ways."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ROOT, DaemonFactory, DaemonProcess, bin_path

pytestmark = pytest.mark.e2e

COUNTER = str(EXAMPLES / "wasm-counter" / "manifest.toml")
NAMES = str(EXAMPLES / "names" / "manifest.toml")
ECHO = str(EXAMPLES / "echo" / "manifest.toml")


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, r.stderr
    return r.stdout


def _manifest(folder: Path, name: str, component: Path, extra: str = "") -> str:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / component.name
    shutil.copyfile(component, target)
    manifest = folder / f"{name}.toml"
    manifest.write_text(f'name = "{name}"\ncomponent = "{component.name}"\n{extra}')
    return str(manifest)


def test_inspect_alone_tells_a_component_actor(theaterd: DaemonProcess) -> None:
    _ok(theaterd.ctl("spawn", COUNTER))
    view = json.loads(_ok(theaterd.ctl("--json", "inspect", "wasm-counter")))
    assert view["kind"] == "wasm" and view["worker"]["pid"] > 0
    listed = json.loads(_ok(theaterd.ctl("--json", "list")))
    assert "kind" not in listed[0]


def test_a_spinning_component_is_stopped_by_its_handler_timeout_while_others_answer(
        theaterd: DaemonProcess, short_tmp: Path) -> None:
    _ok(theaterd.ctl("spawn", str(EXAMPLES / "wasm-spin" / "manifest.toml")))
    _ok(theaterd.ctl("spawn", COUNTER))
    _ok(theaterd.ctl("spawn", ECHO))
    started = time.monotonic()
    r = theaterd.ctl("request", "wasm-spin", "{}")
    assert r.returncode == 1 and "handler exceeded its time limit of 1 s" in r.stderr, r.stderr
    assert time.monotonic() - started < 15
    assert json.loads(_ok(theaterd.ctl("request", "wasm-counter", '{"type": "get"}'))) == {"count": 0}
    assert json.loads(_ok(theaterd.ctl("request", "echo", '{"x": 1}'))) == {"x": 1}
    events = json.loads(_ok(theaterd.ctl("--json", "chain", "show", "wasm-spin")))
    assert events[-1]["data"]["error"] == "handler exceeded its time limit of 1 s"
    assert json.loads(_ok(theaterd.ctl("--json", "list")))[0]["status"] == "running"  # a limit is not a crash
    _ok(theaterd.ctl("chain", "verify", "wasm-spin"))


def test_a_memory_hungry_component_is_stopped_at_its_limit(theaterd: DaemonProcess, short_tmp: Path) -> None:
    manifest = _manifest(short_tmp / "hog", "hog", EXAMPLES / "wasm-hog" / "hog.wasm", "memory_limit = 8388608\n")
    _ok(theaterd.ctl("spawn", manifest))
    r = theaterd.ctl("request", "hog", "{}")
    assert r.returncode == 1 and "memory limit of 8388608 bytes exceeded" in r.stderr, r.stderr
    r = theaterd.ctl("request", "hog", "{}")  # the instance was rebuilt: the same, again
    assert r.returncode == 1 and "memory limit" in r.stderr


@pytest.mark.parametrize(
    ("component", "needle"),
    [
        (ROOT / "tests" / "wasm" / "bad-import.wasm", "which the host does not provide"),
        (ROOT / "tests" / "wasm" / "core-module.wasm", "is not a WebAssembly component"),
    ],
    ids=["unknown-import", "core-module"],
)
def test_a_file_that_cannot_be_a_component_actor_is_refused_at_spawn(
        theaterd: DaemonProcess, short_tmp: Path, component: Path, needle: str) -> None:
    r = theaterd.ctl("spawn", _manifest(short_tmp / "bad", "bad", component))
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert json.loads(_ok(theaterd.ctl("--json", "list", "--all"))) == []


def test_garbage_is_refused_at_spawn(theaterd: DaemonProcess, short_tmp: Path) -> None:
    folder = short_tmp / "junk"
    folder.mkdir()
    (folder / "junk.wasm").write_bytes(b"\0asm this is not wasm at all" * 10)
    (folder / "junk.toml").write_text('name = "junk"\ncomponent = "junk.wasm"\n')
    r = theaterd.ctl("spawn", str(folder / "junk.toml"))
    assert r.returncode == 2 and "not a WebAssembly component" in r.stderr, r.stderr


def test_a_python_actor_and_a_component_talk_both_ways(theaterd: DaemonProcess) -> None:
    # the greeter (Python compiled to a component) asks the Python actor 'names', and
    # answers a Python-side channel
    _ok(theaterd.ctl("spawn", NAMES))
    _ok(theaterd.ctl("spawn", str(EXAMPLES / "wasm-greeter" / "manifest.toml"), timeout=120))
    reply = json.loads(_ok(theaterd.ctl("request", "wasm-greeter", '{"type": "greet"}')))
    assert reply == {"greeting": "Hello, Ada and Grace!"}
    r = theaterd.ctl("channel", "--linger", "0.5", "wasm-greeter", "{}", input='{"hello": 1}\n')
    assert r.returncode == 0, r.stderr
    sent = [e for e in json.loads(_ok(theaterd.ctl("--json", "chain", "show", "wasm-greeter")))
            if e["type"] == "message-server/request"]
    assert sent and sent[0]["data"]["peer_name"] == "names"
    _ok(theaterd.ctl("chain", "verify", "wasm-greeter"))


def test_accepted_sends_to_a_component_survive_kill_9_exactly_once(daemon_factory: DaemonFactory) -> None:
    from theaterctl.client import Client

    d = daemon_factory()
    d.start()
    _ok(d.ctl("spawn", COUNTER))
    with Client.connect(d.socket) as c:
        for _ in range(200):
            c.send("wasm-counter", {"type": "increment", "amount": 1})
    d.kill()
    d.start()
    deadline = time.monotonic() + 30
    while True:
        count = json.loads(_ok(d.ctl("request", "wasm-counter", '{"type": "get"}')))["count"]
        if count == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert count == 200
    handled = [e for e in json.loads(_ok(d.ctl("--json", "chain", "show", "wasm-counter")))
               if e["type"] == "message-server/handle-send"]
    assert len(handled) == 200
    _ok(d.ctl("chain", "verify", "wasm-counter"))


def test_new_wasm_scaffolds_a_component_that_builds_and_runs(theaterd: DaemonProcess, short_tmp: Path) -> None:
    missing = [tool for tool in ("clang", "wasm-ld") if shutil.which(tool) is None]
    if shutil.which("wasm-tools") is None and not Path(bin_path("wasm-tools")).exists():
        missing.append("wasm-tools")
    r = theaterd.ctl("new", "fast-thing", "--wasm", "--dir", str(short_tmp / "ft"))
    assert r.returncode == 0, r.stderr
    assert (short_tmp / "ft" / "fast_thing.c").exists() and (short_tmp / "ft" / "build.sh").exists()
    if missing:
        pytest.skip(f"the C toolchain is missing here: {', '.join(missing)}")
    env = dict(theaterd.env, PATH=f"{Path(bin_path('theaterctl')).parent}:{theaterd.env.get('PATH', '')}")
    build = subprocess.run(["sh", str(short_tmp / "ft" / "build.sh")], capture_output=True, text=True, env=env,
                           timeout=120)
    assert build.returncode == 0, build.stderr
    _ok(theaterd.ctl("spawn", str(short_tmp / "ft" / "manifest.toml")))
    assert json.loads(_ok(theaterd.ctl("request", "fast-thing", '{"ping": true}'))) == {"ping": True}
