"""Crashes around worker processes: poison messages, kill -9 of the daemon and of a
worker, innocent neighbours of a killed worker, and the outbox under backpressure.

Every count is read twice: in the actor's state (the ids its ``handle_send`` saw)
and in its chain (the ``handle-send`` events).  Accepted means acknowledged to
the client; accepted sends must be handled exactly once, whatever was killed.
"""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon.errors import TheaterError
from tests.conftest import DaemonFactory, DaemonProcess
from tests.e2e.isolation_actors import (
    alive,
    ask,
    assert_verifies,
    busy_in,
    ctl_async,
    events,
    handled_ids,
    ids_of,
    kill_leftovers,
    of_type,
    spawn,
    wait_for,
    tagged,
    worker_pid,
    worker_pids,
)
from theaterctl.client import Client

pytestmark = pytest.mark.e2e

ON_FAILURE = 'restart = "on-failure"\n'


@pytest.fixture
def daemon(daemon_factory: DaemonFactory) -> Iterator[Callable[..., DaemonProcess]]:
    """``daemon(*args)``: a started theaterd; every worker it ever had is gone at the end."""
    made: list[DaemonProcess] = []
    seen: set[int] = set()

    def make(*args: str) -> DaemonProcess:
        d = daemon_factory(*args)
        d.start()
        made.append(d)
        return d

    try:
        yield make
    finally:
        for d in made:
            if d.proc is not None and d.proc.poll() is None:
                seen |= worker_pids(d)
            d.stop()
        kill_leftovers(seen)


def _send_all(d: DaemonProcess, actor: str, ids: list[str], **extra: Any) -> None:
    with Client.connect(d.socket) as c:
        for mid in ids:
            c.send(actor, {"id": mid, **extra})


def _handled_count(d: DaemonProcess, actor: str) -> int:
    with Client.connect(d.socket) as c:
        for view in c.list(all=True):
            if view["name"] == actor:
                return int(view["handled"])
    return 0


def _status(d: DaemonProcess, actor: str) -> str:
    return {a["name"]: a["status"] for a in json.loads(d.ctl("--json", "list", "--all").stdout)}[actor]


def _crashes_of_mail(d: DaemonProcess, actor: str) -> list[int]:
    return [e["data"]["attempts"] for e in of_type(d, actor, "runtime/crash") if "mail" in e["data"]]


# -- poison messages -----------------------------------------------------------


