"""Shared pieces: the result record, a real theaterd in a short temp dir, the bare echo server, stats."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tests.daemonproc import TheaterdProcess, command

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
EXAMPLES = ROOT / "actors" / "examples"
COUNTER = EXAMPLES / "counter" / "manifest.toml"
SINK = BENCH / "actors" / "sink" / "manifest.toml"
DRIVER = BENCH / "actors" / "driver" / "manifest.toml"

# ---------------------------------------------------------------------------
# results


@dataclass
class Figure:
    """One line of the results table."""

    key: str  # "2a": benchmark number plus a letter
    bench: int
    name: str
    value: float | None
    unit: str
    baseline: float | None = None
    baseline_label: str = ""
    ratio: float | None = None  # value / baseline
    target: str = ""
    met: bool | None = None  # None: informational, no target
    notes: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    if unit == "s":
        if value < 1e-3:
            return f"{value * 1e6:.0f} us"
        if value < 1:
            return f"{value * 1e3:.2f} ms"
        return f"{value:.2f} s"
    if unit in ("/s", "events/s", "msgs/s", "spawns/s"):
        return f"{value:,.0f} {unit}"
    if unit == "KiB":
        return f"{value:.1f} KiB"
    if unit == "":
        return f"{value:g}"
    return f"{value:g} {unit}"


# ---------------------------------------------------------------------------
# stats


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile, ``q`` in [0, 100]."""
    if not values:
        raise ValueError("no values")
    data = sorted(values)
    if len(data) == 1:
        return data[0]
    pos = (len(data) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return percentile(values, 50)


# ---------------------------------------------------------------------------
# processes


def short_tmp(prefix: str = "thb-") -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o700)
    return path


def proc_status(pid: int) -> dict[str, str]:
    out: dict[str, str] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def rss_kib(pid: int) -> int:
    return int(proc_status(pid)["VmRSS"].split()[0])


