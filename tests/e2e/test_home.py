"""The data directory: refused when others can enter it, and everything in it private."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, DaemonProcess, bin_path
from tests.daemonproc import command

pytestmark = pytest.mark.e2e


def _theaterd(short_tmp: Path, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([bin_path("theaterd"), "--socket", str(short_tmp / "s.sock"), "--home", str(home)],
                          capture_output=True, text=True, timeout=20)  # it refuses at once: 20 s is "hung"


@pytest.mark.parametrize("mode", [0o755, 0o750, 0o701], ids=["755", "750", "701"])
def test_daemon_refuses_a_home_others_can_enter(short_tmp: Path, mode: int) -> None:
    home = short_tmp / "home"
    home.mkdir()
    os.chmod(home, mode)
    r = _theaterd(short_tmp, home)
    assert r.returncode == 1, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    assert f"mode {mode:o}" in errors[0] and f"chmod 700 {home}" in errors[0]
    assert not (home / "theater.db").exists() and not (short_tmp / "s.sock").exists()


@pytest.mark.skipif(os.getuid() != 0, reason="only root can give a directory to another uid")
def test_daemon_refuses_a_home_another_uid_owns(short_tmp: Path) -> None:
    home = short_tmp / "home"
    home.mkdir(mode=0o700)
    os.chown(home, 65534, 65534)
    r = _theaterd(short_tmp, home)
    assert r.returncode == 1, r.stderr
    assert "refusing data directory" in r.stderr and "owned by uid 65534" in r.stderr
    assert "Traceback" not in r.stderr


def test_daemon_start_says_what_to_run(short_tmp: Path) -> None:
    home = short_tmp / "home"
    home.mkdir()
    os.chmod(home, 0o755)
    env = dict(os.environ, THEATER_SOCKET=str(short_tmp / "s.sock"), THEATER_HOME=str(home), NO_COLOR="1")
    r = subprocess.run([*command("theaterctl"), "daemon", "start"], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("theaterctl: error: ")
    assert f"(run: chmod 700 {home})" in r.stderr
    assert not (home / "theaterd.log").exists()  # nothing written into a directory others can read


def test_everything_in_the_home_is_private(short_tmp: Path) -> None:
    home = short_tmp / "home"
    home.mkdir(mode=0o700)
    (home / "theater.db").touch()
    os.chmod(home / "theater.db", 0o644)  # as an older theaterd left it: narrowed at start
    env = dict(os.environ, THEATER_SOCKET=str(short_tmp / "s.sock"), THEATER_HOME=str(home), NO_COLOR="1")
    ctl = [*command("theaterctl")]
    r = subprocess.run([*ctl, "daemon", "start"], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    try:
        r = subprocess.run([*ctl, "spawn", str(EXAMPLES / "counter" / "manifest.toml")], capture_output=True,
                           text=True, env=env, timeout=60)
        assert r.returncode == 0, r.stderr
        names = {p.name for p in home.iterdir()}
        assert {"theater.db", "theater.db-wal", "theater.db-shm", "theaterd.lock", "theaterd.log"} <= names
        for p in home.iterdir():
            assert os.stat(p).st_mode & 0o077 == 0, f"{p.name} is mode {os.stat(p).st_mode & 0o777:o}"
        assert os.stat(home).st_mode & 0o777 == 0o700
    finally:
        subprocess.run([*ctl, "daemon", "stop"], capture_output=True, env=env, timeout=60)


def test_fixture_daemon_files_are_private(theaterd: DaemonProcess) -> None:
    assert theaterd.ctl("spawn", str(EXAMPLES / "counter" / "manifest.toml")).returncode == 0
    for p in theaterd.home.iterdir():
        assert os.stat(p).st_mode & 0o077 == 0, p.name
