"""``theaterctl channel``: the interactive session, through the real theaterd.

Covers scripted use through pipes, the session's exits (EOF, the actor
closing, rejection, unknown actor, no daemon, SIGKILL), ``channels``, the
chatroom between two live sessions and actor-to-actor channels (pingpong);
the line editor in a pseudo-terminal is in test_cli_terminal.py.
Synchronisation is by reading the session's output or polling the daemon with
a deadline, never by sleeping.
"""

from __future__ import annotations

import json
import queue
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import EXAMPLES, DaemonProcess, bin_path

pytestmark = pytest.mark.e2e

ECHO = str(EXAMPLES / "echo" / "manifest.toml")
COUNTER = str(EXAMPLES / "counter" / "manifest.toml")
CHATROOM = str(EXAMPLES / "chatroom" / "manifest.toml")
WASM_CHATROOM = str(EXAMPLES / "wasm-chatroom" / "manifest.toml")
TICKER = str(EXAMPLES / "ticker" / "manifest.toml")
PING = str(EXAMPLES / "pingpong" / "ping" / "manifest.toml")
PONG = str(EXAMPLES / "pingpong" / "pong" / "manifest.toml")

DEADLINE = 30.0  # generous: CI machines can be slow


def spawn(theaterd: DaemonProcess, *manifests: str) -> None:
    for manifest in manifests:
        r = theaterd.ctl("spawn", manifest)
        assert r.returncode == 0, r.stderr


def poll(what: str, probe: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    """Call ``probe`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what} (last: {last!r})")


def open_channels(theaterd: DaemonProcess) -> list[dict[str, Any]]:
    r = theaterd.ctl("channels", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def chain(theaterd: DaemonProcess, actor: str) -> list[dict[str, Any]]:
    r = theaterd.ctl("--json", "chain", "show", actor)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def state(theaterd: DaemonProcess, actor: str) -> Any:
    r = theaterd.ctl("--json", "state", actor)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


class Session:
    """A ``theaterctl channel`` subprocess whose stdin stays open until we close it.

    Background threads collect stdout and stderr line by line, so a test can
    wait for a line with a deadline while the session keeps running.
    """

    def __init__(self, theaterd: DaemonProcess, *args: str) -> None:
        self.proc = subprocess.Popen(
            [bin_path("theaterctl"), "channel", *args],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=theaterd.env,
        )
        self.lines: dict[str, queue.Queue[str | None]] = {"stdout": queue.Queue(), "stderr": queue.Queue()}
        self.seen: dict[str, list[str]] = {"stdout": [], "stderr": []}
        self._readers = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, "stdout"), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, "stderr"), daemon=True),
        ]
        for t in self._readers:
            t.start()

    def _pump(self, stream: Any, name: str) -> None:
        for raw in iter(stream.readline, b""):
            self.lines[name].put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines[name].put(None)

    def expect(self, name: str, match: Callable[[str], bool], timeout: float = DEADLINE) -> str:
        """The next line on ``name`` that ``match`` accepts (earlier lines are kept in ``seen``)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                line = self.lines[name].get(timeout=remaining)
            except queue.Empty:
                break
            if line is None:
                self.lines[name].put(None)  # stay at EOF for later calls
                pytest.fail(f"{name} ended before the expected line; seen: {self.seen}")
            self.seen[name].append(line)
            if match(line):
                return line
        pytest.fail(f"timed out waiting for a line on {name}; seen: {self.seen}")

    def expect_json(self, value: Any, timeout: float = DEADLINE) -> None:
        self.expect("stdout", lambda line: _json_or_none(line) == value, timeout)

    def wait_open(self) -> str:
        """Wait for the 'channel ... open' note; returns the channel id."""
        line = self.expect("stderr", lambda line: line.startswith("channel ") and " open to " in line)
        return line.split()[1]

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def end_input(self) -> None:
        assert self.proc.stdin is not None
        if not self.proc.stdin.closed:
            self.proc.stdin.close()

    def wait(self, timeout: float = DEADLINE) -> int:
        """Wait for the exit; then the rest of both streams is in ``seen``."""
        code = self.proc.wait(timeout=timeout)
        for t in self._readers:
            t.join(timeout=timeout)
        for name, q in self.lines.items():
            while True:
                item = q.get_nowait() if not q.empty() else None
                if item is None:
                    break
                self.seen[name].append(item)
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=DEADLINE)
        finally:
            for t in self._readers:
                t.join(timeout=5)
            for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    try:
                        stream.close()
                    except BrokenPipeError:
                        pass