def thread_count(pid: int) -> int:
    return int(proc_status(pid)["Threads"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by process ``pid`` (all threads)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (a worker's pid is its wrapper's: setpriv execs
    unshare, which forks the worker's interpreter)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for tid in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{tid}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return found


def _or_zero(fn: Any, pid: int) -> Any:
    try:
        return fn(pid)
    except (OSError, KeyError, ValueError, IndexError):  # gone meanwhile
        return 0


def tree_cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its descendants."""
    return sum(_or_zero(cpu_seconds, p) for p in process_tree(pid))


def tree_rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and its descendants."""
    return sum(_or_zero(rss_kib, p) for p in process_tree(pid))


def daemon_and_workers_rss_kib(daemon: Any, client: Any) -> int:
    """VmRSS of a daemon plus every worker it runs (their process trees), in KiB."""
    return rss_kib(daemon.pid) + sum(_or_zero(tree_rss_kib, int(w["pid"]))
                                     for w in client.status().get("workers", []) if w.get("pid"))


PYCACHE = Path(tempfile.gettempdir()) / f"theater-bench-pycache-{os.getuid()}"


def _bench_env() -> dict[str, str]:
    """The environment of every process the benchmarks start.

    Bytecode caching is forced on (into a private prefix, so nothing is
    written into the source tree): an installed theaterctl always has its
    ``.pyc`` files, and a ``PYTHONDONTWRITEBYTECODE=1`` in the caller's
    environment would otherwise make every one-shot run recompile its sources.
    """
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + path if path else "")
    env.update(NO_COLOR="1", COLUMNS="200")
    return env


class Daemon(TheaterdProcess):
    """A real theaterd in a short temp dir under /tmp; a context manager that stops it and cleans up."""

    stop_timeout = 60.0

    def __init__(self, *extra: str, durability: str = "normal", home: Path | None = None,
                 tmp: Path | None = None) -> None:
        self.tmp = tmp or short_tmp()
        self._own_tmp = tmp is None
        super().__init__(self.tmp / "s.sock", home or (self.tmp / "home"), ["--durability", durability, *extra],
                         log_path=self.tmp / "theaterd.log")

    def base_env(self) -> dict[str, str]:
        return _bench_env()

    def start(self, timeout: float = 120.0) -> None:
        super().start(timeout)

    def client(self, timeout: float | None = 10.0) -> Any:
        from theaterctl.client import Client

        return Client.connect(self.socket, timeout=timeout)

    def ctl(self, *args: str, input: str | bytes | None = None,
            timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
        return super().ctl(*args, input=input, timeout=timeout)

    def rss_kib(self) -> int:
        return rss_kib(self.pid)

    def threads(self) -> int:
        return thread_count(self.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        super().stop()
        if self._own_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> Daemon:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class EchoServer:
    """The bare trio echo server (``benchmarks/echo_server.py``) in a subprocess."""

    def __init__(self) -> None:
        self.tmp = short_tmp("thbe-")
        self.socket = self.tmp / "e.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def __enter__(self) -> EchoServer:
        from theaterctl.client import Client

        self.proc = subprocess.Popen([sys.executable, "-m", "benchmarks.echo_server", str(self.socket)],
                                     stdin=subprocess.DEVNULL, env=_bench_env(), cwd=ROOT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"echo server exited with {self.proc.returncode}")
            if self.socket.exists():
                try:
                    Client.connect(self.socket, timeout=5).close()
                    return self
                except Exception:  # noqa: BLE001 - not ready yet
                    pass
            time.sleep(0.01)
        self.__exit__()
        raise RuntimeError("echo server did not start")

    def client(self) -> Any:
        from theaterctl.client import Client

        return Client.connect(self.socket)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.tmp, ignore_errors=True)


def spawn(client: Any, manifest: Path, name: str | None = None) -> dict[str, str]:
    return client.spawn(str(manifest), name=name)


def wait_handled(client: Any, actor: str, payload: bytes = b"{}", timeout: float = 300.0) -> None:
    """A request queues behind every earlier message: when it returns, the mailbox was drained."""
    client.call("request", actor=actor, msg=payload, timeout=timeout)


def pipelined(client: Any, calls: list[tuple[str, dict[str, Any]]], window: int) -> list[Any]:
    """Run ``calls`` through :meth:`Client.pipeline` ``window`` at a time (the daemon drops a client that
    leaves more than a few thousand replies unread); raise if any of them failed."""
    out: list[Any] = []
    for i in range(0, len(calls), window):
        out.extend(client.pipeline(calls[i : i + window]))
    failed = [r for r in out if isinstance(r, Exception)]
    if failed:
        op = calls[0][0] if calls else "call"
        raise RuntimeError(f"{len(failed)} of {len(calls)} {op} calls failed, e.g. {failed[0]!r}")
    return out


def log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


@dataclass
class LoadResult:
    lat: list[float]
    errors: int
    error_samples: list[str]
    seconds: float  # first start to last end, over every worker
    daemon_cpu: float  # CPU seconds the daemon used meanwhile

    @property
    def ops(self) -> int:
        return len(self.lat)


def load(daemon: Daemon | EchoServer, op: str, targets: list[str], count: int, processes: int = 4,
         lead: float = 2.0) -> LoadResult:
    """``len(targets)`` concurrent clients (client i calls ``targets[i]``), ``count`` calls each, spread over
    ``processes`` worker processes (``benchmarks/loadgen.py``) so that the clients are not serialised by one
    GIL.  Every client waits for each answer before its next call."""
    import json

    processes = max(1, min(processes, len(targets)))
    start_at = time.time() + lead
    procs = []
    for i in range(processes):
        mine = targets[i::processes]
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "benchmarks.loadgen", str(daemon.socket), op, str(count), repr(start_at), *mine],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=_bench_env(), cwd=ROOT,
        ))
    while time.time() < start_at - 0.05:
        time.sleep(0.01)
    cpu0 = cpu_seconds(daemon.pid)
    outs = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=900)
        if p.returncode != 0:
            raise RuntimeError(f"load worker failed ({p.returncode}): {stderr.decode(errors='replace')[-1000:]}")
        outs.append(json.loads(stdout))
    cpu = cpu_seconds(daemon.pid) - cpu0
    errors = sum(o["errors"] for o in outs)
    samples = sorted({s for o in outs for s in o["error_samples"]})[:5]
    seconds = max(o["end"] for o in outs) - min(o["start"] for o in outs)
    return LoadResult([x for o in outs for x in o["lat"]], errors, samples, seconds, cpu)
