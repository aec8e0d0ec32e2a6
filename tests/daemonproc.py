"""A real theaterd in a subprocess: the one launcher of the end-to-end tests and the benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path


def bin_path(name: str) -> str:
    """The console script installed next to this interpreter, else the bare name (found on PATH)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def command(name: str) -> list[str]:
    """The console script installed next to this interpreter, else ``python -m``."""
    path = bin_path(name)
    if path != name:
        return [path]
    return [sys.executable, "-m", {"theaterd": "daemon", "theaterctl": "theaterctl.cli"}[name]]


class TheaterdProcess:
    """``theaterd --socket SOCKET --home HOME ARGS...``, its output in ``log_path``.

    :meth:`start` returns once the daemon answers ``status``; :meth:`ctl` runs the real
    ``theaterctl`` against it; :meth:`stop` is SIGTERM (then SIGKILL after ``stop_timeout``).
    """

    stop_timeout = 30.0

    def __init__(self, socket: Path, home: Path, args: Sequence[str] = (), log_path: Path | None = None) -> None:
        self.socket = socket
        self.home = home
        self.args = list(args)
        self.log_path = log_path or home.parent / "theaterd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds: float | None = None  # from launch to the first status answer

    cwd: Path | None = None  # where theaterd runs (None: here)

    def base_env(self) -> dict[str, str]:
        return dict(os.environ)

    def launch_command(self) -> list[str]:
        return [*command("theaterd"), "--socket", str(self.socket), "--home", str(self.home), *self.args]

    @property
    def env(self) -> dict[str, str]:
        env = self.base_env()
        env.update(THEATER_SOCKET=str(self.socket), THEATER_HOME=str(self.home), NO_COLOR="1", COLUMNS="200")
        return env

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 20.0) -> None:
        from theaterctl.client import Client

        with open(self.log_path, "ab") as log:
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(self.launch_command(), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                         env=self.env, cwd=self.cwd)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"theaterd exited with {self.proc.returncode}: {self.log()}")
            if self.socket.exists():
                try:
                    with Client.connect(self.socket, timeout=5) as client:
                        client.status()
                    self.start_seconds = time.perf_counter() - t0
                    return
                except Exception:  # noqa: BLE001 - not ready yet
                    pass
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"theaterd did not start within {timeout} s: {self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def ctl(self, *args: str, input: str | bytes | None = None,
            timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        data = input.decode() if isinstance(input, bytes) else input
        return subprocess.run([*command("theaterctl"), *args], input=data, capture_output=True, text=True,
                              env=self.env, timeout=timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
