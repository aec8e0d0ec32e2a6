"""The README's core flow, through the real theaterd and the real theaterctl."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, DaemonProcess

pytestmark = pytest.mark.e2e

COUNTER = str(EXAMPLES / "counter" / "manifest.toml")
WASM_COUNTER = str(EXAMPLES / "wasm-counter" / "manifest.toml")


@pytest.mark.parametrize("manifest", [COUNTER, WASM_COUNTER], ids=["python", "wasm"])
def test_counter_tour(theaterd: DaemonProcess, manifest: str) -> None:
    # the C component behaves, and is recorded, exactly as the Python actor is
    r = theaterd.ctl("--json", "spawn", manifest, "--name", "counter")
    assert r.returncode == 0, r.stderr
    spawned = json.loads(r.stdout)
    assert spawned["name"] == "counter" and len(spawned["id"]) == 36
    kind = json.loads(theaterd.ctl("--json", "inspect", "counter").stdout)["kind"]
    assert kind == ("wasm" if manifest == WASM_COUNTER else "python")

    r = theaterd.ctl("send", "counter", '{"type": "increment", "amount": 2}')
    assert r.returncode == 0, r.stderr
    r = theaterd.ctl("request", "counter", '{"type": "get"}')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"count": 2}

    r = theaterd.ctl("--json", "list")
    actors = json.loads(r.stdout)
    assert [(a["name"], a["status"]) for a in actors] == [("counter", "running")]
    assert actors[0]["id"] == spawned["id"]

    r = theaterd.ctl("--json", "chain", "show", "counter")
    events = json.loads(r.stdout)
    assert [e["type"] for e in events] == [
        "runtime/spawn", "message-server/handle-send", "message-server/handle-request",
    ]
    assert events[0]["parent_hash"] is None
    for prev, ev in zip(events, events[1:]):
        assert ev["parent_hash"] == prev["hash"] and len(ev["hash"]) == 64
    assert events[1]["data"]["peer"] == "external" and events[1]["data"]["outcome"] == "ok"

    r = theaterctl_plain = theaterd.ctl("chain", "show", "counter")
    assert theaterctl_plain.returncode == 0
    assert "message-server/handle-send" in r.stdout and "SEQ" in r.stdout

    r = theaterd.ctl("chain", "verify", "counter")
    assert r.returncode == 0 and "3 events" in r.stdout

    r = theaterd.ctl("stop", "counter")
    assert r.returncode == 0
    r = theaterd.ctl("--json", "list")
    assert json.loads(r.stdout) == []


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("request", "counter", "not json"), 2, "not valid JSON"),
        (("request", "nobody", "{}"), 3, "unknown actor"),
        (("request", "counter", '{"type": "nope"}'), 1, "unknown request type"),
        (("send", "counter", "@/nonexistent/file.json"), 2, "does not exist"),
        (("spawn", "/nonexistent/manifest.toml"), 2, "does not exist"),
        (("chain", "show", "nobody"), 3, "unknown actor"),
    ],
)
def test_errors_are_one_line_with_exit_codes(theaterd: DaemonProcess, args: tuple[str, ...], code: int,
                                             needle: str) -> None:
    assert theaterd.ctl("spawn", COUNTER).returncode == 0
    r = theaterd.ctl(*args)
    assert r.returncode == code, (r.stdout, r.stderr)
    assert needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


def test_message_from_stdin_and_file(theaterd: DaemonProcess, short_tmp: Path) -> None:
    assert theaterd.ctl("spawn", COUNTER).returncode == 0
    assert theaterd.ctl("send", "counter", "-", input='{"type": "increment", "amount": 3}').returncode == 0
    msg = short_tmp / "m.json"
    msg.write_text('{"type": "increment", "amount": 4}')
    assert theaterd.ctl("send", "counter", f"@{msg}").returncode == 0
    r = theaterd.ctl("request", "counter", '{"type": "get"}')
    assert json.loads(r.stdout) == {"count": 7}


def test_actor_to_actor_request(theaterd: DaemonProcess) -> None:
    assert theaterd.ctl("spawn", str(EXAMPLES / "names" / "manifest.toml")).returncode == 0
    assert theaterd.ctl("spawn", str(EXAMPLES / "greeter" / "manifest.toml")).returncode == 0
    r = theaterd.ctl("request", "greeter", '{"type": "greet"}')
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"greeting": "Hello, Ada and Grace!"}
    events = json.loads(theaterd.ctl("--json", "chain", "show", "greeter").stdout)
    kinds = [e["type"] for e in events]
    assert kinds[-2:] == ["message-server/request", "message-server/handle-request"]
    assert events[-2]["data"]["peer_name"] == "names"
    names_events = json.loads(theaterd.ctl("--json", "chain", "show", "names").stdout)
    assert names_events[-1]["data"]["peer_name"] == "greeter"


def test_daemon_lifecycle(short_tmp: Path) -> None:
    d = DaemonProcess(socket=short_tmp / "s.sock", home=short_tmp / "home")
    r = d.ctl("daemon", "status")
    assert r.returncode == 69
    r = d.ctl("daemon", "start")
    assert r.returncode == 0, r.stderr
    try:
        assert d.ctl("daemon", "status").returncode == 0
        r = d.ctl("daemon", "start")
        assert r.returncode == 0 and "already running" in r.stderr
    finally:
        r = d.ctl("daemon", "stop")
    assert r.returncode == 0, r.stderr
    assert d.ctl("daemon", "status").returncode == 69
    assert d.ctl("list").returncode == 69