def _json_or_none(line: str) -> Any:
    try:
        return json.loads(line)
    except ValueError:
        return None


@pytest.fixture
def sessions() -> Iterator[Callable[..., Session]]:
    """``sessions(theaterd, ACTOR, [INITIAL])`` starts a session; all are cleaned up at the end."""
    made: list[Session] = []

    def start(theaterd: DaemonProcess, *args: str) -> Session:
        s = Session(theaterd, *args)
        made.append(s)
        return s

    try:
        yield start
    finally:
        for s in made:
            s.close()


# ---------------------------------------------------------------------------
# scripted use through pipes


@pytest.mark.parametrize("manifest", [ECHO, str(EXAMPLES / "wasm-echo" / "manifest.toml")], ids=["python", "wasm"])
def test_piped_messages_are_echoed_as_compact_lines_in_order(theaterd: DaemonProcess, manifest: str) -> None:
    assert theaterd.ctl("spawn", manifest, "--name", "echo").returncode == 0
    cmd = (f"printf '{{\"n\":1}}\\n{{\"n\":2}}\\n' | {shlex.quote(bin_path('theaterctl'))} "
           f"channel echo '{{\"join\":\"bob\"}}'")
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True, env=theaterd.env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ['{"n":1}', '{"n":2}']
    assert "Traceback" not in r.stderr
    assert open_channels(theaterd) == []
    kinds = [e["type"] for e in chain(theaterd, "echo") if "/handle-" in e["type"]]
    assert kinds == [
        "message-server/handle-channel-open",
        "message-server/handle-channel-message",
        "message-server/handle-channel-message",
        "message-server/handle-channel-close",
    ]


def test_non_json_line_is_skipped_with_skip_bad_lines(theaterd: DaemonProcess) -> None:
    spawn(theaterd, ECHO)
    r = theaterd.ctl("channel", "--linger", "0.5", "--skip-bad-lines", "echo",
                     input='{"a": 1}\nthis is not json\n\n{"b": [2]}\n')
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ['{"a":1}', '{"b":[2]}']
    assert "not JSON, not sent" in r.stderr and "this is not json" in r.stderr
    assert "Traceback" not in r.stderr
    messages = [e for e in chain(theaterd, "echo") if e["type"] == "message-server/handle-channel-message"]
    assert len(messages) == 2


def test_non_json_line_ends_the_session_with_exit_2(theaterd: DaemonProcess) -> None:
    spawn(theaterd, ECHO)
    r = theaterd.ctl("channel", "--linger", "0.5", "echo", input='{"a": 1}\nthis is not json\n{"b": [2]}\n')
    assert r.returncode == 2, r.stderr
    assert r.stdout.splitlines() == ['{"a":1}']  # the line before it was sent and answered
    lines = r.stderr.strip().splitlines()
    assert lines[-2].endswith("closed (line 2 is not JSON)")
    assert lines[-1].startswith("theaterctl: error: line 2 is not JSON") and "--skip-bad-lines" in lines[-1]
    assert "Traceback" not in r.stderr
    messages = [e for e in chain(theaterd, "echo") if e["type"] == "message-server/handle-channel-message"]
    assert len(messages) == 1
    assert open_channels(theaterd) == []


def test_close_command_ends_the_session(theaterd: DaemonProcess) -> None:
    spawn(theaterd, ECHO)
    r = theaterd.ctl("channel", "echo", input='{"n": 1}\n/close\n{"never": "sent"}\n')
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ['{"n":1}']
    assert r.stderr.strip().splitlines()[-1].endswith(" closed (/close)")
    messages = [e for e in chain(theaterd, "echo") if e["type"] == "message-server/handle-channel-message"]
    assert len(messages) == 1


# ---------------------------------------------------------------------------
# the actor closes the channel