def test_poison_send_is_retried_max_deliveries_times_then_dead_lettered(
        daemon: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    d = daemon()
    spawn(d, short_tmp / "a", "poisoned", ON_FAILURE)
    _send_all(d, "poisoned", ["ok-0", "ok-1"])
    _send_all(d, "poisoned", ["poison"], poison=True)
    _send_all(d, "poisoned", ["ok-2", "ok-3"])
    dead = wait_for("the dead letter", lambda: of_type(d, "poisoned", "runtime/dead-letter"))
    assert len(dead) == 1 and dead[0]["data"]["attempts"] == 3, dead
    assert "worker exited with code 1 while handling handle_send" in dead[0]["data"]["reason"]
    assert _crashes_of_mail(d, "poisoned") == [1, 2, 3]
    _send_all(d, "poisoned", ["ok-4"])
    assert ids_of(d, "poisoned") == ["ok-0", "ok-1", "ok-2", "ok-3", "ok-4"]
    assert handled_ids(d, "poisoned") == ["ok-0", "ok-1", "ok-2", "ok-3", "ok-4"]
    assert _status(d, "poisoned") == "running"
    assert_verifies(d, "poisoned")


def test_poison_attempts_survive_a_daemon_kill_between_deliveries(
        daemon: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    d = daemon()
    spawn(d, short_tmp / "a", "poisoned", ON_FAILURE)
    _send_all(d, "poisoned", ["poison"], poison=True, sleep=1.0)  # each delivery: 1 s, then os._exit
    _send_all(d, "poisoned", ["ok-0"])
    wait_for("the first crash", lambda: _crashes_of_mail(d, "poisoned"))
    before = worker_pids(d)
    d.kill()  # during the second delivery's second: the daemon died, not the actor
    wait_for("the old workers to exit", lambda: not any(alive(p) for p in before), 10)
    d.start()
    dead = wait_for("the dead letter", lambda: of_type(d, "poisoned", "runtime/dead-letter"), 20)
    assert dead[0]["data"]["attempts"] == 3, dead
    assert _crashes_of_mail(d, "poisoned") == [1, 2, 3], "the stored attempt count was not used"
    assert ids_of(d, "poisoned") == ["ok-0"]
    assert handled_ids(d, "poisoned") == ["ok-0"]
    assert_verifies(d, "poisoned")


# -- sends stored before the handling (at a request) are not sent again on a retry -------


def _relay_cast(d: DaemonProcess, short_tmp: Path) -> None:
    spawn(d, short_tmp / "a", "relay", ON_FAILURE)
    spawn(d, short_tmp / "a", "sink")
    spawn(d, short_tmp / "a", "sink2")
    spawn(d, short_tmp / "a", "counter")


def _sends_ok(d: DaemonProcess, actor: str) -> list[str]:
    return [e["data"]["peer_name"] for e in of_type(d, actor, "message-server/send") if e["data"]["outcome"] == "ok"]


def test_sends_stored_at_a_request_are_not_sent_again_when_the_handling_is_retried(
        daemon: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    """A handler sends to two actors, then requests (which stores those sends, so they keep
    their order before the request), then its worker dies; twice.  The third delivery
    completes.  Each target got each message once, and the chain records each send once."""
    d = daemon()
    _relay_cast(d, short_tmp)
    _send_all(d, "relay", ["m1"], relay_then_ask=["sink", "sink2"], ask="counter", crash_first=2)
    wait_for("the relay to finish", lambda: ids_of(d, "relay") == ["m1"], 30)
    assert _crashes_of_mail(d, "relay") == [1, 2]
    assert ids_of(d, "sink") == ["m1", "m1-after"]
    assert ids_of(d, "sink2") == ["m1"]
    assert _sends_ok(d, "relay") == ["sink", "sink2", "sink"]  # the first attempt's two, then the last one
    (handled,) = of_type(d, "relay", "message-server/handle-send")
    assert handled["data"]["sends_stored_before"] == 2
    assert ask(d, "counter", {"do": "state"})["count"] == 3  # the request itself was made each time
    assert_verifies(d, "relay", "sink", "sink2", "counter")


def test_sends_stored_at_a_request_are_not_sent_again_after_a_daemon_kill(
        daemon: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    d = daemon()
    _relay_cast(d, short_tmp)
    _send_all(d, "relay", ["m1"], relay_then_ask=["sink", "sink2"], ask="counter", sleep_after_ask=1.5)
    wait_for("the first sends to arrive", lambda: ids_of(d, "sink2") == ["m1"], 15)
    before = worker_pids(d)
    d.kill()  # while the relay sleeps after its request: its handling is not stored yet
    wait_for("the old workers to exit", lambda: not any(alive(p) for p in before), 10)
    d.start()
    wait_for("the relay to finish", lambda: ids_of(d, "relay") == ["m1"], 30)
    assert ids_of(d, "sink") == ["m1", "m1-after"]
    assert ids_of(d, "sink2") == ["m1"]
    assert _sends_ok(d, "relay") == ["sink", "sink2", "sink"]
    assert_verifies(d, "relay", "sink", "sink2", "counter")


def test_a_send_that_failed_keeps_its_place_so_a_retry_skips_the_right_ones(
        daemon: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    """Found in review: sends were counted only when they succeeded, so a retry whose first
    send failed (an unknown actor, caught) skipped that one and sent the stored one again."""
    d = daemon()
    _relay_cast(d, short_tmp)
    _send_all(d, "relay", ["m1"], try_ghost_then="sink", ask="counter", crash_first=1)
    wait_for("the relay to finish", lambda: ids_of(d, "relay") == ["m1"], 30)
    assert _crashes_of_mail(d, "relay") == [1]
    assert ids_of(d, "sink") == ["m1"]


def test_a_request_run_again_after_a_neighbour_took_the_worker_sends_nothing_twice(
        daemon: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    """Found in review: a client's request (no stored row) whose handler sent, then waited in a
    request, is run again when a neighbour's crash takes the shared worker; its sends were
    made again each time."""
    d = daemon("--workers", "1")
    spawn(d, short_tmp / "a", "relay", ON_FAILURE)
    spawn(d, short_tmp / "a", "sink")
    spawn(d, short_tmp / "a", "bomb", ON_FAILURE)
    spawn(d, short_tmp / "a", "slow", 'isolation = "dedicated"\n')
    out: list[Any] = []
    asker = threading.Thread(target=lambda: out.append(
        ask(d, "relay", {"do": "relay-ask", "to": "sink", "ask": "slow", "wait": 2, "id": "r1"}, timeout=60)))
    asker.start()
    wait_for("relay to wait in its request", lambda: busy_in(d, "relay") == "handle_request")
    _send_all(d, "bomb", ["b"], poison=True, sleep=0.3)  # takes the shared worker down, three times
    asker.join(60)
    assert out == [{"ok": True}]
    assert len(of_type(d, "bomb", "runtime/crash")) >= 1
    assert ids_of(d, "sink") == ["r1"]


def test_many_sends_are_stored_in_checkpoints_and_a_retry_sends_none_twice(
        daemon: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    """600 sends from one handling: stored ahead of it every 256 (a handler's pending sends
    stay bounded), then the last ones at its request; its worker dies; the retry skips all 600."""
    from daemon.outbox import CHECKPOINT_SENDS

    d = daemon()
    _relay_cast(d, short_tmp)
    n = 600
    assert n > 2 * CHECKPOINT_SENDS
    _send_all(d, "relay", ["m1"], spray=n, to="sink", ask="counter", crash_first=1)
    wait_for("the relay to finish", lambda: ids_of(d, "relay") == ["m1"], 60)
    assert _crashes_of_mail(d, "relay") == [1]
    assert ids_of(d, "sink") == [f"m1-{i}" for i in range(n)]
    assert len(_sends_ok(d, "relay")) == n
    assert_verifies(d, "relay", "sink")


def test_poison_that_kills_its_worker_while_waiting_in_a_host_call_is_dead_lettered(
        daemon: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    """A dedicated worker dies while its only actor waits in ``request``: nobody else can have
    done it, yet "it was waiting in a host call" spares the message its delivery count."""
    d = daemon()
    spawn(d, short_tmp / "a", "helper")
    spawn(d, short_tmp / "a", "poisoned", ON_FAILURE + 'isolation = "dedicated"\nmax_restarts = 100\n')
    _send_all(d, "poisoned", ["poison"], exit_while_asking="helper")
    _send_all(d, "poisoned", ["ok-0"])
    try:
        dead = wait_for("the dead letter", lambda: of_type(d, "poisoned", "runtime/dead-letter"), 15, every=0.5)
    except AssertionError as exc:
        deaths = d.log().count("died: worker exited with code 1")
        raise AssertionError(f"{exc}; its worker died at least {deaths} times meanwhile (log tail), crashes recorded:"
                             f" {_crashes_of_mail(d, 'poisoned')}") from None
    assert dead[0]["data"]["attempts"] == 3
    assert ids_of(d, "poisoned") == ["ok-0"]
    assert_verifies(d, "poisoned", "helper")


def test_dead_letters_are_listed_by_the_cli(daemon: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    """issue 11, item 3: ``theaterctl dead-letters [ACTOR]`` lists them."""
    d = daemon()
    spawn(d, short_tmp / "a", "poisoned", ON_FAILURE)
    _send_all(d, "poisoned", ["poison"], poison=True)
    wait_for("the dead letter", lambda: of_type(d, "poisoned", "runtime/dead-letter"))
    r = d.ctl("--json", "dead-letters", "poisoned")
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert len(listed) == 1 and "worker exited with code 1" in json.dumps(listed), listed


# -- kill -9 -------------------------------------------------------------------


def test_kill_9_of_the_daemon_while_workers_handle_loses_and_doubles_nothing(
        daemon: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    d = daemon("--workers", "1")
    spawn(d, short_tmp / "a", "shared")
    spawn(d, short_tmp / "a", "alone", 'isolation = "dedicated"\n')
    sent = {name: [f"{name}-{i}" for i in range(12)] for name in ("shared", "alone")}
    for name, ids in sent.items():
        _send_all(d, name, ids, sleep=0.1)
    wait_for("both to be busy", lambda: _handled_count(d, "shared") >= 2 and _handled_count(d, "alone") >= 2)
    workers = worker_pids(d)
    d.kill()
    wait_for("the workers to exit with the daemon", lambda: not any(alive(p) for p in workers), 10)
    d.start()
    for name, ids in sent.items():
        assert ids_of(d, name) == ids
        assert handled_ids(d, name) == ids
    assert_verifies(d, "shared", "alone")


def test_kill_9_of_a_worker_while_it_handles(daemon: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    import os
    import signal

    d = daemon("--workers", "1")
    spawn(d, short_tmp / "a", "target", ON_FAILURE)
    spawn(d, short_tmp / "a", "alone", ON_FAILURE + 'isolation = "dedicated"\n')
    pid = worker_pid(d, "target")
    alone_pid = worker_pid(d, "alone")
    assert pid in worker_pids(d) and alone_pid in worker_pids(d)
    sent = {name: [f"{name}-{i}" for i in range(10)] for name in ("target", "alone")}
    for name, ids in sent.items():
        _send_all(d, name, ids, sleep=0.1)
    wait_for("target to be handling", lambda: _handled_count(d, "target") >= 2)
    os.kill(pid, signal.SIGKILL)
    for name, ids in sent.items():
        assert ids_of(d, name) == ids
        assert handled_ids(d, name) == ids
    crashes = of_type(d, "target", "runtime/crash")
    assert len(crashes) == 1 and "killed by SIGKILL while handling handle_send" in crashes[0]["data"]["reason"]
    assert worker_pid(d, "alone") == alone_pid
    assert of_type(d, "alone", "runtime/crash") == []
    assert_verifies(d, "target", "alone")


def test_a_worker_stuck_holding_the_gil_does_not_outlive_a_killed_daemon(
        daemon: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    """A worker notices the daemon's death only by reading its link, on a thread that needs
    the GIL: a handler that never releases it leaves an orphan burning a CPU forever."""
    d = daemon("--workers", "1")
    spawn(d, short_tmp / "a", "stuck")
    pid = worker_pid(d, "stuck")
    proc = ctl_async(d, "request", "stuck", '{"do": "hold-the-gil"}')
    try:
        wait_for("the handler to run", lambda: busy_in(d, "stuck") == "handle_request")
        d.kill()
        proc.communicate(timeout=15)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(pid), f"worker {pid} outlived its daemon by 10 s"
    finally:
        kill_leftovers({pid})
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# -- innocent neighbours ---------------------------------------------------------


def _neighbour_busy_while(d: DaemonProcess, short_tmp: Path, kill: Callable[[], None], sleep: float) -> None:
    """``buddy`` (restart never) is in a handler in the shared worker when ``kill`` makes
    the daemon kill that worker for ``victim``'s sake: buddy is not to blame."""
    spawn(d, short_tmp / "a", "buddy")
    pid = worker_pid(d, "buddy")
    assert worker_pid(d, "victim") == pid
    _send_all(d, "buddy", ["b-0"], sleep=sleep)
    wait_for("buddy to be busy", lambda: busy_in(d, "buddy") == "handle_send")
    kill()
    wait_for(f"worker {pid} to be killed", lambda: not alive(pid), 15)
    assert _status(d, "buddy") == "running", of_type(d, "buddy", "runtime/crash")
    assert of_type(d, "buddy", "runtime/crash") == [], "buddy was blamed for victim's handler"
    _send_all(d, "buddy", ["b-1"])
    assert ids_of(d, "buddy") == ["b-0", "b-1"]
    assert handled_ids(d, "buddy") == ["b-0", "b-1"]
    assert_verifies(d, "buddy", "victim")


def test_handler_timeout_does_not_blame_a_neighbour_in_the_same_worker(
        daemon: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    d = daemon("--workers", "1")
    spawn(d, short_tmp / "a", "victim", ON_FAILURE + "handler_timeout = 1\n")
    procs = []

    def spin() -> None:
        procs.append(ctl_async(d, "request", "victim", '{"do": "spin"}'))

    try:
        _neighbour_busy_while(d, short_tmp, spin, sleep=3.0)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()


def test_stop_past_the_grace_does_not_blame_a_neighbour_in_the_same_worker(
        daemon: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    d = daemon("--workers", "1")
    spawn(d, short_tmp / "a", "victim")
    procs = []

    def stop_spinner() -> None:
        procs.append(ctl_async(d, "request", "victim", '{"do": "spin"}'))
        wait_for("victim to spin", lambda: busy_in(d, "victim") == "handle_request")
        r = d.ctl("stop", "victim", timeout=30)
        assert r.returncode == 0, r.stderr

    try:
        _neighbour_busy_while(d, short_tmp, stop_spinner, sleep=7.0)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()


# -- the outbox under backpressure, kill -9 ---------------------------------------


@pytest.mark.slow
def test_relay_into_a_nearly_full_mailbox_survives_20_kills(
        daemon: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    """issue 11, item 1: a relay forwarding into a mailbox of 8 that is more than half full
    takes the backpressure path; kill -9 the daemon then, 20 times: 0 lost, 0 doubled."""
    rng = random.Random(11)
    d = daemon()
    spawn(d, short_tmp / "a", "relay")
    spawn(d, short_tmp / "a", "sink", "mailbox_size = 8\n")
    acked: list[str] = []
    depth: list[int] = []
    counter = iter(range(1 << 30))
    started = time.monotonic()
    for trial in range(20):
        stop = threading.Event()

        def load() -> None:
            try:
                c = Client.connect(d.socket)
            except TheaterError:
                return
            with c:
                while not stop.is_set():
                    mid = f"m{next(counter)}"
                    try:
                        c.send("relay", {"id": mid, "relay": "sink", "then_sleep": 0.002})
                    except (TheaterError, OSError):
                        return
                    acked.append(mid)

        def watch() -> None:  # the sink's mailbox must get past half full: the backpressure path
            try:
                with Client.connect(d.socket) as c:
                    while not stop.is_set():
                        depth.append(next(a["mailbox"] for a in c.list() if a["name"] == "sink"))
                        time.sleep(0.01)
            except (TheaterError, OSError):
                return

        threads = [threading.Thread(target=load) for _ in range(2)] + [threading.Thread(target=watch)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.2, 0.6))
        d.kill()
        stop.set()
        for t in threads:
            t.join(timeout=30)
        d.start()
    assert time.monotonic() - started < 90, "the trials took too long (did something hang?)"
    assert acked
    assert max(depth, default=0) >= 4, f"the sink's mailbox (8) never got half full: {max(depth, default=0)}"
    relayed = ids_of(d, "relay")  # queued behind every replayed send: all are relayed now
    arrived = ids_of(d, "sink")  # and the sink's request queues behind every delivered send
    relay_counts, sink_counts = Counter(relayed), Counter(arrived)
    assert not [m for m in acked if relay_counts[m] == 0], "acknowledged sends the relay never handled"
    assert not [m for m, n in relay_counts.items() if n > 1], "sends the relay handled twice"
    lost = [m for m in relay_counts if sink_counts[m] == 0]
    doubled = {m: n for m, n in sink_counts.items() if n > 1}
    assert not lost and not doubled, f"{len(lost)} relayed messages lost, {len(doubled)} doubled: {doubled}"
    assert sorted(handled_ids(d, "sink")) == sorted(arrived)
    sends = [e for e in events(d, "relay") if e["type"] == "message-server/send" and e["data"].get("outcome") == "ok"]
    assert len(sends) == len(relayed)
    assert_verifies(d, "relay", "sink")


# -- results the link cannot carry, init, processes a handler starts -------------


def test_a_state_too_big_for_the_link_is_one_clear_failure_not_a_retry_loop(
        daemon: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    """A worker that cannot encode a result (over the link's 64 MiB frame limit) answers the
    ``run`` call with an error; the daemon must not read that as "run the batch again"."""
    d = daemon("--workers", "1")
    spawn(d, short_tmp / "a", "big", ON_FAILURE)
    _send_all(d, "big", ["b-0"])
    r = d.ctl("--timeout", "15", "request", "big", json.dumps({"do": "huge-state", "bytes": 70 << 20}), timeout=60)
    assert r.returncode == 1, (r.returncode, r.stderr)  # not 4: it was not slow, it failed
    assert "bytes" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert busy_in(d, "big") is None, "the actor is still busy with the failed message"
    _send_all(d, "big", ["b-1"])
    assert ids_of(d, "big") == ["b-0", "b-1"]
    assert handled_ids(d, "big") == ["b-0", "b-1"]
    assert_verifies(d, "big")


def test_init_that_spins_is_stopped_by_handler_timeout_and_frees_the_name(
        daemon: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    """issue 11, item 7: ``init`` runs under ``handler_timeout``; the name is not held.
    Five rounds: the shared worker killed under an actor being unplaced must not take the
    daemon down (a race: about one round in five hit it)."""
    d = daemon("--workers", "1")
    folder = short_tmp / "a"
    spawn(d, folder, "buddy")
    (folder / "spin_init.py").write_text("def init(state):\n    while True:\n        pass\n")
    (folder / "spinner.toml").write_text('name = "spinner"\ncomponent = "spin_init.py"\nhandler_timeout = 1\n')
    for round in range(5):
        started = time.monotonic()
        r = d.ctl("spawn", str(folder / "spinner.toml"), "--name", f"spinner-{round}", timeout=30)
        assert time.monotonic() - started < 15
        assert r.returncode == 1 and "handler_timeout of 1 s" in r.stderr, r.stderr
        r = d.ctl("spawn", str(folder / "buddy.toml"), "--name", f"spinner-{round}")
        assert r.returncode == 0, f"round {round}: {r.stderr}{d.log()}"
        _send_all(d, "buddy", [f"b-{round}"])
    assert ids_of(d, "buddy") == [f"b-{i}" for i in range(5)]
    assert_verifies(d, "buddy", *(f"spinner-{i}" for i in range(5)))


def test_a_process_started_by_a_handler_does_not_outlive_its_actor(
        daemon: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    """Killing a worker's process group misses a child that made a session of its own;
    after its dedicated worker is gone (actor stopped) nothing of the actor may run."""
    d = daemon()
    spawn(d, short_tmp / "a", "forker", 'isolation = "dedicated"\n')
    worker = worker_pid(d, "forker")
    ask(d, "forker", {"do": "detached-child"})
    # (its pid inside the worker's namespace means nothing here: find it by its command line)
    wait_for("the detached child to run", lambda: bool(tagged("theater-detached-child")), 10)
    (child,) = tagged("theater-detached-child")
    try:
        assert alive(child)
        assert d.ctl("stop", "forker").returncode == 0
        wait_for(f"worker {worker} to exit", lambda: not alive(worker), 10)
        deadline = time.monotonic() + 5
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(child), f"process {child}, started by the actor's handler, still runs after its worker ended"
    finally:
        kill_leftovers({child})


SPIN_AT_IMPORT = """
import os
if os.path.exists(os.path.join(os.path.dirname(__file__), "spin-at-import")):
    while True:
        pass

def handle_request(state, params):
    return state, (b'{"ok": true}',)
"""


def test_a_module_that_spins_at_import_does_not_hang_spawn(
        daemon: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    """Loading a module runs its top level in the worker, with no time limit at all."""
    d = daemon("--workers", "1")
    folder = short_tmp / "m"
    spawn(d, short_tmp / "a", "buddy")
    folder.mkdir()
    (folder / "mutant.py").write_text(SPIN_AT_IMPORT)
    (folder / "spin-at-import").write_text("")
    (folder / "mutant.toml").write_text('name = "mutant"\ncomponent = "mutant.py"\nhandler_timeout = 1\n')
    try:
        r = d.ctl("--timeout", "60", "spawn", str(folder / "mutant.toml"), timeout=15)
    except subprocess.TimeoutExpired:
        d.stop_timeout = 5
        raise AssertionError("theaterctl spawn of a module that spins at import still waits after 15 s") from None
    assert r.returncode == 1 and "mutant" in r.stderr, (r.returncode, r.stderr)
    _send_all(d, "buddy", ["b-0"])
    assert ids_of(d, "buddy") == ["b-0"]


def test_a_module_that_spins_at_import_does_not_hang_the_daemon_start(
        daemon: Callable[..., DaemonProcess], short_tmp: Path) -> None:
    """The component is read again at every start: one edited into an endless loop (or an
    actor that changes its own file) must fail alone, not keep theaterd from ever starting."""
    d = daemon("--workers", "1")
    folder = short_tmp / "m"
    folder.mkdir()
    (folder / "mutant.py").write_text(SPIN_AT_IMPORT)
    (folder / "mutant.toml").write_text('name = "mutant"\ncomponent = "mutant.py"\nhandler_timeout = 1\n')
    assert d.ctl("spawn", str(folder / "mutant.toml")).returncode == 0
    spawn(d, short_tmp / "a", "buddy")
    _send_all(d, "buddy", ["b-0"])
    (folder / "spin-at-import").write_text("")
    workers = worker_pids(d)
    d.kill()
    wait_for("the old workers to exit", lambda: not any(alive(p) for p in workers), 10)
    d.stop_timeout = 5
    try:
        d.start(timeout=15)
    except RuntimeError as exc:
        raise AssertionError(f"theaterd did not start with a spinning module to restore: {exc}") from None
    assert ids_of(d, "buddy") == ["b-0"]
    wait_for("mutant to fail loading", lambda: _status(d, "mutant") == "failed", 15)
