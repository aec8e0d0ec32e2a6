"""A real theaterd whose home fills up: exit 75, the daemon stays up, and it resumes by itself."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.errors import Busy
from tests.conftest import DaemonProcess
from tests.test_diskfull import COUNTING, _fill, _mount_tmpfs

pytestmark = pytest.mark.e2e


@pytest.fixture
def small_fs() -> Iterator[Path]:
    yield from _mount_tmpfs("3m")


def test_the_daemon_survives_a_full_disk_and_resumes_without_a_restart(small_fs: Path, short_tmp: Path) -> None:
    from theaterctl.client import Client

    src = short_tmp / "c"
    src.mkdir()
    (src / "c.py").write_text(COUNTING)
    (src / "manifest.toml").write_text('name = "c"\ncomponent = "c.py"\n')
    d = DaemonProcess(socket=short_tmp / "s.sock", home=small_fs / "home")
    d.log_path = short_tmp / "theaterd.log"  # not on the small file system
    d.start()
    try:
        assert d.ctl("spawn", str(src / "manifest.toml")).returncode == 0
        filler = _fill(small_fs, 96 << 10)
        acked = 0
        with Client.connect(d.socket) as client:
            deadline = time.monotonic() + 60
            while True:
                assert time.monotonic() < deadline, "the disk never filled"
                try:
                    client.send("c", {"pad": "x" * 2000})
                    acked += 1
                except Busy as exc:  # (the client knows code 75, not the subclass)
                    assert "disk full" in str(exc)
                    break
        r = d.ctl("send", "c", "{}")
        assert r.returncode == 75, r.stderr
        assert "disk full" in r.stderr and "bytes free" in r.stderr and "Traceback" not in r.stderr
        assert d.ctl("list").returncode == 0  # reads are answered
        assert d.ctl("chain", "verify", "c").returncode == 0
        filler.unlink()
        deadline = time.monotonic() + 30
        while d.ctl("send", "c", "{}").returncode != 0:
            assert time.monotonic() < deadline, "the daemon did not resume"
            time.sleep(0.2)
        acked += 1
        deadline = time.monotonic() + 30
        while True:
            state = json.loads(d.ctl("request", "c", "{}").stdout)
            if state["n"] == acked or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert state == {"n": acked}  # every acknowledged send, once
        assert d.ctl("chain", "verify", "c").returncode == 0
        assert d.proc is not None and d.proc.poll() is None  # never restarted
    finally:
        d.stop()


def test_the_daemon_starts_on_a_full_disk_and_says_so(small_fs: Path, short_tmp: Path) -> None:
    src = short_tmp / "c"
    src.mkdir()
    (src / "c.py").write_text(COUNTING)
    (src / "manifest.toml").write_text('name = "c"\ncomponent = "c.py"\n')
    d = DaemonProcess(socket=short_tmp / "s.sock", home=small_fs / "home")
    d.log_path = short_tmp / "theaterd.log"  # not on the small file system
    d.start()
    try:
        assert d.ctl("spawn", str(src / "manifest.toml")).returncode == 0
        assert d.ctl("send", "c", "{}").returncode == 0
    finally:
        d.stop()
    filler = _fill(small_fs, 0)
    d.start()
    try:
        status = json.loads(d.ctl("--json", "daemon", "status").stdout)
        assert status["store_free"] < 64 << 10
        assert json.loads(d.ctl("state", "c").stdout) == {"n": 1}
        assert d.ctl("send", "c", "{}").returncode == 75
        status = json.loads(d.ctl("--json", "daemon", "status").stdout)
        assert status["store"].startswith("disk full"), status
        assert "bytes free" in (d.log_path.read_text() if d.log_path else "")
        filler.unlink()
        deadline = time.monotonic() + 30
        while d.ctl("send", "c", "{}").returncode != 0:
            assert time.monotonic() < deadline, "the daemon did not resume"
            time.sleep(0.2)
        assert json.loads(d.ctl("--json", "daemon", "status").stdout)["store"] == "ok"
    finally:
        d.stop()
