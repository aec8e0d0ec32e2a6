"""Limits on what one client can make the daemon read, hold or keep in flight."""

from __future__ import annotations

import json
import math
import os
import socket
import struct
import threading
import time
from pathlib import Path

import cbor2
import pytest

from daemon import wire
from tests.conftest import EXAMPLES, DaemonFactory, DaemonProcess
from theaterctl.client import Client

pytestmark = pytest.mark.e2e

HANG = 20.0  # "did not hang": every call here is answered in well under a second


def _still_answers(d: DaemonProcess) -> None:
    r = d.ctl("request", "counter", '{"type": "get"}', timeout=HANG)
    assert r.returncode == 0 and "count" in r.stdout, r.stderr


# ----------------------------------------------------------------------
# manifests and components: regular files only, bounded


def test_spawn_of_a_fifo_or_a_device_is_bad_input_and_the_daemon_keeps_answering(
        theaterd: DaemonProcess, short_tmp: Path) -> None:
    assert theaterd.ctl("spawn", str(EXAMPLES / "counter" / "manifest.toml")).returncode == 0
    fifo = short_tmp / "fifo.toml"
    os.mkfifo(fifo)
    r = theaterd.ctl("spawn", str(fifo), timeout=HANG)
    assert r.returncode == 2, r.stderr
    assert r.stderr == f"theaterctl: error: manifest {fifo} is a FIFO, not a regular file\n"
    _still_answers(theaterd)
    r = theaterd.ctl("spawn", "/dev/zero", timeout=HANG)
    assert r.returncode == 2, r.stderr
    assert r.stderr == "theaterctl: error: manifest /dev/zero is a character device, not a regular file\n"
    _still_answers(theaterd)


def test_a_fifo_component_is_bad_input(theaterd: DaemonProcess, short_tmp: Path) -> None:
    assert theaterd.ctl("spawn", str(EXAMPLES / "counter" / "manifest.toml")).returncode == 0
    os.mkfifo(short_tmp / "pipe.py")
    manifest = short_tmp / "m.toml"
    manifest.write_text('name = "piped"\ncomponent = "pipe.py"\n')
    r = theaterd.ctl("spawn", str(manifest), timeout=HANG)
    assert r.returncode == 2 and "pipe.py is a FIFO, not a regular file" in r.stderr, r.stderr
    _still_answers(theaterd)


def test_component_size_cap_is_an_option(daemon_factory: DaemonFactory, short_tmp: Path) -> None:
    d = daemon_factory("--max-component-bytes", "2000")
    d.start()
    assert d.ctl("spawn", str(EXAMPLES / "counter" / "manifest.toml")).returncode == 0  # small enough
    (short_tmp / "big.py").write_text("def handle_send(state, params):\n    return (state,)\n" + "#" * 3000)
    manifest = short_tmp / "m.toml"
    manifest.write_text('name = "big"\ncomponent = "big.py"\n')
    r = d.ctl("spawn", str(manifest), timeout=HANG)
    assert r.returncode == 2, r.stderr
    assert "big.py is too large:" in r.stderr and "the limit is 2000 bytes" in r.stderr
    _still_answers(d)


def test_a_name_that_looks_like_an_id_is_refused(theaterd: DaemonProcess) -> None:
    r = theaterd.ctl("spawn", str(EXAMPLES / "counter" / "manifest.toml"), "--name",
                     "abcdef01-2345-6789-abcd-ef0123456789")
    assert r.returncode == 2 and "looks like an actor id" in r.stderr, r.stderr


# ----------------------------------------------------------------------
# non-finite numbers are bad input (2), not a protocol error


def _frame(obj: object) -> bytes:
    body = cbor2.dumps(obj)
    return struct.pack(">I", len(body)) + body


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_timeout_and_since_are_bad_input(theaterd: DaemonProcess, value: float) -> None:
    assert theaterd.ctl("spawn", str(EXAMPLES / "counter" / "manifest.toml")).returncode == 0
    calls = {
        1: ("send", {"actor": "counter", "msg": b"{}", "timeout": value}),
        2: ("request", {"actor": "counter", "msg": b"{}", "timeout": value}),
        3: ("channel-open", {"actor": "counter", "msg": b"{}", "timeout": value}),
        4: ("chain", {"actor": "counter", "since": value}),
        5: ("list", {}),
    }
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(HANG)
        s.connect(str(theaterd.socket))
        s.sendall(_frame({"t": "hello", "version": 1, "client": "test"}))
        for i, (op, args) in calls.items():
            s.sendall(_frame({"t": "call", "id": i, "op": op, "args": args}))
        reader = wire.FrameReader()
        got: dict[int, wire.Frame] = {}
        while len(got) < len(calls):
            data = s.recv(65536)
            assert data, f"connection closed; got {got}"
            reader.feed(data)
            got.update({f.id: f for f in reader.frames() if isinstance(f, (wire.Reply, wire.Error)) and f.id})
    errors = {i: f.message for i, f in got.items() if isinstance(f, wire.Error) and f.code == 2}
    assert sorted(errors) == [1, 2, 3, 4], got
    for i in (1, 2, 3):
        assert "timeout must be a positive number of seconds" in errors[i]
    assert "since" in errors[4], errors[4]
    assert isinstance(got[5], wire.Reply)  # the connection is still fine


