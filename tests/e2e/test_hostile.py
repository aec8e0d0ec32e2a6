"""Bad input, other users and unsafe directories against the real daemon."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import cbor2
import pytest

from daemon import wire
from tests.conftest import EXAMPLES, DaemonFactory, DaemonProcess, bin_path
from theaterctl.client import Client

pytestmark = pytest.mark.e2e

COUNTER = str(EXAMPLES / "counter" / "manifest.toml")


def _connect(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(15)
    s.connect(str(path))
    return s


def _frame(obj: object) -> bytes:
    body = cbor2.dumps(obj)
    return struct.pack(">I", len(body)) + body


def _read_frames(s: socket.socket, until_close: bool = True) -> list[wire.Frame]:
    reader = wire.FrameReader()
    frames: list[wire.Frame] = []
    while True:
        try:
            data = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not data:
            break
        reader.feed(data)
        frames.extend(reader.frames())
        if not until_close and frames:
            break
    return frames


HELLO = _frame({"t": "hello", "version": 1, "client": "test"})

# (bytes sent after connecting, description)
CORPUS: list[tuple[bytes, str]] = [
    (b"\xff\xff\xff\xff", "huge length prefix"),
    (struct.pack(">I", 5) + b"\x01\x02", "truncated frame then close"),
    (_frame([1, 2, 3]), "not a map"),
    (_frame({"t": "hello", "version": 99}), "wrong protocol version"),
    (_frame({"t": "call", "id": 1, "op": "list"}), "call before hello"),
    (struct.pack(">I", 3) + b"\x9f\x01\xff", "indefinite-length array"),
    (struct.pack(">I", 6) + b"\xc1\x1a\x00\x00\x00\x01", "a CBOR tag"),
    (HELLO + struct.pack(">I", 7) + b"\xa2\x61a\x01\x61a\x02", "duplicate keys"),
    (HELLO + struct.pack(">I", 2) + b"\x01\x02", "trailing bytes"),
    (HELLO + _frame({"t": "bogus"}), "unknown frame type"),
    (HELLO + _frame({"t": "reply", "id": 1}), "reply from a client"),
    (HELLO + struct.pack(">I", 40) + b"\x81" * 39 + b"\x01", "nesting too deep"),
    (HELLO + b"\x00\x00\x00", "partial header then close"),
    (os.urandom(64), "random bytes"),
]


def test_malformed_corpus_then_normal_request(theaterd: DaemonProcess) -> None:
    assert theaterd.ctl("spawn", COUNTER).returncode == 0
    assert theaterd.ctl("send", "counter", '{"type": "increment"}').returncode == 0
    for payload, what in CORPUS:
        s = _connect(theaterd.socket)
        try:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            frames = _read_frames(s)
        finally:
            s.close()
        errors = [f for f in frames if isinstance(f, wire.Error)]
        if what not in ("partial header then close", "truncated frame then close"):
            assert errors, f"no error frame for {what}: {frames}"
            assert errors[-1].code == 76, (what, errors)
    r = theaterd.ctl("request", "counter", '{"type": "get"}')
    assert r.returncode == 0 and json.loads(r.stdout) == {"count": 1}


def test_bad_calls_get_error_replies_and_the_connection_survives(theaterd: DaemonProcess) -> None:
    s = _connect(theaterd.socket)
    try:
        s.sendall(HELLO)
        s.sendall(_frame({"t": "call", "id": 1, "op": "no-such-op", "args": {}}))
        s.sendall(_frame({"t": "call", "id": 2, "op": "request", "args": {"actor": 5, "msg": b"{}"}}))
        s.sendall(_frame({"t": "call", "id": 3, "op": "request", "args": {"actor": "x"}}))
        s.sendall(_frame({"t": "call", "id": 4, "op": "list", "args": {}}))
        reader = wire.FrameReader()
        got: dict[int, wire.Frame] = {}
        deadline = time.monotonic() + 15
        while len(got) < 4 and time.monotonic() < deadline:
            reader.feed(s.recv(65536))
            for f in reader.frames():
                if isinstance(f, (wire.Reply, wire.Error)) and f.id is not None:
                    got[f.id] = f
    finally:
        s.close()
    assert isinstance(got[1], wire.Error) and got[1].code == 76 and "unknown operation" in got[1].message
    assert isinstance(got[2], wire.Error) and got[2].code == 76 and "'actor'" in got[2].message
    assert isinstance(got[3], wire.Error) and got[3].code == 76 and "missing" in got[3].message
    assert isinstance(got[4], wire.Reply) and got[4].result == []


def test_partial_frame_then_silence_is_cut_off(theaterd: DaemonProcess) -> None:
    s = _connect(theaterd.socket)
    try:
        s.sendall(HELLO + struct.pack(">I", 100) + b"\xa1")
        start = time.monotonic()
        frames = _read_frames(s)
        elapsed = time.monotonic() - start
    finally:
        s.close()
    assert elapsed < 14
    assert any(isinstance(f, wire.Error) and f.code == 76 and "incomplete" in f.message for f in frames)
    assert theaterd.ctl("daemon", "status").returncode == 0


def test_client_that_never_reads_does_not_stall_others(theaterd: DaemonProcess) -> None:
    assert theaterd.ctl("spawn", COUNTER).returncode == 0
    hog = _connect(theaterd.socket)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        hog.sendall(HELLO)
        calls = b"".join(_frame({"t": "call", "id": i, "op": "list", "args": {}}) for i in range(1, 20001))
        hog.settimeout(0.5)
        try:
            hog.sendall(calls)
        except (TimeoutError, BrokenPipeError, ConnectionResetError):
            pass
        start = time.monotonic()
        r = theaterd.ctl("request", "counter", '{"type": "get"}')
        assert r.returncode == 0, r.stderr
        assert time.monotonic() - start < 15
    finally:
        hog.close()


def test_too_many_connections_get_busy(daemon_factory: DaemonFactory) -> None:
    d = daemon_factory("--max-connections", "2")
    d.start()
    held = [_connect(d.socket) for _ in range(2)]
    try:
        for s in held:
            s.sendall(HELLO)
        time.sleep(0.2)
        extra = _connect(d.socket)
        frames = _read_frames(extra)
        extra.close()
        assert any(isinstance(f, wire.Error) and f.code == 75 and "busy" in f.message for f in frames), frames
    finally:
        for s in held:
            s.close()


def test_socket_and_directory_modes(theaterd: DaemonProcess) -> None:
    assert (os.stat(theaterd.socket).st_mode & 0o777) == 0o600
    assert (os.stat(theaterd.socket.parent).st_mode & 0o777) == 0o700


@pytest.mark.parametrize("problem", ["mode", "symlink"])
def test_daemon_refuses_unsafe_socket_directory(short_tmp: Path, problem: str) -> None:
    target = short_tmp / "real"
    target.mkdir(mode=0o700)
    if problem == "mode":
        os.chmod(target, 0o755)
        sock_dir = target
    else:
        sock_dir = short_tmp / "link"
        sock_dir.symlink_to(target)
    r = subprocess.run([bin_path("theaterd"), "--socket", str(sock_dir / "s.sock"), "--home", str(short_tmp / "h")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "refusing socket directory" in r.stderr
    assert len([ln for ln in r.stderr.splitlines() if "error" in ln]) == 1


OTHER_UID = 65534  # nobody
# interpreters another user can normally run; the one running the tests may live under a
# private directory (a clone in a 0700 home, pyenv under /root), so it is tried last
_PYTHONS = ("/usr/bin/python3", "/usr/local/bin/python3", "/bin/python3")
# the hello frame, written out by hand: the other user runs no project code and no cbor2
_HELLO_BYTES = bytes.fromhex("00000024" "a3" "6174" "6568656c6c6f" "6776657273696f6e" "01" "66636c69656e74"
                             "6a6f746865722d75736572")
# connect, send the hello, print every byte the daemon sends until it closes, as hex
_PEER_SCRIPT = """
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
s.connect(sys.argv[1])
try:
    s.sendall(bytes.fromhex(sys.argv[2]))
