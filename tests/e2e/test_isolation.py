"""Actor code in worker processes, attacked as a hostile user would.

Every test runs the real ``theaterd --workers 1`` (so that actors share the one
shared worker) with three copies of one hostile actor (tests/e2e/isolation_actors.py):
``victim`` does the damage; ``buddy`` shares its worker; ``loner`` has a worker of
its own (``isolation = "dedicated"``).  For every attack: the daemon stays up, the
other two keep answering, the caller gets one clear line with the documented exit
code, every chain verifies, a crash is recorded as ``runtime/crash`` with its
reason, and every send accepted before the crash is handled exactly once after it.

The file-access attacks assert the secure behaviour (the actor could not do it);
they fail until the workers are confined by the Landlock sandbox.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cbor2
import pytest

from tests.conftest import DaemonFactory, DaemonProcess
from tests.e2e.isolation_actors import (
    alive,
    ask,
    assert_verifies,
    busy_in,
    children,
    cpu_ticks,
    ctl_async,
    handled_ids,
    ids_of,
    kill_leftovers,
    of_type,
    spawn,
    wait_for,
    descendants,
    worker_pid,
    worker_pids,
    worker_python,
)
from daemon.errors import TheaterError
from theaterctl.client import Client

pytestmark = pytest.mark.e2e

ON_FAILURE = 'restart = "on-failure"\n'  # the victim's; buddy and loner have the default, "never"


@dataclass
class Stage:
    """A daemon with ``victim`` and ``buddy`` in its one shared worker and ``loner`` alone."""

    d: DaemonProcess
    tmp: Path
    actors: Path
    sent: dict[str, list[str]] = field(default_factory=dict)

    def send(self, actor: str, count: int, tag: str) -> None:
        """``count`` counted sends, each acknowledged (stored) before this returns."""
        with Client.connect(self.d.socket) as c:
            for i in range(count):
                mid = f"{actor}-{tag}-{i}"
                c.send(actor, {"id": mid})
                self.sent.setdefault(actor, []).append(mid)

    def pid_of(self, actor: str) -> int:
        return worker_pid(self.d, actor)

    def check_everyone(self) -> None:
        """The daemon is up, everyone answers, each send was handled once, every chain verifies."""
        d = self.d
        assert d.proc is not None and d.proc.poll() is None, f"theaterd exited: {d.log()}"
        assert d.ctl("daemon", "status").returncode == 0
        for actor in ("victim", "buddy", "loner"):
            self.send(actor, 2, "after")
            got = ids_of(d, actor)
            assert got == self.sent.get(actor, []), f"{actor} handled {got}, expected {self.sent.get(actor)}"
            handled = handled_ids(d, actor)
            assert handled == self.sent.get(actor, []), f"{actor}'s chain records {handled}"
        assert_verifies(d, "victim", "buddy", "loner")


@pytest.fixture
def staged(daemon_factory: DaemonFactory, short_tmp: Path) -> Iterator[Callable[[str], Stage]]:
    """``staged(extra)``: the stage, with ``extra`` manifest lines for ``victim``."""
    made: list[tuple[DaemonProcess, set[int]]] = []

    def make(extra: str = "") -> Stage:
        d = daemon_factory("--workers", "1")
        d.start()
        actors = short_tmp / "actors"
        spawn(d, actors, "victim", ON_FAILURE + extra)
        spawn(d, actors, "buddy")  # restart = "never": an idle neighbour just moves
        spawn(d, actors, "loner", 'isolation = "dedicated"\n')
        made.append((d, worker_pids(d)))
        return Stage(d, short_tmp, actors)

    try:
        yield make
    finally:
        for d, before in made:
            d.stop()
            try:
                wait_for("the workers to exit with the daemon", lambda: not any(alive(p) for p in before), 15)
            finally:
                kill_leftovers(before)


@pytest.fixture
def stage(staged: Callable[[str], Stage]) -> Stage:
    return staged("")


def _one_line_error(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {stderr!r}"
    assert lines[0].startswith("theaterctl: error: "), lines[0]
    assert "Traceback" not in stderr
    return lines[0]


def _crash(s: Stage, attack: dict[str, Any], expect: str) -> str:
    """Run ``attack`` in ``victim`` (a request that brings its worker down after ``after``
    seconds), with sends accepted for all three actors meanwhile; check the outcome."""
    d = s.d
    victim_pid, buddy_pid, loner_pid = s.pid_of("victim"), s.pid_of("buddy"), s.pid_of("loner")
    assert loner_pid != buddy_pid
    s.send("victim", 3, "before")
    s.send("buddy", 3, "before")
    s.send("loner", 3, "before")
    proc = ctl_async(d, "request", "victim", json.dumps({"after": 1.0, **attack}))
    try:
        wait_for("victim to be busy in the attack", lambda: busy_in(d, "victim") == "handle_request")
        s.send("victim", 3, "queued")  # accepted while the attack runs: handled after it, once
        s.send("buddy", 3, "during")
        s.send("loner", 3, "during")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, (proc.returncode, out, err)
    line = _one_line_error(err)
    assert re.search(expect, line), line
    crashes = of_type(d, "victim", "runtime/crash")
    assert len(crashes) == 1, crashes
    assert re.search(expect, crashes[0]["data"]["reason"]), crashes[0]
    assert crashes[0]["data"]["handler"] == "handle_request"
    s.check_everyone()
    if victim_pid == buddy_pid:  # they shared the worker, which is gone: both moved to a new one
        assert not alive(victim_pid)
        assert s.pid_of("victim") == s.pid_of("buddy") != victim_pid
    assert s.pid_of("loner") == loner_pid  # the dedicated worker was not touched
    assert of_type(d, "buddy", "runtime/crash") == [], "buddy was blamed for victim's crash"
    assert of_type(d, "loner", "runtime/crash") == []
    return line


# -- the worker dies --------------------------------------------------------------


def test_os_exit_in_a_handler(stage: Stage) -> None:
    line = _crash(stage, {"do": "exit", "code": 3}, r"worker exited with code 3 while handling handle_request")
    assert "victim" in line


def test_segfault_in_a_handler(stage: Stage) -> None:
    _crash(stage, {"do": "segv"}, r"worker was killed by SIGSEGV while handling handle_request")


def test_spinning_handler_is_killed_after_its_handler_timeout(staged: Callable[[str], Stage]) -> None:
    _crash(staged("handler_timeout = 1\n"), {"do": "spin"}, r"handle_request ran longer than its handler_timeout of 1 s")


def test_allocating_past_memory_limit(staged: Callable[[str], Stage]) -> None:
    stage = staged("memory_limit = 268435456\n")
    # a memory_limit of its own means a worker of its own; the others are untouched
    assert stage.pid_of("victim") != stage.pid_of("buddy")
    _crash(stage, {"do": "alloc", "bytes": 1 << 30}, r"MemoryError|memory")


def test_a_handler_cannot_lift_its_memory_limit(staged: Callable[[str], Stage]) -> None:
    """As root (CAP_SYS_RESOURCE) RLIMIT_AS can simply be raised again: the limit must hold anyway."""
    stage = staged("memory_limit = 268435456\n")
    got = ask(stage.d, "victim", {"do": "lift-memory-limit", "bytes": 1 << 30})
    assert not got["ok"], f"the actor allocated {got['result']} bytes past its memory_limit of 256 MiB"
    stage.check_everyone()


def test_stop_of_a_spinning_actor_returns_within_the_grace_and_frees_the_cpu(stage: Stage) -> None:
    d = stage.d
    pid = stage.pid_of("victim")
    stage.send("buddy", 3, "before")
    proc = ctl_async(d, "request", "victim", '{"do": "spin"}')
    try:
        wait_for("victim to spin", lambda: busy_in(d, "victim") == "handle_request")
        start = time.monotonic()
        r = d.ctl("stop", "victim", timeout=30)
        took = time.monotonic() - start
        assert r.returncode == 0, r.stderr
        assert took < 5 + 3, f"stop took {took:.1f} s (grace 5 s)"
        out, err = proc.communicate(timeout=15)
        assert proc.returncode != 0 and _one_line_error(err)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    wait_for(f"worker {pid} to be gone", lambda: not alive(pid), 5)
    # nothing of the daemon's burns CPU any more
    procs = {d.pid, *descendants(d.pid)}
    ticks = sum(cpu_ticks(p) for p in procs)
    time.sleep(1.0)
    used = (sum(cpu_ticks(p) for p in procs) - ticks) / os.sysconf("SC_CLK_TCK")
    assert used < 0.5, f"{used:.2f} s of CPU in 1 s after the stop"
    victim = json.loads(d.ctl("--json", "list", "--all").stdout)
    assert {a["name"]: a["status"] for a in victim}["victim"] == "stopped"
    stage.sent.pop("victim", None)
    for actor in ("buddy", "loner"):
        stage.send(actor, 2, "after")
        assert ids_of(d, actor) == stage.sent.get(actor, [])
        assert handled_ids(d, actor) == stage.sent.get(actor, [])
    assert_verifies(d, "victim", "buddy", "loner")
    assert of_type(d, "buddy", "runtime/crash") == []


# -- the worker is confined ------------------------------------------------------


def _denied(s: Stage, attack: dict[str, Any]) -> dict[str, Any]:
    """Run an attack that reports what it could do; the daemon and the others are fine after."""
    s.send("buddy", 2, "before")
    got = ask(s.d, "victim", attack)
    s.check_everyone()
    return dict(got)


def test_a_handler_cannot_open_the_store(stage: Stage) -> None:
    got = _denied(stage, {"do": "read", "path": str(stage.d.home / "theater.db")})
    assert not got["ok"], f"the actor read the store: {got}"


def test_a_handler_cannot_write_into_theater_home(stage: Stage) -> None:
    target = stage.d.home / "planted"
    got = _denied(stage, {"do": "write", "path": str(target)})
    assert not got["ok"] and not target.exists(), f"the actor wrote into THEATER_HOME: {got}"


def test_a_handler_cannot_fill_the_disk_through_its_scratch_directory(stage: Stage) -> None:
    """The scratch directory (HOME, TMPDIR, cwd) is a tmpfs of SCRATCH_BYTES in the worker's own
    mount namespace: writes past it fail with ENOSPC and nothing lands on the daemon's disk."""
    from daemon.workerproc import SCRATCH_BYTES, private_mounts

    if not private_mounts():
        pytest.skip("this system gives workers no mount namespace (unshare --mount needs root or user namespaces)")
    cap_mib = SCRATCH_BYTES >> 20
    view = json.loads(stage.d.ctl("--json", "inspect", "victim").stdout)
    assert f"scratch {cap_mib} MiB" in json.dumps(view), view
    got = ask(stage.d, "victim", {"do": "fill", "mib": cap_mib + 64})
    assert got["error"] is not None and "No space left" in got["error"], got
    assert cap_mib - 8 <= got["written_mib"] <= cap_mib, got
    assert got["cwd"] == got["home"], got  # the working directory is the tmpfs, not the directory under it
    # The daemon's view of the directory stayed empty, and its own mounts show no tmpfs of ours.
    assert not any(Path(got["home"]).iterdir())
    assert "theater-scratch" not in Path("/proc/self/mountinfo").read_text()
    stage.check_everyone()