# ----------------------------------------------------------------------
# calls in flight per connection


SLOW = '''
import time

def handle_request(state, params):
    time.sleep(0.002)
    return (state, (params[0],))
'''


def _status(d: DaemonProcess) -> dict:
    with Client.connect(d.socket, timeout=HANG) as c:
        return c.call("status")


def test_pipelined_calls_beyond_the_cap_wait_and_all_get_answered(daemon_factory: DaemonFactory, short_tmp: Path) -> None:
    cap, total = 50, 1500
    d = daemon_factory("--max-inflight", str(cap), "--mailbox-size", "100000")
    d.start()
    (short_tmp / "slow.py").write_text(SLOW)
    (short_tmp / "slow.toml").write_text('name = "slow"\ncomponent = "slow.py"\n')
    assert d.ctl("spawn", str(short_tmp / "slow.toml")).returncode == 0
    assert d.ctl("spawn", str(EXAMPLES / "counter" / "manifest.toml")).returncode == 0

    hog = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hog.settimeout(HANG)
    hog.connect(str(d.socket))
    hog.sendall(_frame({"t": "hello", "version": 1, "client": "hog"}))
    calls = b"".join(_frame({"t": "call", "id": i, "op": "request",
                             "args": {"actor": "slow", "msg": json.dumps({"i": i}).encode()}})
                     for i in range(1, total + 1))
    sender = threading.Thread(target=hog.sendall, args=(calls,), daemon=True)  # blocks while the daemon waits
    sender.start()
    try:
        # meanwhile another client gets prompt answers, and the hog never has more than the cap in flight
        start = time.monotonic()
        _still_answers(d)
        assert time.monotonic() - start < HANG
        status = _status(d)
        assert 0 < status["calls_in_flight_peak"] <= cap, status
        # now read: every call is answered, each exactly once
        reader = wire.FrameReader()
        got: dict[int, bytes] = {}
        deadline = time.monotonic() + 120
        while len(got) < total and time.monotonic() < deadline:
            data = hog.recv(65536)
            assert data, f"disconnected after {len(got)} answers"
            reader.feed(data)
            for f in reader.frames():
                if isinstance(f, wire.Welcome):
                    continue
                assert isinstance(f, wire.Reply), f
                assert f.id not in got
                got[f.id] = f.result
        assert sorted(got) == list(range(1, total + 1))
        assert all(json.loads(got[i]) == {"i": i} for i in (1, total // 2, total))
        sender.join(HANG)
        assert not sender.is_alive()
    finally:
        hog.close()
    status = _status(d)
    assert status["calls_in_flight_peak"] <= cap, status


def _peak_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_replies_queued_for_a_client_that_does_not_read_are_bounded_in_bytes(theaterd: DaemonProcess) -> None:
    # 400 replies of 400 KB (160 MB) to a client that reads none of them until it has sent every
    # call: the daemon stops reading its calls once a few tens of MiB of replies wait, so its
    # memory does not grow by the 160 MB; then every reply arrives
    assert theaterd.ctl("spawn", str(EXAMPLES / "echo" / "manifest.toml")).returncode == 0
    assert theaterd.ctl("request", "echo", "{}").returncode == 0
    before = _peak_rss(theaterd.pid)
    total, pad = 400, "x" * 400_000
    hog = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    hog.settimeout(HANG)
    hog.connect(str(theaterd.socket))
    hog.sendall(_frame({"t": "hello", "version": 1, "client": "hog"}))

    def send_all() -> None:
        for i in range(1, total + 1):
            msg = json.dumps({"i": i, "pad": pad}).encode()
            hog.sendall(_frame({"t": "call", "id": i, "op": "request", "args": {"actor": "echo", "msg": msg}}))

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    try:
        sender.join(5)  # it blocks once the daemon stops reading (on today's code it finishes)
        _still_answers_echo(theaterd)
        grown = _peak_rss(theaterd.pid) - before
        reader = wire.FrameReader(max_frame=1 << 21)
        got: set[int] = set()
        deadline = time.monotonic() + 120
        while len(got) < total and time.monotonic() < deadline:
            data = hog.recv(1 << 20)
            assert data, f"disconnected after {len(got)} answers"
            reader.feed(data)
            for f in reader.frames():
                if isinstance(f, wire.Reply):
                    got.add(f.id)
                else:
                    assert isinstance(f, wire.Welcome), f
        assert got == set(range(1, total + 1))
        sender.join(HANG)
    finally:
        hog.close()
    assert grown < 100 << 20, f"the daemon grew by {grown >> 20} MiB"


def _still_answers_echo(d: DaemonProcess) -> None:
    r = d.ctl("request", "echo", '{"other": "client"}', timeout=HANG)
    assert r.returncode == 0 and json.loads(r.stdout) == {"other": "client"}, r.stderr
