"""Shared fixtures: short socket directories and a real theaterd process."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "actors" / "examples"


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A 0700 directory with a short path (Unix socket paths are limited to 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="th-", dir="/tmp"))
    os.chmod(path, 0o700)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def bin_path(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


@dataclass
class DaemonProcess:
    """A theaterd running in a subprocess, plus a way to run the real theaterctl against it."""

    socket: Path
    home: Path
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(THEATER_SOCKET=str(self.socket), THEATER_HOME=str(self.home), NO_COLOR="1", COLUMNS="200")
        return env

    def start(self, timeout: float = 20.0) -> None:
        log = open(self.home.parent / "theaterd.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [bin_path("theaterd"), "--socket", str(self.socket), "--home", str(self.home), *self.extra_args],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=self.env,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"theaterd exited with {self.proc.returncode}: {self.log()}")
            if self.socket.exists():
                r = self.ctl("daemon", "status")
                if r.returncode == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError(f"theaterd did not start: {self.log()}")

    def log(self) -> str:
        try:
            return (self.home.parent / "theaterd.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def ctl(self, *args: str, input: str | bytes | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        data = input.decode() if isinstance(input, bytes) else input
        return subprocess.run(
            [bin_path("theaterctl"), *args], input=data, capture_output=True, text=True, env=self.env,
            timeout=timeout,
        )

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def theaterd(short_tmp: Path) -> Iterator[DaemonProcess]:
    d = DaemonProcess(socket=short_tmp / "s.sock", home=short_tmp / "home")
    d.start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def daemon_factory(short_tmp: Path) -> Iterator[type[DaemonProcess]]:
    """For tests that need custom theaterd options or restarts: ``DaemonProcess(...)`` objects are stopped at the end."""
    made: list[DaemonProcess] = []

    def factory(*extra: str) -> DaemonProcess:
        d = DaemonProcess(socket=short_tmp / "s.sock", home=short_tmp / "home", extra_args=list(extra))
        made.append(d)
        return d

    try:
        yield factory  # type: ignore[misc]
    finally:
        for d in made:
            d.stop()
