"""theaterd under systemd, without systemd: sd_notify readiness and socket activation.

(a) Type=notify: theaterd sends READY=1 to the datagram socket named by
    $NOTIFY_SOCKET once it serves, and STOPPING=1 when SIGTERM starts a
    graceful shutdown.
(b) Socket activation: a listening socket handed over as fd 3 with
    LISTEN_FDS=1 and LISTEN_PID=<theaterd's pid> is served as is; theaterd does
    not bind (or, on exit, remove) the path itself.  A tiny launcher plays
    systemd's part: dup2 the socket to fd 3, set the variables, exec theaterd.
Also checks that the unit files in contrib/systemd say what docs/systemd.md promises.
"""

from __future__ import annotations

import configparser
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon import wire
from daemon.connection import Connection, Role
from tests.conftest import EXAMPLES, ROOT, bin_path
from theaterctl.client import next_frame

pytestmark = pytest.mark.e2e

COUNTER = str(EXAMPLES / "counter" / "manifest.toml")
START_TIMEOUT = 30.0

# Plays systemd: the listening socket (argv[1]) becomes fd 3, then exec theaterd (argv[2:]).
LAUNCHER = """\
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.set_inheritable(3, True)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.environ["LISTEN_FDNAMES"] = "theaterd.socket"
os.execv(sys.argv[2], sys.argv[2:])
"""


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")}
    env.update(THEATER_HOME=str(tmp / "home"), NO_COLOR="1", COLUMNS="200")
    # anything that ignores --socket would land here, not in the user's runtime dir
    env.update(THEATER_SOCKET=str(tmp / "wrong.sock"), XDG_RUNTIME_DIR=str(tmp))
    env.update(extra)
    return env


def _ctl(sock: Path, env: dict[str, str], *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run([bin_path("theaterctl"), "--socket", str(sock), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, stdin=subprocess.DEVNULL)


def _log(tmp: Path) -> str:
    try:
        return (tmp / "theaterd.log").read_text(errors="replace")[-4000:]
    except OSError:
        return ""


def _terminate(proc: subprocess.Popen[bytes], tmp: Path) -> int:
    """SIGTERM, as systemd stops a unit; the exit status (the process is killed if it hangs)."""
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=45)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        pytest.fail(f"theaterd did not exit within 45 s of SIGTERM: {_log(tmp)}")


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def _popen(cmd: list[str], tmp: Path, env: dict[str, str], pass_fds: tuple[int, ...] = ()) -> subprocess.Popen[bytes]:
    with open(tmp / "theaterd.log", "ab") as log:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, pass_fds=pass_fds)


def _wait_answering(sock: Path, env: dict[str, str], proc: subprocess.Popen[bytes], tmp: Path) -> None:
    """Until ``theaterctl daemon status`` answers on ``sock`` (failing if the daemon dies or is too slow)."""
    deadline = time.monotonic() + START_TIMEOUT
    while _ctl(sock, env, "daemon", "status").returncode != 0:
        assert proc.poll() is None, _log(tmp)
        assert time.monotonic() < deadline, _log(tmp)
        time.sleep(0.05)


def _recv_until(sock: socket.socket, wanted: str, proc: subprocess.Popen[bytes], tmp: Path,
                timeout: float = START_TIMEOUT) -> list[str]:
    """Notification datagrams until one holds the assignment ``wanted`` (e.g. READY=1)."""
    got: list[str] = []
    deadline = time.monotonic() + timeout
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            data = sock.recv(4096)
        except TimeoutError:
            if proc.poll() is not None:
                pytest.fail(f"theaterd exited ({proc.returncode}) before sending {wanted}; got {got}: {_log(tmp)}")
            continue
        lines = data.decode().split("\n")
        got.extend(lines)
        if wanted in lines:
            return got
    pytest.fail(f"no {wanted} on NOTIFY_SOCKET within {timeout} s; got {got}: {_log(tmp)}")