except OSError:
    pass
data = b""
while True:
    try:
        chunk = s.recv(65536)
    except OSError:
        break
    if not chunk:
        break
    data += chunk
print(data.hex())
"""


def _as_other_user(*argv: str) -> list[str]:
    return ["setpriv", f"--reuid={OTHER_UID}", f"--regid={OTHER_UID}", "--clear-groups", *argv]


def _other_users_python() -> str | None:
    """An interpreter the other uid can run (None: it cannot run Python at all)."""
    if os.getuid() != 0 or shutil.which("setpriv") is None:
        return None
    for candidate in (*_PYTHONS, shutil.which("python3") or "", sys.executable):
        if not candidate or not os.path.exists(candidate):
            continue
        try:
            r = subprocess.run(_as_other_user(candidate, "-I", "-c", "import socket"), capture_output=True,
                               timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if r.returncode == 0:
            return candidate
    return None


def test_the_hand_built_hello_is_a_hello() -> None:
    reader = wire.FrameReader()
    reader.feed(_HELLO_BYTES)
    assert list(reader.frames()) == [wire.Hello(1, "other-user")]


@pytest.mark.skipif(os.getuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv to act as another user")
def test_peer_with_another_uid_is_refused(theaterd: DaemonProcess) -> None:
    python = _other_users_python()
    if python is None:
        pytest.skip(f"uid {OTHER_UID} cannot run any Python interpreter here")
    # open the filesystem permissions so only SO_PEERCRED stands in the way
    os.chmod(theaterd.socket.parent, 0o711)
    os.chmod(theaterd.socket, 0o666)
    try:
        r = subprocess.run(_as_other_user(python, "-I", "-c", _PEER_SCRIPT, str(theaterd.socket),
                                          _HELLO_BYTES.hex()), capture_output=True, text=True, timeout=60)
    finally:
        os.chmod(theaterd.socket.parent, 0o700)
        os.chmod(theaterd.socket, 0o600)
    assert r.returncode == 0, r.stderr
    reader = wire.FrameReader()
    reader.feed(bytes.fromhex(r.stdout.strip()))
    frames = list(reader.frames())
    assert len(frames) == 1 and isinstance(frames[0], wire.Error), frames
    assert frames[0].id is None and frames[0].code == 69 and "permission denied" in frames[0].message
    assert theaterd.ctl("daemon", "status").returncode == 0


def test_a_message_over_the_frame_limit_is_bad_input_not_a_crash(theaterd: DaemonProcess, short_tmp: Path) -> None:
    assert theaterd.ctl("spawn", str(EXAMPLES / "echo" / "manifest.toml")).returncode == 0
    big = short_tmp / "big.json"
    big.write_text(json.dumps({"x": "a" * 1_200_000}))
    r = theaterd.ctl("send", "echo", f"@{big}")
    assert r.returncode == 2 and "too large" in r.stderr and "Traceback" not in r.stderr
    assert theaterd.ctl("request", "echo", '{"still": "works"}').returncode == 0


def test_a_slow_reader_gets_every_reply_whole_and_in_order(theaterd: DaemonProcess) -> None:
    # replies far beyond the socket buffer: the daemon's writes come back partial and the
    # rest waits for room; reading slowly must still yield every frame intact
    echo = str(EXAMPLES / "echo" / "manifest.toml")
    assert theaterd.ctl("spawn", echo).returncode == 0
    messages = [json.dumps({"i": i, "pad": "x" * (40_000 + i)}).encode() for i in range(60)]
    with Client.connect(theaterd.socket) as client:
        client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ids = [client._send_call("request", {"actor": "echo", "msg": m}) for m in messages]
        time.sleep(0.5)  # let the replies pile up unread
        got: dict[int, bytes] = {}
        while len(got) < len(ids):
            frame = client._next_frame()
            assert isinstance(frame, wire.Reply), frame
            got[frame.id] = frame.result
            time.sleep(0.002)
    assert [got[i] for i in ids] == messages
    r = theaterd.ctl("request", "echo", '{"after": true}')
    assert r.returncode == 0 and json.loads(r.stdout) == {"after": True}