def test_a_handler_cannot_read_private_files_outside_its_paths(stage: Stage) -> None:
    ssh = stage.tmp / "user" / ".ssh"
    ssh.mkdir(parents=True)
    (ssh / "id_rsa").write_text("-----BEGIN OPENSSH PRIVATE KEY-----\nsecret\n")
    os.chmod(ssh / "id_rsa", 0o600)
    got = _denied(stage, {"do": "read", "path": str(ssh / "id_rsa")})
    assert not got["ok"], f"the actor read {ssh / 'id_rsa'}: {got}"


def _frames(hex_text: str) -> list[dict[str, Any]]:
    data = bytes.fromhex(hex_text)
    frames = []
    while len(data) >= 4:
        size = int.from_bytes(data[:4], "big")
        frames.append(cbor2.loads(data[4:4 + size]))
        data = data[4 + size:]
    return frames


def test_a_handler_makes_one_message_server_call_at_a_time(stage: Stage) -> None:
    """A second call from another thread of the handler, while the first waits, is refused:
    the handler's time limit and the cycle check count on one call at a time."""
    got = ask(stage.d, "victim", {"do": "two-calls-at-once", "to": "buddy"})
    assert not got["ok"] and "one message-server call at a time" in got["error"], got
    stage.check_everyone()