# -- (a) Type=notify --------------------------------------------------------------


@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_notify_ready_then_stopping(short_tmp: Path, procs: list, abstract: bool) -> None:
    sock_path = short_tmp / "d.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"theater-test-{os.getpid()}-{short_tmp.name}"
        notify.bind("\0" + name)
        address = "@" + name
    else:
        notify.bind(str(short_tmp / "n.sock"))
        address = str(short_tmp / "n.sock")
    with notify:
        env = _env(short_tmp, NOTIFY_SOCKET=address)
        proc = _popen([bin_path("theaterd"), "--socket", str(sock_path)], short_tmp, env)
        procs.append(proc)
        got = _recv_until(notify, "READY=1", proc, short_tmp)
        assert "STOPPING=1" not in got
        # READY=1 means serving: the very next client call succeeds, no retry loop needed
        r = _ctl(sock_path, env, "--json", "daemon", "status")
        assert r.returncode == 0, (r.stderr, _log(short_tmp))
        assert _ctl(sock_path, env, "spawn", COUNTER).returncode == 0
        assert _terminate(proc, short_tmp) == 0, _log(short_tmp)
        _recv_until(notify, "STOPPING=1", proc, short_tmp, timeout=5)
    assert not sock_path.exists()  # it bound the socket itself, so it removes it


def test_no_notify_socket_is_fine(short_tmp: Path, procs: list) -> None:
    """Without NOTIFY_SOCKET (or with a dead one) theaterd just runs."""
    sock_path = short_tmp / "d.sock"
    env = _env(short_tmp, NOTIFY_SOCKET=str(short_tmp / "nobody-listens.sock"))
    proc = _popen([bin_path("theaterd"), "--socket", str(sock_path)], short_tmp, env)
    procs.append(proc)
    _wait_answering(sock_path, env, proc, short_tmp)
    assert _terminate(proc, short_tmp) == 0, _log(short_tmp)


# -- (b) socket activation -----------------------------------------------------------


def _listening_socket(path: Path) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    os.chmod(path, 0o600)
    s.listen(64)
    return s


def test_socket_activation(short_tmp: Path, procs: list) -> None:
    sock_path = short_tmp / "a.sock"
    listener = _listening_socket(sock_path)
    inode = sock_path.stat().st_ino
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(short_tmp / "n.sock"))
    early = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    early.connect(str(sock_path))
    with listener, notify, early:
        env = _env(short_tmp, NOTIFY_SOCKET=str(short_tmp / "n.sock"))
        proc = _popen(
            [sys.executable, "-c", LAUNCHER, str(listener.fileno()), bin_path("theaterd"),
             "--socket", str(sock_path), "--home", str(short_tmp / "home")],
            short_tmp, env, pass_fds=(listener.fileno(),),
        )
        procs.append(proc)
        # Like systemd's, the socket accepted this connection before theaterd ran: it is answered
        # once theaterd is up (it waited in the backlog).
        conn = Connection(Role.CLIENT, "early-bird")
        early.sendall(conn.send(wire.Hello(wire.PROTOCOL_VERSION, "early-bird")))
        early.settimeout(START_TIMEOUT)
        welcome = next_frame(early, conn)
        assert isinstance(welcome, wire.Welcome), welcome
        assert welcome.pid == proc.pid  # exec kept the launcher's pid, which LISTEN_PID names
        early.close()
        _recv_until(notify, "READY=1", proc, short_tmp)

        r = _ctl(sock_path, env, "--json", "daemon", "status")
        assert r.returncode == 0, (r.stderr, _log(short_tmp))
        status = json.loads(r.stdout)
        assert status["running"] is True and status["pid"] == proc.pid

        r = _ctl(sock_path, env, "spawn", COUNTER)
        assert r.returncode == 0, (r.stderr, _log(short_tmp))
        assert _ctl(sock_path, env, "send", "counter", '{"type": "increment", "amount": 5}').returncode == 0
        r = _ctl(sock_path, env, "request", "counter", '{"type": "get"}')
        assert r.returncode == 0, (r.stderr, _log(short_tmp))
        assert json.loads(r.stdout) == {"count": 5}

        # it served the inherited socket: it did not bind its own or look at $THEATER_SOCKET
        assert sock_path.stat().st_ino == inode
        assert not (short_tmp / "wrong.sock").exists()
        assert not (short_tmp / "theater").exists()

        assert _terminate(proc, short_tmp) == 0, _log(short_tmp)
        # systemd owns the socket: still there after theaterd exits, ready to activate it again
        assert sock_path.exists() and sock_path.stat().st_ino == inode
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(5)
            probe.connect(str(sock_path))


