"""Confine this worker process as the daemon asked, before any actor code loads."""

from __future__ import annotations

import ctypes
import dataclasses
import os
from pathlib import Path
from typing import Any

from .. import sandbox

_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8


def confine(args: dict[str, Any]) -> str:
    """Apply the sandbox a ``configure`` call describes; return how ``inspect`` shows it.

    With ``scratch_bytes`` (the daemon started this worker in a mount namespace of its
    own), the scratch directory first becomes a tmpfs of that size, so what actor code
    writes there is capped and never reaches the daemon's disk.  Must run on the worker's
    only thread, before any handler thread exists."""
    memory_limit = args.get("memory_limit")
    write = [Path(p) for p in args.get("write", [])]
    scratch, extra_write = write[-1], tuple(write[:-1])  # the daemon sends the scratch directory last
    scratch_bytes = args.get("scratch_bytes")
    scratch_note = ""
    if isinstance(scratch_bytes, int) and scratch_bytes > 0:
        failure = mount_scratch(scratch, scratch_bytes)
        scratch_note = f", scratch {sandbox.describe_size(scratch_bytes)}" if failure is None else \
            f", scratch not capped ({failure})"
    policy = sandbox.Policy.for_worker(
        scratch,
        read=[Path(p) for p in args.get("read", [])],
        network=bool(args.get("network", False)),
        memory_limit=memory_limit if isinstance(memory_limit, int) and memory_limit > 0 else None,
    )
    if extra_write:
        policy = dataclasses.replace(policy, write=policy.write + extra_write)
    return str(sandbox.apply(policy)) + scratch_note


def mount_scratch(scratch: Path, size: int) -> str | None:
    """Mount a tmpfs of ``size`` bytes (and one inode per 4 KiB of it) over ``scratch`` and
    move into it (the working directory would otherwise stay the directory underneath).
    Only ever called in the worker's own mount namespace, whose mounts ``unshare
    --propagation private`` made private: nothing is seen outside, and the tmpfs goes with
    the worker.  Its pages are memory (shared memory, not counted by RLIMIT_AS).  Returns
    None, or why it failed."""
    libc = ctypes.CDLL(None, use_errno=True)
    options = f"size={size},nr_inodes={max(1024, size // 4096)},mode=0700".encode()
    if libc.mount(b"theater-scratch", os.fsencode(scratch), b"tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
                  options) != 0:
        return os.strerror(ctypes.get_errno())
    os.chdir(scratch)
    return None