def test_a_handler_cannot_send_a_message_larger_than_a_frame(stage: Stage) -> None:
    got = ask(stage.d, "victim", {"do": "big-send", "to": "buddy", "bytes": 2 << 20})
    assert not got["ok"] and "message too large" in got["error"], got
    stage.check_everyone()


def test_a_handler_cannot_talk_to_the_daemon_socket(stage: Stage) -> None:
    got = _denied(stage, {"do": "connect", "path": str(stage.d.socket)})
    if got["ok"]:  # connected: the daemon must refuse the hello
        frames = _frames(got["result"])
        assert not any(f.get("t") == "welcome" for f in frames), f"the daemon welcomed a worker: {frames}"
        assert frames and frames[0].get("t") == "error" and "permission denied" in frames[0]["message"], frames


def test_a_detached_grandchild_of_a_worker_cannot_talk_to_the_daemon_socket(stage: Stage) -> None:
    """The peer check walks the parent chain from the peer's pid to a worker: a double fork
    (the grandchild is reparented to init) leaves that chain."""
    got = _denied(stage, {"do": "connect-detached", "path": str(stage.d.socket)})
    if got["ok"]:
        frames = _frames(got["result"])
        assert not any(f.get("t") == "welcome" for f in frames), f"the daemon welcomed a worker's grandchild: {frames}"