def test_ticker_closes_the_channel_and_the_session_exits_0_at_once(theaterd: DaemonProcess,
                                                                    sessions: Callable[..., Session]) -> None:
    spawn(theaterd, TICKER)
    started = time.monotonic()
    s = sessions(theaterd, "ticker", '{"count": 3, "interval": 0.2}')
    s.wait_open()
    for i in (1, 2, 3):
        s.expect_json({"tick": i})
    s.expect("stderr", lambda line: line.startswith("channel ") and line.endswith(" closed: closed by ticker"))
    code = s.wait()  # stdin stays open: only the actor's close can end the session
    elapsed = time.monotonic() - started
    assert s.proc.stdin is not None and not s.proc.stdin.closed
    # Regression: the stdin reader thread, left blocked in sys.stdin.buffer.readline(),
    # held the BufferedReader lock at interpreter shutdown: "Fatal Python error:
    # _enter_buffered_busy" and SIGABRT instead of exit 0.
    assert "Fatal Python error" not in "\n".join(s.seen["stderr"])
    assert code == 0, s.seen["stderr"]
    assert elapsed < 15, elapsed  # 3 x 0.2 s of ticks plus start-up; no linger after the actor's close
    assert [_json_or_none(line) for line in s.seen["stdout"]] == [{"tick": 1}, {"tick": 2}, {"tick": 3}]
    assert open_channels(theaterd) == []
    assert state(theaterd, "ticker") == {"tickers": {}}


def test_sigint_closes_the_channel_and_exits_130(theaterd: DaemonProcess, sessions: Callable[..., Session]) -> None:
    """Ctrl-C with stdin still open (the same regression as with the ticker)."""
    spawn(theaterd, ECHO)
    s = sessions(theaterd, "echo")
    channel = s.wait_open()
    # The signal watcher starts after the "open" note is printed; once a message
    # has made the round trip, the session is surely watching for Ctrl-C.
    s.send('{"n": 1}')
    s.expect_json({"n": 1})
    s.proc.send_signal(signal.SIGINT)
    code = s.wait()
    assert f"channel {channel} closed (interrupted)" in s.seen["stderr"]
    assert open_channels(theaterd) == []
    assert "Fatal Python error" not in "\n".join(s.seen["stderr"])
    assert code == 130, s.seen["stderr"]


def test_ticker_rejects_a_bad_initial_message(theaterd: DaemonProcess) -> None:
    spawn(theaterd, TICKER)
    r = theaterd.ctl("channel", "ticker", '{"count": -1}')
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "channel rejected by ticker: count must be an integer" in r.stderr
    assert r.stdout == ""


# ---------------------------------------------------------------------------
# failures to open


def test_rejected_open_exits_1_with_the_reason(theaterd: DaemonProcess) -> None:
    spawn(theaterd, COUNTER)  # counter has no handle_channel_open
    r = theaterd.ctl("channel", "counter", input='{"never": "sent"}\n')
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "channel rejected by counter: actor does not accept channels" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_rejecting_actor_reason_reaches_the_terminal(theaterd: DaemonProcess, tmp_path: Path) -> None:
    (tmp_path / "doorman.py").write_text(
        "from actors import message_server\n"
        "def handle_channel_open(state, params):\n"
        "    return state, (message_server.ChannelAccept(False, b'members only'),)\n"
    )
    (tmp_path / "manifest.toml").write_text('name = "doorman"\ncomponent = "doorman.py"\n')
    spawn(theaterd, str(tmp_path / "manifest.toml"))
    r = theaterd.ctl("channel", "doorman")
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "channel rejected by doorman: members only" in r.stderr
    assert open_channels(theaterd) == []


def test_unknown_actor_exits_3(theaterd: DaemonProcess) -> None:
    r = theaterd.ctl("channel", "nobody", input="{}\n")
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "unknown actor 'nobody'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_daemon_not_running_exits_69(short_tmp: Path) -> None:
    d = DaemonProcess(socket=short_tmp / "s.sock", home=short_tmp / "home")
    r = d.ctl("channel", "echo", input="{}\n")
    assert r.returncode == 69, (r.stdout, r.stderr)
    assert "theaterd is not running" in r.stderr
    assert "Traceback" not in r.stderr


# ---------------------------------------------------------------------------
# the channel's lifetime as the daemon sees it


def test_channels_lists_the_session_while_it_is_open(theaterd: DaemonProcess,
                                                     sessions: Callable[..., Session]) -> None:
    spawn(theaterd, ECHO)
    assert open_channels(theaterd) == []
    s = sessions(theaterd, "--linger", "0.2", "echo")
    channel = s.wait_open()
    s.send('{"hello": "there"}')
    s.expect_json({"hello": "there"})
    (view,) = open_channels(theaterd)
    assert view["id"] == channel
    assert view["opener"] == "external" and view["target_name"] == "echo"
    assert view["from_opener"] == 1 and view["from_target"] == 1
    s.end_input()
    assert s.wait() == 0, s.seen["stderr"]
    assert f"channel {channel} closed (end of input)" in s.seen["stderr"]
    assert open_channels(theaterd) == []  # the session waited for the close to be acknowledged


