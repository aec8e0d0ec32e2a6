"""Failure semantics through the real CLI: timeouts, cycles, hung handlers, backpressure."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import DaemonFactory, DaemonProcess, bin_path

pytestmark = pytest.mark.e2e

SLOW = '''
import json, time
from actors import message_server

def handle_request(state, params):
    msg = json.loads(params[0])
    if "sleep" in msg:
        time.sleep(msg["sleep"])
    if "ask" in msg:
        return state, (message_server.request(msg["ask"], json.dumps(msg.get("then", {})).encode()),)
    return state, (b'{"ok": true}',)

def handle_send(state, params):
    msg = json.loads(params[0])
    time.sleep(msg.get("sleep", 0))
    return (state,)
'''


def _actor(tmp: Path, name: str, extra: str = "") -> str:
    (tmp / "slow.py").write_text(SLOW)
    manifest = tmp / f"{name}.toml"
    manifest.write_text(f'name = "{name}"\ncomponent = "slow.py"\n{extra}')
    return str(manifest)


def test_request_timeout_is_exit_4_and_the_late_reply_is_recorded(theaterd: DaemonProcess, short_tmp: Path) -> None:
    assert theaterd.ctl("spawn", _actor(short_tmp, "slow")).returncode == 0
    r = theaterd.ctl("--timeout", "0.3", "request", "slow", '{"sleep": 1.0}')
    assert r.returncode == 4, r.stderr
    assert "timed out after 0.3 s" in r.stderr
    r = theaterd.ctl("request", "slow", "{}")  # queued behind the slow one; not given its reply
    assert r.returncode == 0 and json.loads(r.stdout) == {"ok": True}
    events = json.loads(theaterd.ctl("--json", "chain", "show", "slow", "--type",
                                     "message-server/handle-request").stdout)
    assert events[0]["data"]["reply"].startswith("discarded")
    assert "reply" not in events[1]["data"]


def test_request_cycle_fails_fast_naming_the_cycle(theaterd: DaemonProcess, short_tmp: Path) -> None:
    assert theaterd.ctl("spawn", _actor(short_tmp, "ping")).returncode == 0
    assert theaterd.ctl("spawn", _actor(short_tmp, "pong")).returncode == 0
    start = time.monotonic()
    r = theaterd.ctl("request", "ping", '{"ask": "pong", "then": {"ask": "ping"}}')
    assert time.monotonic() - start < 10
    assert r.returncode == 1
    assert "request cycle: pong -> ping -> pong" in r.stderr
    r = theaterd.ctl("request", "ping", '{"ask": "ping"}')
    assert r.returncode == 1 and "request cycle: ping -> ping" in r.stderr


def test_hung_handler_shows_busy_and_stop_still_works(theaterd: DaemonProcess, short_tmp: Path) -> None:
    assert theaterd.ctl("spawn", _actor(short_tmp, "stuck")).returncode == 0
    assert theaterd.ctl("send", "stuck", '{"sleep": 3600}').returncode == 0
    waiter = subprocess.Popen([bin_path("theaterctl"), "request", "stuck", "{}"], env=theaterd.env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        busy = None
        while time.monotonic() < deadline:
            actors = json.loads(theaterd.ctl("--json", "list").stdout)
            busy = actors[0].get("busy")
            if busy:
                break
            time.sleep(0.05)
        assert busy and busy["handler"] == "handle_send"
        assert "handle_send:" in theaterd.ctl("list").stdout  # the BUSY column, one token piped
        r = theaterd.ctl("stop", "stuck")
        assert r.returncode == 0, r.stderr
        assert r.stdout.strip() == "stopped stuck (1 accepted message never handled, dropped)"
        out, err = waiter.communicate(timeout=30)
        assert waiter.returncode == 3 and "stopped" in err
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.communicate()


def test_full_mailbox_applies_backpressure_then_fails(theaterd: DaemonProcess, short_tmp: Path) -> None:
    assert theaterd.ctl("spawn", _actor(short_tmp, "tiny", "mailbox_size = 2\n")).returncode == 0
    assert theaterd.ctl("send", "tiny", '{"sleep": 5}').returncode == 0
    time.sleep(0.2)
    for _ in range(2):
        assert theaterd.ctl("send", "tiny", "{}").returncode == 0
    start = time.monotonic()
    r = theaterd.ctl("--timeout", "0.5", "send", "tiny", "{}")
    assert r.returncode == 75 and "mailbox full" in r.stderr
    assert time.monotonic() - start >= 0.4
    assert theaterd.ctl("daemon", "status").returncode == 0


def test_handler_error_keeps_the_actor_serving_without_traceback(theaterd: DaemonProcess, short_tmp: Path) -> None:
    (short_tmp / "bad.py").write_text("def handle_request(state, params):\n    raise KeyError('missing thing')\n")
    (short_tmp / "bad.toml").write_text('name = "bad"\ncomponent = "bad.py"\n')
    assert theaterd.ctl("spawn", str(short_tmp / "bad.toml")).returncode == 0
    for _ in range(2):
        r = theaterd.ctl("request", "bad", "{}")
        assert r.returncode == 1 and "missing thing" in r.stderr and "Traceback" not in r.stderr
    r = theaterd.ctl("send", "bad", "{}")
    assert r.returncode == 1 and "actor bad has no handle_send" in r.stderr  # refused at once, not accepted
    events = json.loads(theaterd.ctl("--json", "chain", "show", "bad").stdout)
    assert [e["data"].get("outcome") for e in events[1:3]] == ["error", "error"]


# ----------------------------------------------------------------------
# idle connections (--idle-timeout): closed without an error frame unless exempt


def _closed_within(client: object, limit: float) -> float:
    """Seconds until the daemon closes ``client``'s connection (EOF), waiting at most ``limit``."""
    sock = client.sock  # type: ignore[attr-defined]
    sock.settimeout(limit)
    start = time.monotonic()
    assert sock.recv(1) == b""  # EOF: no error frame comes first
    return time.monotonic() - start


def test_an_idle_connection_is_closed_after_the_idle_timeout(daemon_factory: DaemonFactory) -> None:
    from theaterctl.client import Client

    d = daemon_factory("--idle-timeout", "1")
    d.start()
    with Client.connect(d.socket) as c:
        c.call("list")
        assert 0.8 <= _closed_within(c, 20) < 10


def test_frames_keep_a_connection_open_past_the_idle_timeout(daemon_factory: DaemonFactory) -> None:
    from theaterctl.client import Client

    d = daemon_factory("--idle-timeout", "2")
    d.start()
    with Client.connect(d.socket) as c:
        end = time.monotonic() + 4
        while time.monotonic() < end:  # a frame every 0.2 s or so: never idle for 2 s (a loaded machine too)
            assert c.call("list") == []
            time.sleep(0.2)
        assert c.call("list") == []
        assert _closed_within(c, 20) >= 1.6  # and idle once the frames stop


def test_a_call_in_flight_keeps_a_connection_open_then_it_is_idle(daemon_factory: DaemonFactory, short_tmp: Path) -> None:
    from theaterctl.client import Client

    d = daemon_factory("--idle-timeout", "1")
    d.start()
    assert d.ctl("spawn", _actor(short_tmp, "slow")).returncode == 0
    with Client.connect(d.socket, timeout=30) as c:
        start = time.monotonic()
        assert json.loads(c.call("request", actor="slow", msg=b'{"sleep": 2.5}', timeout=30)) == {"ok": True}
        assert time.monotonic() - start >= 2.4  # answered, not cut off at 1 s
        assert _closed_within(c, 20) < 10
