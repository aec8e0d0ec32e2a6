"""Durability and recovery: restarts, SIGKILL at random moments, corrupt stores."""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
from pathlib import Path

import pytest

from daemon.errors import TheaterError
from tests.conftest import EXAMPLES, DaemonProcess, bin_path
from theaterctl.client import Client

pytestmark = pytest.mark.e2e

COUNTER = str(EXAMPLES / "counter" / "manifest.toml")


def _export(d: DaemonProcess, actor: str, path: Path) -> list[dict]:
    r = d.ctl("chain", "export", actor, "-o", str(path))
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_stop_start_restores_actors_and_continues_chains(short_tmp: Path) -> None:
    d = DaemonProcess(socket=short_tmp / "s.sock", home=short_tmp / "home")
    d.start()
    ids = json.loads(d.ctl("--json", "spawn", COUNTER).stdout)
    assert d.ctl("spawn", COUNTER, "--name", "gone").returncode == 0
    assert d.ctl("send", "counter", '{"type": "increment", "amount": 5}').returncode == 0
    assert d.ctl("stop", "gone").returncode == 0
    before = json.loads(d.ctl("--json", "chain", "show", "counter").stdout)
    assert d.ctl("daemon", "stop").returncode == 0
    assert d.proc is not None
    d.proc.wait(timeout=30)

    d.start()
    actors = {a["name"]: a for a in json.loads(d.ctl("--json", "list", "--all").stdout)}
    assert actors["counter"]["id"] == ids["id"] and actors["counter"]["status"] == "running"
    assert actors["gone"]["status"] == "stopped"
    assert json.loads(d.ctl("request", "counter", '{"type": "get"}').stdout) == {"count": 5}
    after = json.loads(d.ctl("--json", "chain", "show", "counter").stdout)
    assert after[: len(before)] == before
    assert after[len(before)]["parent_hash"] == before[-1]["hash"]
    assert d.ctl("chain", "verify", "counter").returncode == 0
    assert d.ctl("chain", "verify", "gone").returncode == 0
    assert d.ctl("--json", "chain", "show", "gone").returncode == 0
    d.stop()


def test_sigkill_at_random_moments_loses_nothing_acknowledged(short_tmp: Path) -> None:
    rng = random.Random(1234)
    d = DaemonProcess(socket=short_tmp / "s.sock", home=short_tmp / "home")
    d.start()
    assert d.ctl("spawn", COUNTER).returncode == 0
    acked: list[int] = []
    attempted = 0
    next_id = 0
    trials = 6
    for _ in range(trials):
        stop = threading.Event()
        lock = threading.Lock()

        def sender(worker: int) -> None:
            nonlocal next_id, attempted
            try:
                c = Client.connect(d.socket)
            except TheaterError:
                return
            with c:
                while not stop.is_set():
                    with lock:
                        next_id += 1
                        mid = next_id
                        attempted += 1
                    try:
                        c.send("counter", {"type": "increment", "amount": 1, "id": mid})
                    except (TheaterError, OSError):
                        return
                    with lock:
                        acked.append(mid)

        threads = [threading.Thread(target=sender, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.05, 0.6))
        d.kill()
        stop.set()
        for t in threads:
            t.join(timeout=30)
        d.start()
        # a request queues behind every replayed send, so afterwards all of them are handled
        assert d.ctl("request", "counter", '{"type": "get"}').returncode == 0

    assert acked, "no send was acknowledged at all"
    events = _export(d, "counter", short_tmp / "c.jsonl")
    handled = [e["payload"]["id"] for e in events
               if e["type"] == "message-server/handle-send" and e["data"]["outcome"] == "ok"]
    assert len(handled) == len(set(handled)), "a message was handled twice"
    missing = set(acked) - set(handled)
    assert not missing, f"{len(missing)} acknowledged messages are missing"
    assert len(handled) <= attempted
    state = json.loads(d.ctl("request", "counter", '{"type": "get"}').stdout)
    assert state == {"count": len(handled)}
    assert d.ctl("chain", "verify", "counter").returncode == 0
    assert d.ctl("chain", "verify", "--file", str(short_tmp / "c.jsonl")).returncode == 0
    d.stop()


