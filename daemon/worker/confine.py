"""Confine this worker process as the daemon asked, before any actor code loads."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .. import sandbox


def confine(args: dict[str, Any]) -> str:
    """Apply the sandbox a ``configure`` call describes; return how ``inspect`` shows it.

    Must run on the worker's only thread, before any handler thread exists."""
    memory_limit = args.get("memory_limit")
    write = [Path(p) for p in args.get("write", [])]
    scratch, extra_write = write[-1], tuple(write[:-1])  # the daemon sends the scratch directory last
    policy = sandbox.Policy.for_worker(
        scratch,
        read=[Path(p) for p in args.get("read", [])],
        network=bool(args.get("network", False)),
        memory_limit=memory_limit if isinstance(memory_limit, int) and memory_limit > 0 else None,
    )
    if extra_write:
        policy = dataclasses.replace(policy, write=policy.write + extra_write)
    return str(sandbox.apply(policy))
