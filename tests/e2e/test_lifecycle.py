"""restart, rm, prune, logs and dead-letters through the real CLI."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, DaemonFactory, DaemonProcess

pytestmark = pytest.mark.e2e

COUNTER = str(EXAMPLES / "counter" / "manifest.toml")

NOISY = '''
import json, os, sys
def handle_send(state, params):
    m = json.loads(params[0])
    if m.get("poison"):
        os._exit(9)
    print("got", m)
    return (state,)
def handle_request(state, params):
    print("asked", file=sys.stderr)
    raise KeyError("zz")
'''


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_restart_rm_and_prune(theaterd: DaemonProcess) -> None:
    _ok(theaterd.ctl("spawn", COUNTER))
    _ok(theaterd.ctl("send", "counter", '{"type": "increment", "amount": 5}'))
    assert "restarted counter" in _ok(theaterd.ctl("restart", "counter"))
    assert json.loads(_ok(theaterd.ctl("request", "counter", '{"type": "get"}'))) == {"count": 5}
    r = theaterd.ctl("rm", "counter")
    assert r.returncode == 2 and "stop it first" in r.stderr
    _ok(theaterd.ctl("stop", "counter"))
    _ok(theaterd.ctl("rm", "counter"))
    assert json.loads(_ok(theaterd.ctl("--json", "list", "--all"))) == []
    _ok(theaterd.ctl("spawn", COUNTER))  # the name is free again
    _ok(theaterd.ctl("stop", "counter"))
    pruned = json.loads(_ok(theaterd.ctl("--json", "prune", "--purge-chains", "--yes")))
    assert [a["name"] for a in pruned["removed"]] == ["counter"]


def test_logs_show_what_an_actor_printed_and_its_errors_with_their_type(
        theaterd: DaemonProcess, short_tmp: Path) -> None:
    (short_tmp / "noisy.py").write_text(NOISY)
    (short_tmp / "noisy.toml").write_text('name = "noisy"\ncomponent = "noisy.py"\n')
    _ok(theaterd.ctl("spawn", str(short_tmp / "noisy.toml")))
    _ok(theaterd.ctl("send", "noisy", '{"n": 1}'))
    r = theaterd.ctl("request", "noisy", "{}")
    assert r.returncode == 1 and "KeyError: 'zz'" in r.stderr, r.stderr
    deadline = time.monotonic() + 10
    while True:
        lines = _ok(theaterd.ctl("logs", "noisy")).splitlines()
        text = "\n".join(lines)
        if ("got {'n': 1}" in text and "KeyError" in text) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert "stdout: got {'n': 1}" in text and "stderr: asked" in text
    assert "handle_request raised:" in text and 'raise KeyError("zz")' in text  # the actor's own frames
    assert "daemon/" not in text  # and none of the daemon's or worker's


def test_a_poison_message_is_dead_lettered_and_can_be_dropped(theaterd: DaemonProcess, short_tmp: Path) -> None:
    (short_tmp / "noisy.py").write_text(NOISY)
    (short_tmp / "noisy.toml").write_text('name = "noisy"\ncomponent = "noisy.py"\nrestart = "on-failure"\n'
                                          'max_restarts = 10\nmax_deliveries = 2\n')
    _ok(theaterd.ctl("spawn", str(short_tmp / "noisy.toml")))
    _ok(theaterd.ctl("send", "noisy", '{"poison": true}'))
    deadline = time.monotonic() + 20
    letters: list[dict[str, object]] = []
    while not letters and time.monotonic() < deadline:
        letters = json.loads(_ok(theaterd.ctl("--json", "dead-letters", "noisy")))
        time.sleep(0.1)
    assert len(letters) == 1 and letters[0]["msg"] == {"poison": True} and letters[0]["attempts"] == 2
    assert "worker exited with code 9 while handling handle_send" in str(letters[0]["reason"])
    table = _ok(theaterd.ctl("dead-letters"))
    assert "noisy" in table and "poison" in table
    _ok(theaterd.ctl("dead-letters", "drop", str(letters[0]["id"])))
    assert json.loads(_ok(theaterd.ctl("--json", "dead-letters"))) == []
    r = theaterd.ctl("dead-letters", "retry", "nope")
    assert r.returncode == 2
    _ok(theaterd.ctl("chain", "verify", "noisy"))


HOARDER = '''
HELD = []
def handle_request(state, params):
    block = bytearray(300 << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1  # touch every page: resident
    HELD.append(block)
    return state, (b'{"held": true}',)
'''


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * 4096


def test_a_stopped_actor_frees_what_it_held(daemon_factory: DaemonFactory, short_tmp: Path) -> None:
    """issue 11, item 8: memory an actor's module held is given back when it stops."""
    from tests.e2e.isolation_actors import worker_python

    d = daemon_factory("--workers", "1")
    d.start()
    (short_tmp / "hoarder.py").write_text(HOARDER)
    (short_tmp / "hoarder.toml").write_text('name = "hoarder"\ncomponent = "hoarder.py"\n')
    (short_tmp / "plain.toml").write_text('name = "plain"\ncomponent = "hoarder.py"\n')
    _ok(d.ctl("spawn", str(short_tmp / "hoarder.toml")))
    _ok(d.ctl("spawn", str(short_tmp / "plain.toml")))  # keeps the shared worker alive
    pid = worker_python(d, "plain")
    before = _rss(pid)
    _ok(d.ctl("request", "hoarder", "{}"))
    assert _rss(pid) > before + (250 << 20)
    _ok(d.ctl("stop", "hoarder"))
    deadline = time.monotonic() + 10
    while _rss(pid) > before + (50 << 20) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _rss(pid) < before + (50 << 20), f"the worker still holds {(_rss(pid) - before) >> 20} MiB"
