"""Compare two versions of the daemon, interleaved: ``python -m benchmarks.ab [--base REV] [--mode M] [--runs N]``.

On this noisy machine a figure moves by 10-30 % between runs, so a change of
a few percent is only visible side by side.  This checks the ``--base``
revision (default ``HEAD``) out into a temporary git worktree and runs a
daemon from it and one from the working tree, alternately (A B B A A B ...),
each for one measurement:

* ``request``: p50 of sequential requests to the ``sink`` bench actor on one
  connection (figure 2's path), and the daemon's CPU per request;
* ``send``: pipelined acknowledged sends to ``sink`` (figure 3's path) per
  second, and the daemon's CPU per send.

It prints the median of the runs of each side and every run.  The client is
the working tree's; only the daemon changes.  Exit status 0, or 2 for bad
options or a base that git cannot check out.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.daemonproc import TheaterdProcess

from .common import ROOT, SINK, _bench_env, cpu_seconds, pipelined, short_tmp

MSG = b'{"type":"ping"}'
WINDOW = 500


class _TreeDaemon(TheaterdProcess):
    """theaterd run from the source tree ``tree`` (``python -m daemon`` with that tree first on the path)."""

    def __init__(self, tree: Path, tmp: Path) -> None:
        super().__init__(tmp / "s.sock", tmp / "home", log_path=tmp / "theaterd.log")
        self.tree = tree
        self.cwd = tree

    def base_env(self) -> dict[str, str]:
        env = _bench_env()
        env["PYTHONPATH"] = str(self.tree)
        return env

    def launch_command(self) -> list[str]:
        return [sys.executable, "-m", "daemon", "--socket", str(self.socket), "--home", str(self.home)]


def measure(tree: Path, mode: str, n: int) -> tuple[float, float]:
    """One run: (p50 seconds | sends per second, daemon CPU seconds per operation)."""
    from theaterctl.client import Client

    tmp = short_tmp("thab-")
    daemon = _TreeDaemon(tree, tmp)
    try:
        daemon.start()
        with Client.connect(daemon.socket, timeout=60) as client:
            client.spawn(str(SINK))
            if mode == "request":
                for _ in range(min(n, 300)):
                    client.call("request", actor="sink", msg=MSG)
                cpu0 = cpu_seconds(daemon.pid)
                lat = []
                for _ in range(n):
                    t = time.perf_counter()
                    client.call("request", actor="sink", msg=MSG)
                    lat.append(time.perf_counter() - t)
                value = statistics.median(lat)
            else:
                calls = [("send", {"actor": "sink", "msg": MSG})] * min(n, WINDOW)
                pipelined(client, calls, WINDOW)
                client.call("request", actor="sink", msg=b"{}")
                cpu0 = cpu_seconds(daemon.pid)
                t = time.perf_counter()
                done = 0
                while done < n:
                    pipelined(client, calls, WINDOW)
                    done += len(calls)
                client.call("request", actor="sink", msg=b"{}")  # every send handled
                value = done / (time.perf_counter() - t)
            per_op = (cpu_seconds(daemon.pid) - cpu0) / n
        return value, per_op
    finally:
        daemon.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab", description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default="HEAD", help="git revision to compare the working tree with (HEAD)")
    parser.add_argument("--mode", choices=("request", "send"), default="request")
    parser.add_argument("--runs", type=int, default=6, help="runs of each side (6)")
    parser.add_argument("-n", type=int, default=3000, help="requests or sends per run (3000)")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.n < 1:
        parser.error("--runs and -n must be at least 1")
    base_dir = Path(tempfile.mkdtemp(prefix="thab-base-", dir="/tmp"))
    add = subprocess.run(["git", "worktree", "add", "--detach", str(base_dir / "tree"), args.base], cwd=ROOT,
                         capture_output=True, text=True)
    if add.returncode != 0:
        print(f"error: cannot check out {args.base!r}: {add.stderr.strip()}", file=sys.stderr)
        shutil.rmtree(base_dir, ignore_errors=True)
        return 2
    trees = {f"base ({args.base})": base_dir / "tree", "working tree": ROOT}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    try:
        for i in range(args.runs):
            order = list(trees.items()) if i % 2 == 0 else list(trees.items())[::-1]
            for name, tree in order:
                results[name].append(measure(tree, args.mode, args.n))
                print(f"  .. run {i + 1}/{args.runs}: {name} done", file=sys.stderr, flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(base_dir / "tree")], cwd=ROOT,
                       capture_output=True)
        shutil.rmtree(base_dir, ignore_errors=True)
    what = "request p50" if args.mode == "request" else "acknowledged sends/s"
    for name, runs in results.items():
        values = [v for v, _ in runs]
        cpu = statistics.median(c for _, c in runs) * 1e6
        if args.mode == "request":
            shown = f"{statistics.median(values) * 1e6:,.0f} us (runs {', '.join(f'{v * 1e6:,.0f}' for v in values)})"
        else:
            shown = f"{statistics.median(values):,.0f}/s (runs {', '.join(f'{v:,.0f}' for v in values)})"
        print(f"{name:24s} {what} {shown}; daemon CPU {cpu:,.0f} us per operation")
    return 0


if __name__ == "__main__":
    sys.exit(main())