def test_sigkill_closes_the_channel_and_the_actor_hears_it(theaterd: DaemonProcess,
                                                          sessions: Callable[..., Session]) -> None:
    spawn(theaterd, ECHO)
    s = sessions(theaterd, "echo")
    channel = s.wait_open()
    s.send('{"before": "kill"}')
    s.expect_json({"before": "kill"})
    s.proc.send_signal(signal.SIGKILL)
    assert s.wait() == -signal.SIGKILL

    def closed_event() -> dict[str, Any] | None:
        for ev in chain(theaterd, "echo"):
            if ev["type"] == "message-server/handle-channel-close" and ev["data"].get("channel") == channel:
                return ev
        return None

    ev = poll("echo's handle-channel-close", closed_event)
    assert ev["data"]["peer"] == "external" and ev["data"]["outcome"] == "ok"
    assert poll("the channel to disappear", lambda: open_channels(theaterd) == []) is True


# ---------------------------------------------------------------------------
# example actors with channels


@pytest.mark.parametrize("manifest", [CHATROOM, WASM_CHATROOM], ids=["python", "wasm"])
def test_chatroom_between_two_sessions(theaterd: DaemonProcess, sessions: Callable[..., Session],
                                       manifest: str) -> None:
    spawn(theaterd, manifest)
    room = "wasm-chatroom" if manifest == WASM_CHATROOM else "chatroom"
    alice = sessions(theaterd, "--linger", "0.2", room, '{"join": "alice"}')
    alice.wait_open()
    bob = sessions(theaterd, "--linger", "0.2", room, '{"join": "bob"}')
    bob.wait_open()
    alice.expect_json({"joined": "bob"})

    bob.send('{"text": "hi alice"}')
    alice.expect_json({"from": "bob", "msg": {"text": "hi alice"}})
    alice.send('{"text": "hi bob"}')
    bob.expect_json({"from": "alice", "msg": {"text": "hi bob"}})

    members = state(theaterd, room)["members"]
    assert sorted(members.values()) == ["alice", "bob"]

    bob.end_input()
    assert bob.wait() == 0, bob.seen["stderr"]
    alice.expect_json({"left": "bob"})
    alice.end_input()
    assert alice.wait() == 0, alice.seen["stderr"]

    # nobody hears their own words; bob saw only alice's message
    assert [_json_or_none(line) for line in bob.seen["stdout"]] == [{"from": "alice", "msg": {"text": "hi bob"}}]
    assert [_json_or_none(line) for line in alice.seen["stdout"]] == [
        {"joined": "bob"}, {"from": "bob", "msg": {"text": "hi alice"}}, {"left": "bob"},
    ]
    assert poll("the chatroom to be empty", lambda: state(theaterd, room) == {"members": {}}) is True


def test_pingpong_actor_to_actor_channel(theaterd: DaemonProcess) -> None:
    spawn(theaterd, PONG, PING)
    r = theaterd.ctl("request", "ping", '{"type": "start", "rounds": 5}')
    assert r.returncode == 0, r.stderr
    started = json.loads(r.stdout)
    assert started["rounds"] == 5 and started["peer"] == "pong" and started["channel"].startswith("ch_")

    def summary() -> dict[str, Any] | None:
        out = theaterd.ctl("request", "ping", '{"type": "summary"}')
        assert out.returncode == 0, out.stderr
        value = json.loads(out.stdout)
        return value if value["status"] != "playing" else None

    assert poll("the game to finish", summary) == {
        "channel": started["channel"], "peer": "pong", "rounds": 5, "pings": 5, "pongs": 5, "status": "done",
    }
    assert open_channels(theaterd) == []
    assert state(theaterd, "pong")["answered"] == 5

    ping_events = chain(theaterd, "ping")
    opened = [e for e in ping_events if e["type"] == "message-server/open-channel"]
    assert len(opened) == 1 and opened[0]["data"]["outcome"] == "accepted"
    assert opened[0]["data"]["peer_name"] == "pong"
    assert [e["type"] for e in ping_events].count("message-server/handle-channel-message") == 5
    pong_events = chain(theaterd, "pong")
    assert [e["type"] for e in pong_events].count("message-server/handle-channel-message") == 5
    assert pong_events[-1]["type"] == "message-server/handle-channel-close"
    assert pong_events[-1]["data"]["peer_name"] == "ping"


# The session in a real terminal (the line editor) is in tests/e2e/test_cli_terminal.py.