def test_export_verify_file_detects_any_changed_field(theaterd: DaemonProcess, short_tmp: Path) -> None:
    assert theaterd.ctl("spawn", COUNTER).returncode == 0
    for i in range(3):
        assert theaterd.ctl("send", "counter", f'{{"type": "increment", "amount": {i + 1}}}').returncode == 0
    path = short_tmp / "c.jsonl"
    lines = path.read_text().splitlines() if path.exists() else None
    events = _export(theaterd, "counter", path)
    lines = path.read_text().splitlines()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    r = theaterd.ctl("chain", "verify", "--file", str(path))
    assert r.returncode == 0 and f"{len(events)} events" in r.stdout

    tampered = json.loads(lines[2])
    tampered["data"]["size"] += 1
    bad = short_tmp / "bad.jsonl"
    bad.write_text("\n".join([*lines[:2], json.dumps(tampered), *lines[3:]]) + "\n")
    r = theaterd.ctl("chain", "verify", "--file", str(bad))
    assert r.returncode == 1 and "line 3" in r.stderr

    bad.write_text("\n".join([*lines[:1], *lines[2:]]) + "\n")  # an event removed
    r = theaterd.ctl("chain", "verify", "--file", str(bad))
    assert r.returncode == 1 and "line 2" in r.stderr


def test_chain_show_filters_and_single_event(theaterd: DaemonProcess) -> None:
    assert theaterd.ctl("spawn", COUNTER).returncode == 0
    assert theaterd.ctl("send", "counter", '{"type": "increment"}').returncode == 0
    assert theaterd.ctl("request", "counter", '{"type": "get"}').returncode == 0
    sends = json.loads(theaterd.ctl("--json", "chain", "show", "counter", "--type",
                                    "message-server/handle-send").stdout)
    assert [e["type"] for e in sends] == ["message-server/handle-send"]
    newest = json.loads(theaterd.ctl("--json", "chain", "show", "counter", "--limit", "1").stdout)
    assert [e["seq"] for e in newest] == [3]
    assert json.loads(theaterd.ctl("--json", "chain", "show", "counter", "--since", "1h").stdout)[0]["seq"] == 1
    assert json.loads(theaterd.ctl("--json", "chain", "show", "counter", "--since",
                                   "2999-01-01T00:00:00Z").stdout) == []
    one = json.loads(theaterd.ctl("--json", "chain", "show", "counter", "2").stdout)
    assert one["payload"] == {"type": "increment"} and one["data"]["state_hash"]
    by_hash = json.loads(theaterd.ctl("--json", "chain", "show", "counter", one["hash"][:10]).stdout)
    assert by_hash["seq"] == 2
    r = theaterd.ctl("chain", "show", "counter", "999")
    assert r.returncode == 3
    assert json.loads(theaterd.ctl("--json", "state", "counter").stdout) == {"count": 1}


def test_chain_follow_prints_new_events(theaterd: DaemonProcess) -> None:
    assert theaterd.ctl("spawn", COUNTER).returncode == 0
    proc = subprocess.Popen([bin_path("theaterctl"), "--json", "chain", "show", "counter", "--follow"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=theaterd.env)
    assert proc.stdout is not None
    try:
        first = json.loads(proc.stdout.readline())
        assert first["type"] == "runtime/spawn"
        assert theaterd.ctl("send", "counter", '{"type": "increment"}').returncode == 0
        second = json.loads(proc.stdout.readline())
        assert second["type"] == "message-server/handle-send" and second["parent_hash"] == first["hash"]
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_corrupt_store_is_a_clear_startup_error(short_tmp: Path) -> None:
    home = short_tmp / "home"
    home.mkdir(mode=0o700)
    (home / "theater.db").write_bytes(b"this is not a database" * 100)
    r = subprocess.run([bin_path("theaterd"), "--socket", str(short_tmp / "s.sock"), "--home", str(home)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert str(home / "theater.db") in r.stderr and "move" in r.stderr
    assert "Traceback" not in r.stderr
    assert (home / "theater.db").read_bytes().startswith(b"this is not a database")


def test_chain_verify_finds_a_record_changed_in_the_store(theaterd: DaemonProcess) -> None:
    import sqlite3

    assert theaterd.ctl("spawn", COUNTER).returncode == 0
    for _ in range(5):
        assert theaterd.ctl("send", "counter", '{"type": "increment"}').returncode == 0
    r = theaterd.ctl("chain", "verify", "counter")
    assert r.returncode == 0 and "6 events" in r.stdout
    db = sqlite3.connect(theaterd.home / "theater.db", isolation_level=None, timeout=10)
    db.execute("UPDATE events SET record = CAST(record || x'00' AS BLOB) WHERE seq = 4"
               " AND actor = (SELECT id FROM actors WHERE name = 'counter')")
    db.close()
    r = theaterd.ctl("chain", "verify", "counter")
    assert r.returncode == 1
    assert "broken at event 4: hash does not match the stored record" in r.stderr
