"""theaterctl as a person uses it: in an 80-column pseudo-terminal, piped, and with --json.

The terminal tests run the real CLI on a pty whose window is 80 x 24 (and
COLUMNS=80, as rich and shutil read it first); they read what a person would
see.  Synchronisation is by reading output with a deadline, never by sleeping.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyte
import pytest

from tests.conftest import EXAMPLES, DaemonFactory, DaemonProcess, bin_path
from tests.e2e.test_channel_session import Session

pytestmark = pytest.mark.e2e

COUNTER = str(EXAMPLES / "counter" / "manifest.toml")
ECHO = str(EXAMPLES / "echo" / "manifest.toml")
CHATROOM = str(EXAMPLES / "chatroom" / "manifest.toml")

DEADLINE = 30.0
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1b[=>]")


def _controlling_tty() -> None:
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class _Screen(pyte.Screen):
    """pyte's terminal, answering the program's cursor-position requests as a real terminal does."""

    def __init__(self, columns: int, rows: int, master: int) -> None:
        super().__init__(columns, rows)
        self.master = master

    def write_process_input(self, data: str) -> None:
        os.write(self.master, data.encode())


class Pty:
    """A command on a pseudo-terminal of ``columns`` x ``rows``.

    ``text`` is everything it printed (escapes removed; cursor movements are lost, so
    use it for what was printed, not where); ``display`` is the screen a person sees
    now, as rendered by a terminal emulator (pyte).
    """

    def __init__(self, args: list[str], env: dict[str, str], columns: int = 80, rows: int = 24) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
        env = dict(env, COLUMNS=str(columns), LINES=str(rows), TERM="xterm")
        # a session of its own with the pty as its controlling terminal: Ctrl-C is SIGINT, as in a shell
        self.proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True,
                                     preexec_fn=_controlling_tty)
        os.close(slave)
        self.raw = bytearray()
        self.eof = False
        self.screen = _Screen(columns, rows, self.master)
        self.stream = pyte.ByteStream(self.screen)

    def _read(self, timeout: float) -> None:
        if self.eof:
            time.sleep(min(timeout, 0.05))
            return
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: the child closed the terminal
            data = b""
        if not data:
            self.eof = True
        self.raw.extend(data)
        self.stream.feed(data)

    @property
    def display(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def expect_screen(self, *lines: str, timeout: float = DEADLINE) -> None:
        """Wait until the screen shows each of ``lines`` as a whole line, in this order, one after the other."""
        deadline = time.monotonic() + timeout
        want = list(lines)
        while True:
            shown = self.display
            if any(shown[i:i + len(want)] == want for i in range(len(shown))):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"the screen does not show {want}; it shows:\n" + "\n".join(shown))
            self._read(0.1)

    @property
    def text(self) -> str:
        return ANSI.sub(b"", bytes(self.raw)).decode("utf-8", "replace").replace("\r\n", "\n")

    def expect(self, needle: str, timeout: float = DEADLINE, count: int = 1) -> None:
        """Wait until ``needle`` has appeared ``count`` times in all."""
        deadline = time.monotonic() + timeout
        while self.text.count(needle) < count:
            if time.monotonic() > deadline or (self.eof and self.proc.poll() is not None):
                pytest.fail(f"{needle!r} did not appear; the terminal shows:\n{self.text}")
            self._read(0.1)

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = DEADLINE) -> int:
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None or not self.eof:
            if time.monotonic() > deadline:
                break
            self._read(0.1)
        try:
            return self.proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"still running after {timeout} s; the terminal shows:\n{self.text}")

    def end_input(self) -> int:
        """Ctrl-D at the prompt; the exit status.  A Ctrl-D typed in the instant between two prompts,
        while the terminal is back in cooked mode, is no character and is lost: then type it again."""
        for _ in range(10):
            self.write(b"\x04")
            deadline = time.monotonic() + 2
            while self.proc.poll() is None and time.monotonic() < deadline:
                self._read(0.1)
            if self.proc.poll() is not None:
                break
        return self.wait()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        os.close(self.master)


@pytest.fixture
def terminal(theaterd: DaemonProcess) -> Iterator[Any]:
    made: list[Pty] = []

    def run(*args: str, columns: int = 80, rows: int = 24, **env: str) -> Pty:
        p = Pty([bin_path("theaterctl"), *args], dict(theaterd.env, **env), columns, rows)
        made.append(p)
        return p

    try:
        yield run
    finally:
        for p in made:
            p.close()


def on_terminal(terminal: Any, *args: str, **env: Any) -> tuple[int, str]:
    p = terminal(*args, **env)
    code = p.wait()
    return code, p.text


def spawn(theaterd: DaemonProcess, manifest: str, *args: str) -> dict[str, str]:
    r = theaterd.ctl("--json", "spawn", manifest, *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _actor(tmp: Path, name: str, body: str, extra: str = "") -> str:
    (tmp / f"{name}.py").write_text(body)
    (tmp / f"{name}.toml").write_text(f'name = "{name}"\ncomponent = "{name}.py"\n{extra}')
    return str(tmp / f"{name}.toml")


SLEEPER = "import json, time\ndef handle_send(state, params):\n    time.sleep(json.loads(params[0]).get('sleep', 0))\n" \
          "    return (state,)\n"


# -- tables in 80 columns ---------------------------------------------------------------


def test_list_fits_80_columns_with_short_ids(theaterd: DaemonProcess, terminal: Any) -> None:
    counter = spawn(theaterd, COUNTER)
    spawn(theaterd, ECHO, "--name", "echo-with-a-rather-long-name-that-would-not-fit-in-the-table")
    code, text = on_terminal(terminal, "list")
    assert code == 0, text
    lines = text.strip("\n").splitlines()
    assert lines[0].split() == ["NAME", "ID", "STATUS", "BUSY", "HANDLED", "CHAIN", "MAILBOX"]  # not folded
    assert all(len(line.rstrip()) <= 80 for line in lines), text
    assert len(lines) == 3, text  # one line per actor, nothing wrapped
    row = next(line for line in lines if line.startswith("counter"))
    assert row.split()[1] == counter["id"][:8] and counter["id"] not in text
    assert "…" in text  # the long name was shortened, no column left out
    assert "left out" not in text


def test_narrow_terminal_says_which_columns_it_left_out(theaterd: DaemonProcess, terminal: Any) -> None:
    spawn(theaterd, COUNTER)
    code, text = on_terminal(terminal, "list", columns=45)
    assert code == 0, text
    assert "(CHAIN, HANDLED left out to fit 45 columns; --wide shows every column)" in text
    assert text.splitlines()[0].split() == ["NAME", "ID", "STATUS", "BUSY", "MAILBOX"]
    assert all(len(line.rstrip()) <= 45 for line in text.splitlines() if "left out" not in line)
    code, text = on_terminal(terminal, "list", "--wide", columns=45)
    assert "CHAIN" in text and "left out" not in text


def test_chain_show_keeps_every_column_in_80(theaterd: DaemonProcess, terminal: Any) -> None:
    spawn(theaterd, COUNTER)
    spawn(theaterd, ECHO)
    assert theaterd.ctl("send", "counter", '{"type": "increment"}').returncode == 0
    assert theaterd.ctl("channel", "echo", input='{"x": 1}\n').returncode == 0
    code, text = on_terminal(terminal, "chain", "show", "echo")
    assert code == 0, text
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[0].split() == ["SEQ", "HASH", "TYPE", "PEER", "SIZE", "OUTCOME", "TIME"]
    assert all(len(line.rstrip()) <= 80 for line in lines), text
    assert "handle-channel-message" in text and "message-server/" not in text
    row = next(line for line in lines if "handle-channel-message" in line)
    assert "external" in row and " ok " in row and "ago" in row or "just now" in row


def test_chain_show_pages_long_output_and_no_pager_prints_it(theaterd: DaemonProcess, terminal: Any,
                                                              short_tmp: Path) -> None:
    spawn(theaterd, COUNTER)
    with_client_sends(theaterd, "counter", 40)
    paged = short_tmp / "paged.txt"
    pager = short_tmp / "pager"
    pager.write_text(f"#!/bin/sh\ncat > {paged}\n")
    pager.chmod(0o755)
    code, text = on_terminal(terminal, "chain", "show", "counter", PAGER=str(pager))
    assert code == 0, text
    assert "handle-send" not in text  # it all went to the pager
    assert paged.read_text().count("handle-send") == 40
    paged.unlink()
    code, text = on_terminal(terminal, "chain", "show", "counter", "--no-pager", PAGER=str(pager))
    assert code == 0 and text.count("handle-send") == 40 and not paged.exists()
    # short output is printed directly
    code, text = on_terminal(terminal, "chain", "show", "counter", "--limit", "3", PAGER=str(pager))
    assert text.count("handle-send") == 3 and not paged.exists()


def with_client_sends(theaterd: DaemonProcess, actor: str, n: int) -> None:
    from theaterctl.client import Client

    with Client.connect(theaterd.socket) as client:
        for i in range(n):
            client.send(actor, {"type": "increment", "amount": i})


def test_big_payload_is_cut_on_a_terminal_with_a_note(theaterd: DaemonProcess, terminal: Any) -> None:
    spawn(theaterd, ECHO)
    big = json.dumps({"blob": "x" * 5000})
    assert theaterd.ctl("channel", "echo", input=big + "\n").returncode == 0
    events = json.loads(theaterd.ctl("--json", "chain", "show", "echo").stdout)
    seq = next(e["seq"] for e in events if e["type"].endswith("handle-channel-message"))
    code, text = on_terminal(terminal, "chain", "show", "echo", str(seq))
    assert code == 0, text
    assert "[cut: " in text and f"theaterctl chain show echo {seq} --json" in text
    assert text.count("x") < 3000
    piped = theaterd.ctl("chain", "show", "echo", str(seq))
    assert "x" * 5000 in piped.stdout and "cut" not in piped.stdout


def test_empty_tables_say_so_on_a_terminal(theaterd: DaemonProcess, terminal: Any) -> None:
    code, text = on_terminal(terminal, "list")
    assert code == 0 and "no actors running" in text and "theaterctl spawn MANIFEST" in text
    code, text = on_terminal(terminal, "channels")
    assert code == 0 and "no open channels" in text
    assert theaterd.ctl("list").stdout.splitlines()[0].startswith("NAME")  # piped: the header, as before
    assert theaterd.ctl("list", "--json").stdout.strip() == "[]"


# -- piped: one token per column, whole ids -------------------------------------------------


def test_piped_list_is_one_token_per_column_with_busy_in_its_own(theaterd: DaemonProcess, short_tmp: Path) -> None:
    spawned = spawn(theaterd, _actor(short_tmp, "sleeper", SLEEPER))
    spawn(theaterd, COUNTER)
    assert theaterd.ctl("send", "sleeper", '{"sleep": 30}').returncode == 0
    deadline = time.monotonic() + DEADLINE
    while True:
        lines = theaterd.ctl("list").stdout.splitlines()
        if any("handle_send:" in line for line in lines) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    header = lines[0].split()
    assert header == ["NAME", "ID", "STATUS", "BUSY", "HANDLED", "CHAIN", "MAILBOX"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert all(len(row) == len(header) for row in rows.values()), lines
    assert rows["sleeper"][1] == spawned["id"]
    assert rows["sleeper"][3].startswith("handle_send:") and rows["counter"][3] == "-"
    assert rows["sleeper"][2] == "running"
    assert theaterd.ctl("list", "--no-headers").stdout.splitlines()[0].split()[0] in ("sleeper", "counter")
    quiet = theaterd.ctl("list", "-q").stdout.split()
    assert spawned["id"] in quiet and len(quiet) == 2
    r = theaterd.ctl("stop", "sleeper")
    assert r.returncode == 0, r.stderr


def test_spawn_quiet_prints_the_id(theaterd: DaemonProcess) -> None:
    r = theaterd.ctl("spawn", "-q", COUNTER)
    assert r.returncode == 0, r.stderr
    assert re.fullmatch(r"[0-9a-f-]{36}\n", r.stdout)


def test_chain_show_piped_and_json_are_whole(theaterd: DaemonProcess) -> None:
    spawn(theaterd, COUNTER)
    plain = theaterd.ctl("chain", "show", "counter").stdout.splitlines()
    assert plain[1].split()[2] == "runtime/spawn" and plain[1].split()[4:6] == ["-", "-"]
    events = json.loads(theaterd.ctl("chain", "show", "counter", "-o", "json").stdout)
    assert len(events[0]["hash"]) == 64


# -- actors by id prefix -------------------------------------------------------------------


def test_any_unique_id_prefix_names_the_actor(theaterd: DaemonProcess) -> None:
    counter = spawn(theaterd, COUNTER)
    prefix = counter["id"][:8]
    assert theaterd.ctl("send", prefix, '{"type": "increment", "amount": 5}').returncode == 0
    r = theaterd.ctl("request", counter["id"][:13], '{"type": "get"}')
    assert r.returncode == 0 and json.loads(r.stdout) == {"count": 5}, r.stderr
    assert json.loads(theaterd.ctl("--json", "state", prefix).stdout) == {"count": 5}
    assert json.loads(theaterd.ctl("--json", "inspect", prefix).stdout)["name"] == "counter"
    assert theaterd.ctl("chain", "verify", prefix).returncode == 0
    assert theaterd.ctl("chain", "show", prefix).returncode == 0
    r = theaterd.ctl("stop", prefix)
    assert r.returncode == 0 and r.stdout.strip() == "stopped counter"
    # stopped actors are still found by prefix (their chains are kept)
    assert theaterd.ctl("chain", "verify", prefix).returncode == 0
    r = theaterd.ctl("state", "ffffffff0")
    assert r.returncode == 3 and "unknown actor" in r.stderr


def test_a_name_that_looks_like_a_prefix_is_the_name(theaterd: DaemonProcess) -> None:
    counter = spawn(theaterd, COUNTER, "--name", "deadbeef")
    r = theaterd.ctl("request", "deadbeef", '{"type": "get"}')
    assert r.returncode == 0, r.stderr
    assert json.loads(theaterd.ctl("--json", "inspect", "deadbeef").stdout)["id"] == counter["id"]


# -- Ctrl-C, follow, top -----------------------------------------------------------------


def test_chain_follow_ctrl_c_exits_130_on_a_clean_line(theaterd: DaemonProcess, terminal: Any) -> None:
    spawn(theaterd, COUNTER)
    p = terminal("chain", "show", "counter", "--follow")
    p.expect("spawn")
    assert theaterd.ctl("send", "counter", '{"type": "increment"}').returncode == 0
    p.expect("handle-send")
    p.write(b"\x03")
    assert p.wait() == 130, p.text
    assert "^C\ntheaterctl: error: interrupted" in p.text or "\ntheaterctl: error: interrupted" in p.text
    assert "^Ctheaterctl" not in p.text and "Traceback" not in p.text


def test_piped_follow_sigint_exits_130(theaterd: DaemonProcess) -> None:
    spawn(theaterd, COUNTER)
    proc = subprocess.Popen([bin_path("theaterctl"), "--json", "chain", "show", "counter", "--follow"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=theaterd.env)
    try:
        assert json.loads(proc.stdout.readline())["type"] == "runtime/spawn"  # type: ignore[union-attr]
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=DEADLINE)
        assert proc.returncode == 130, err
        assert err.strip() == "theaterctl: error: interrupted"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_top_once_with_a_busy_and_a_failed_actor(theaterd: DaemonProcess, short_tmp: Path, terminal: Any) -> None:
    spawn(theaterd, _actor(short_tmp, "sleeper", SLEEPER))
    spawn(theaterd, COUNTER)
    broken = _actor(short_tmp, "broken", "def handle_send(state, params):\n    return 'not a tuple'\n")
    spawn(theaterd, broken)
    assert theaterd.ctl("send", "broken", "{}").returncode == 0
    assert theaterd.ctl("send", "sleeper", '{"sleep": 30}').returncode == 0
    assert theaterd.ctl("send", "sleeper", "{}").returncode == 0
    with_client_sends(theaterd, "counter", 20)
    deadline = time.monotonic() + DEADLINE
    while True:
        frame = json.loads(theaterd.ctl("top", "--once", "--interval", "0.2", "--json").stdout)
        by_name = {a["name"]: a for a in frame}
        if (by_name["broken"]["status"] == "failed" and by_name["sleeper"].get("busy")) \
                or time.monotonic() > deadline:
            break
    assert by_name["broken"]["status"] == "failed"
    assert by_name["sleeper"]["busy"]["handler"] == "handle_send" and by_name["sleeper"]["mailbox"] >= 1
    assert by_name["counter"]["rate"] == 0.0 and by_name["counter"]["handled"] == 20
    assert by_name["counter"]["errors"] == 0
    # piped: a plain frame, one token per column
    lines = theaterd.ctl("top", "--once", "--interval", "0.1").stdout.splitlines()
    assert lines[0].split() == ["NAME", "ID", "STATUS", "MSG/S", "MAILBOX", "BUSY", "ERRORS", "CHANNELS",
                                "HANDLED", "RESTARTS"]
    assert all(len(line.split()) == 10 for line in lines[1:])
    # on a terminal: one frame that fits
    code, text = on_terminal(terminal, "top", "--once", "--interval", "0.1")
    assert code == 0, text
    assert "3 actors, 1 busy" in text and "failed" in text and "handle_send" in text
    assert all(len(line.rstrip()) <= 80 for line in text.splitlines()), text
    assert theaterd.ctl("stop", "sleeper").returncode == 0


def test_top_counts_messages_per_second(theaterd: DaemonProcess) -> None:
    from theaterctl.commands.top import rates

    before = (10.0, [{"id": "a", "handled": 5}, {"id": "b", "handled": 0}])
    after = (12.0, [{"id": "a", "handled": 25}, {"id": "b", "handled": 0}, {"id": "c", "handled": 9}])
    assert rates(before, after) == {"a": 10.0, "b": 0.0}
    assert rates(None, after) == {}


def test_top_live_refreshes_until_ctrl_c(theaterd: DaemonProcess, terminal: Any) -> None:
    spawn(theaterd, COUNTER)
    p = terminal("top", "--interval", "0.2")
    p.expect("counter")
    p.expect("msg/s")
    p.write(b"\x03")
    assert p.wait() == 130, p.text
    assert "Traceback" not in p.text


# -- the interactive channel ----------------------------------------------------------------


def test_typed_half_line_stays_intact_while_a_message_arrives(theaterd: DaemonProcess, terminal: Any,
                                                              tmp_path: Path) -> None:
    spawn(theaterd, CHATROOM)
    ada = terminal("channel", "chatroom", '{"join": "ada"}')
    ada.expect("chatroom>")
    ada.write(b'{"text": "hal')  # half a line, not sent yet
    ada.expect('{"text": "hal')
    bob = Session(theaterd, "--linger", "0.2", "chatroom", '{"join": "bob"}')
    try:
        bob.wait_open()
        # the message is printed above the prompt, on a line of its own, and the half line is intact below
        ada.expect_screen('{"joined":"bob"}', 'chatroom> {"text": "hal')
        ada.write(b'f"}\r')  # finish the line: what was typed before the message arrived is sent whole
        bob.expect_json({"from": "ada", "msg": {"text": "half"}})
        assert ada.end_input() == 0, ada.text
        assert "closed (end of input)" in ada.text
        bob.end_input()
        assert bob.wait() == 0
    finally:
        bob.close()
    history = theaterd.home / "history" / "channel-chatroom"
    assert '+{"text": "half"}' in history.read_text()


def test_interactive_history_and_ctrl_c(theaterd: DaemonProcess, terminal: Any) -> None:
    spawn(theaterd, ECHO)
    first = terminal("channel", "echo")
    first.expect("echo>")
    first.write(b'{"remember": "me"}\r')
    first.expect('{"remember":"me"}')
    first.expect("echo>", count=2)
    first.write(b"\x03")  # Ctrl-C at the prompt
    assert first.wait() == 130, first.text
    assert "closed (interrupted)" in first.text
    second = terminal("channel", "echo")
    second.expect("echo>")
    second.write(b"\x1b[A")  # arrow up: the line from the last session
    second.expect('echo> {"remember": "me"}')
    second.write(b"\r")
    second.expect('{"remember":"me"}\n')
    second.expect("echo>", count=3)
    second.write(b"/close\r")
    assert second.wait() == 0, second.text
    assert "closed (/close)" in second.text


def test_interactive_bad_line_is_noted_and_the_session_goes_on(theaterd: DaemonProcess, terminal: Any) -> None:
    spawn(theaterd, ECHO)
    p = terminal("channel", "echo")
    p.expect("echo>")
    p.write(b"oops\r")
    p.expect("not JSON, not sent")
    p.expect("echo>", count=2)
    p.write(b'{"fine": true}\r')
    p.expect('{"fine":true}')
    assert p.end_input() == 0, p.text


def test_actor_closing_ends_the_prompt(theaterd: DaemonProcess, terminal: Any) -> None:
    spawn(theaterd, str(EXAMPLES / "ticker" / "manifest.toml"))
    p = terminal("channel", "ticker", '{"count": 2, "interval": 0.3}')
    p.expect("ticker>")
    p.write(b"abc")
    p.expect("closed: closed by ticker")
    assert p.wait() == 0, p.text
    # in order: both ticks, then the line saying why the channel closed, then nothing more
    assert p.text.index('{"tick":1}') < p.text.index('{"tick":2}') < p.text.index("closed: closed by ticker")
    assert p.text.rstrip().endswith("closed: closed by ticker")


def test_the_daemon_going_away_is_said_on_its_own_line(daemon_factory: DaemonFactory, short_tmp: Path) -> None:
    d = daemon_factory()
    d.start()
    assert d.ctl("spawn", ECHO).returncode == 0
    p = Pty([bin_path("theaterctl"), "channel", "echo"], dict(d.env), 80, 24)
    try:
        p.expect("echo>")
        p.write(b'{"half": ')
        p.expect('{"half":')
        d.kill()
        assert p.wait() == 69, p.text
        # on a line of its own (the prompt with the half line stays above it), nothing glued to it
        assert 'echo> {"half":' in p.display, p.display
        said = next(line for line in p.display if "went away" in line)
        assert re.fullmatch(r"theaterctl: error: the daemon went away; channel ch_[0-9a-f]{8} is gone", said), said
        assert "Traceback" not in p.text
    finally:
        p.close()


# -- the daemon's lifecycle ----------------------------------------------------------------


def test_daemon_restart_keeps_actors(short_tmp: Path) -> None:
    d = DaemonProcess(socket=short_tmp / "s.sock", home=short_tmp / "home")
    assert d.ctl("daemon", "start").returncode == 0
    try:
        assert d.ctl("spawn", COUNTER).returncode == 0
        assert d.ctl("send", "counter", '{"type": "increment", "amount": 3}').returncode == 0
        before = json.loads(d.ctl("--json", "daemon", "status").stdout)["pid"]
        r = d.ctl("--json", "daemon", "restart")
        assert r.returncode == 0, r.stderr
        result = json.loads(r.stdout)
        assert result["restarted"] is True and result["old_pid"] == before and result["pid"] != before
        assert json.loads(d.ctl("--json", "state", "counter").stdout) == {"count": 3}
    finally:
        assert d.ctl("daemon", "stop").returncode == 0
    r = d.ctl("daemon", "restart")  # not running: just starts it
    try:
        assert r.returncode == 0 and "was not running" in r.stderr, r.stderr
    finally:
        d.ctl("daemon", "stop")


def test_daemon_start_failures_exit_as_theaterd_does(short_tmp: Path) -> None:
    d = DaemonProcess(socket=short_tmp / "s.sock", home=short_tmp / "home")
    env = dict(d.env, THEATER_DURABILITY="bogus")
    r = subprocess.run([bin_path("theaterctl"), "daemon", "start"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("theaterctl: error: theaterd refused its options") and r.stderr.count("\n") == 1
    unsafe = short_tmp / "open"
    unsafe.mkdir(mode=0o777)
    os.chmod(unsafe, 0o777)
    d2 = DaemonProcess(socket=unsafe / "s.sock", home=short_tmp / "home2")
    r = d2.ctl("daemon", "start")
    assert r.returncode == 1, r.stderr
    assert r.stderr.startswith("theaterctl: error: theaterd could not start") and r.stderr.count("\n") == 1


def test_channels_shows_one_channel_by_prefix_and_completes_ids(theaterd: DaemonProcess) -> None:
    from tests.test_completions import _env, complete, values

    spawn(theaterd, ECHO)
    s = Session(theaterd, "--linger", "0.2", "echo")
    try:
        channel = s.wait_open()
        one = json.loads(theaterd.ctl("--json", "channels", channel[:11]).stdout)
        assert one["id"] == channel and one["target_name"] == "echo"
        r = theaterd.ctl("channels", channel)
        assert r.returncode == 0 and f"id         {channel}" in r.stdout
        r = theaterd.ctl("channels", "ch_zzz")
        assert r.returncode == 3 and "no open channel 'ch_zzz'" in r.stderr
        env = _env(THEATER_SOCKET=str(theaterd.socket))
        assert values(complete("theaterctl channels ch_", env)) == [channel]
        s.end_input()
        assert s.wait() == 0
    finally:
        s.close()


def test_messaging_commands_complete_only_running_actors(theaterd: DaemonProcess, short_tmp: Path) -> None:
    from tests.test_completions import _env, complete, values

    spawn(theaterd, COUNTER)
    spawn(theaterd, _actor(short_tmp, "crashy", "def handle_send(state, params):\n    return 'not a tuple'\n"))
    assert theaterd.ctl("send", "crashy", "{}").returncode == 0
    deadline = time.monotonic() + DEADLINE
    while json.loads(theaterd.ctl("--json", "inspect", "crashy").stdout)["status"] != "failed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    env = _env(THEATER_SOCKET=str(theaterd.socket))
    # (ids complete too, and are hex: "co" and "cr" can only start the names)
    for command in ("send", "request", "channel"):
        assert values(complete(f"theaterctl {command} co", env)) == ["counter"], command
        assert values(complete(f"theaterctl {command} cr", env)) == [], command
    for command in ("stop", "inspect"):
        assert values(complete(f"theaterctl {command} co", env)) == ["counter"], command
        assert values(complete(f"theaterctl {command} cr", env)) == ["crashy"], command


def test_pretty_indents_messages_and_ctrl_d_exits_0(theaterd: DaemonProcess, terminal: Any) -> None:
    spawn(theaterd, ECHO)
    p = terminal("channel", "--pretty", "echo")
    p.expect("echo>")
    # the status lines fit: the channel id is short on a terminal
    assert re.fullmatch(r"channel ch_[0-9a-f]{8} open to echo; one JSON message per line, Ctrl-D to end",
                        p.display[0]), p.display
    p.write(b'{"greeting": "hello", "n": [1, 2]}\r')
    p.expect('{\n  "greeting": "hello",\n  "n": [\n    1,\n    2\n  ]\n}\n')
    assert p.end_input() == 0, p.text
    assert "closed (end of input)" in p.text and "Traceback" not in p.text
    r = theaterd.ctl("channels", "--json")
    assert json.loads(r.stdout) == []
