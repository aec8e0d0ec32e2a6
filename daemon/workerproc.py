"""Starting a worker's process, and learning how it ended.

A worker is ``python -s -m daemon.worker FD`` from a fresh interpreter in a
session of its own, with a minimal environment and its scratch directory as
HOME, TMPDIR and working directory, under ``setpriv`` and ``unshare`` where
the system allows them (see :func:`wrapper`).  It is started from the event
loop's own thread (see :func:`start`).
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import trio

#: the size of a worker's scratch tmpfs (its HOME, TMPDIR and working directory), where the
#: system gives workers a mount namespace; it also holds the .wasm files the worker loads
SCRATCH_BYTES = 256 << 20
_PROJECT_ROOT = str(Path(__file__).resolve().parent.parent)


def start(link_fd: int, scratch: str) -> subprocess.Popen[bytes]:
    """Start a worker on ``link_fd`` (its end of the socketpair), in ``scratch``.

    Call it from the event loop's own thread, not a helper thread: the parent-death signal
    (setpriv --pdeathsig) fires when the *thread* that forked the worker ends, and the loop's
    thread lasts exactly as long as the daemon."""
    env = {
        "PATH": os.environ.get("PATH", os.defpath),
        "PYTHONPATH": _PROJECT_ROOT,
        "MALLOC_ARENA_MAX": "2",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "HOME": scratch,
        "TMPDIR": scratch,
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    return subprocess.Popen(
        [*wrapper(), sys.executable, "-s", "-m", "daemon.worker", str(link_fd)],
        pass_fds=(link_fd,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, cwd=scratch, env=env, start_new_session=True,
    )


async def exited(process: subprocess.Popen[bytes]) -> int:
    """Wait (without blocking the loop) for ``process`` to exit and reap it; its status."""
    if process.returncode is None:
        pidfd = os.pidfd_open(process.pid)
        try:
            await trio.lowlevel.wait_readable(pidfd)
        finally:
            os.close(pidfd)
    return process.wait()


@functools.lru_cache(maxsize=1)
def wrapper() -> tuple[str, ...]:
    """What a worker's command runs under, where the system allows it:

    * ``setpriv --pdeathsig KILL``: the worker's process goes when the daemon dies, even
      killed (-9), even while a handler holds the worker's GIL;
    * ``unshare --pid --mount --fork --kill-child``: the worker is PID 1 of a PID namespace
      of its own, so that every process it starts (even one that called setsid or forked
      twice) ends with it; and it has a mount namespace of its own, where it mounts a
      size-capped tmpfs over its scratch directory (:data:`SCRATCH_BYTES`).
    Each is used only if it works here (unshare needs CAP_SYS_ADMIN: root); without a mount
    namespace, the PID namespace alone; without either, neither."""
    prefix: list[str] = []
    setpriv, unshare = shutil.which("setpriv"), shutil.which("unshare")
    if setpriv and _works([setpriv, "--pdeathsig", "KILL", "--", "true"]):
        prefix += [setpriv, "--pdeathsig", "KILL", "--"]
    if unshare:
        for flags in (["--pid", "--mount", "--propagation", "private"], ["--pid"]):
            command = [unshare, *flags, "--fork", "--kill-child", "--"]
            if _works([*command, "true"]):
                prefix += command
                break
    return tuple(prefix)


def private_mounts() -> bool:
    """Do workers get a mount namespace of their own (so they can mount their scratch tmpfs)?"""
    return "--mount" in wrapper()


def _works(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def exit_reason(code: int | None) -> str:
    if code is None:
        return "worker exited"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"worker was killed by {name}"
    return f"worker exited with code {code}"


def remove_tree(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)