def test_socket_activation_twice_keeps_state(short_tmp: Path, procs: list) -> None:
    """Stop, then activate again on the same socket: the second theaterd sees the first one's actors."""
    sock_path = short_tmp / "a.sock"
    listener = _listening_socket(sock_path)
    env = _env(short_tmp)
    cmd = [sys.executable, "-c", LAUNCHER, str(listener.fileno()), bin_path("theaterd"),
           "--socket", str(sock_path), "--home", str(short_tmp / "home")]
    with listener:
        first = _popen(cmd, short_tmp, env, pass_fds=(listener.fileno(),))
        procs.append(first)
        assert _ctl(sock_path, env, "spawn", COUNTER).returncode == 0, _log(short_tmp)
        assert _ctl(sock_path, env, "send", "counter", '{"type": "increment", "amount": 2}').returncode == 0
        assert _terminate(first, short_tmp) == 0, _log(short_tmp)

        second = _popen(cmd, short_tmp, env, pass_fds=(listener.fileno(),))
        procs.append(second)
        r = _ctl(sock_path, env, "--json", "chain", "show", "counter")
        assert r.returncode == 0, (r.stderr, _log(short_tmp))
        assert [e["type"] for e in json.loads(r.stdout)][:2] == ["runtime/spawn", "message-server/handle-send"]
        assert _terminate(second, short_tmp) == 0, _log(short_tmp)


def test_listen_fds_for_another_pid_are_ignored(short_tmp: Path, procs: list) -> None:
    """LISTEN_* meant for another process (e.g. leaked from a parent) must not make theaterd use fd 3."""
    sock_path = short_tmp / "d.sock"
    env = _env(short_tmp, LISTEN_FDS="1", LISTEN_PID="1")
    proc = _popen([bin_path("theaterd"), "--socket", str(sock_path)], short_tmp, env)
    procs.append(proc)
    _wait_answering(sock_path, env, proc, short_tmp)
    assert _ctl(sock_path, env, "spawn", COUNTER).returncode == 0
    assert _terminate(proc, short_tmp) == 0, _log(short_tmp)
    assert not sock_path.exists()


# -- the unit files ------------------------------------------------------------------


def _unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((ROOT / "contrib" / "systemd" / name).read_text())
    return parser


def test_unit_files() -> None:
    sock = _unit("theaterd.socket")
    assert sock["Socket"]["ListenStream"] == "%t/theater/theaterd.sock"
    assert sock["Socket"]["SocketMode"] == "0600"
    assert sock["Socket"]["DirectoryMode"] == "0700"
    assert sock["Install"]["WantedBy"] == "sockets.target"

    svc = _unit("theaterd.service")
    assert svc["Service"]["Type"] == "notify"
    exec_start = svc["Service"]["ExecStart"].split()
    assert exec_start[0].endswith("/theaterd")
    assert exec_start[exec_start.index("--socket") + 1] == sock["Socket"]["ListenStream"]
    assert svc["Unit"]["Requires"] == "theaterd.socket"

    doc = (ROOT / "docs" / "systemd.md").read_text()
    assert "systemctl --user enable --now theaterd.socket" in doc
    assert exec_start[0] in doc