def test_a_handler_cannot_use_daemon_store_on_theater_home(stage: Stage) -> None:
    got = _denied(stage, {"do": "store", "home": str(stage.d.home)})
    assert not got["ok"], f"the actor opened the store and read its actors: {got}"


def test_a_handler_cannot_kill_the_daemon(stage: Stage) -> None:
    """Workers run as the daemon's user: without Landlock's signal scope a handler may kill it."""
    d = stage.d
    try:
        got: Any = ask(d, "victim", {"do": "kill", "pid": d.pid})
    except TheaterError as exc:
        got = f"{type(exc).__name__}: {exc}"
    time.sleep(0.5)
    assert d.proc is not None and d.proc.poll() is None, f"a handler killed theaterd (kill said {got})"
    assert not got["ok"], got
    stage.check_everyone()


def test_a_handler_cannot_kill_another_worker(stage: Stage) -> None:
    d = stage.d
    loner = stage.pid_of("loner")
    stage.send("loner", 2, "before")
    got = ask(d, "victim", {"do": "kill", "pid": loner})
    assert not got["ok"], f"a handler killed another actor's worker (pid {loner})"
    stage.check_everyone()


def test_a_worker_inherits_no_descriptor_but_its_link(stage: Stage) -> None:
    """Only the link (a socket) and /dev/null: not the daemon's log, store or listener."""
    pid = worker_python(stage.d, "victim")  # read from outside: the worker itself cannot read /proc
    got = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            got[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    sockets = [fd for fd, target in got.items() if target.startswith("socket:")]
    files = {fd: target for fd, target in got.items()
             if not target.startswith(("socket:", "pipe:", "anon_inode:")) and target != "/dev/null"
             and not target.startswith("/proc/")}
    assert len(sockets) == 1, f"sockets other than the link: {got}"
    assert not files, f"the worker holds files the daemon opened: {files}"


def test_a_handler_cannot_write_into_the_daemon_log(stage: Stage) -> None:
    """fd 2 of a worker must not be the daemon's own stderr (its log, or the journal)."""
    forged = "theaterd[1] WARNING forged by an actor"
    got = ask(stage.d, "victim", {"do": "write-fd", "fd": 2, "text": forged + "\n"})
    time.sleep(0.2)
    assert forged not in stage.d.log(), f"an actor wrote into the daemon's log (write said {got})"
    stage.check_everyone()


def test_a_handler_cannot_flood_the_daemon_log(stage: Stage) -> None:
    """What an actor prints is kept per actor, bounded; printed from a thread of its own it
    belongs to no actor and went to the daemon's log, without a bound."""
    log = stage.d.log_path
    before = log.stat().st_size
    ask(stage.d, "victim", {"do": "flood-log", "lines": 2500})  # 20 MB
    stage.check_everyone()  # (by then the worker has sent every line)
    grown = log.stat().st_size - before
    assert grown < 2 << 20, f"an actor grew the daemon's log by {grown} bytes"
    # and the daemon took no more of it than the worker's output budget: the rest was dropped, and said so
    logs = stage.d.ctl("logs", "victim")
    assert logs.returncode == 0, logs.stderr
    assert re.search(r"\[theaterd: \d+ bytes of output dropped: more than 1 MiB/s\]", logs.stdout), logs.stdout[-500:]
    # (what is kept is more than one answer may carry: the newest lines, and a note on stderr)
    assert re.match(r"theaterctl: \d+ older lines not shown", logs.stderr), logs.stderr


def test_inspect_names_the_worker_and_status_the_sandbox(stage: Stage) -> None:
    """issue 12: inspect shows which worker (pid) hosts an actor; status shows the sandbox."""
    d = stage.d
    view = json.loads(d.ctl("--json", "inspect", "victim").stdout)
    assert str(stage.pid_of("victim")) in json.dumps(view, default=str) and "worker" in view, view
    status = json.loads(d.ctl("--json", "daemon", "status").stdout)
    assert "sandbox" in status, status
