"""Confine this worker process as the daemon asked, before any actor code loads."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any


def confine(args: dict[str, Any]) -> str:
    """Apply the sandbox described by a ``configure`` call; return how it reads in ``inspect``."""
    memory_limit = args.get("memory_limit")
    try:
        from .. import sandbox  # type: ignore[attr-defined]
    except ImportError:  # pragma: no cover - until the Landlock module exists
        if isinstance(memory_limit, int) and memory_limit > 0:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
        return "none (no sandbox module)"
    policy = sandbox.Policy(
        read=tuple(Path(p) for p in args.get("read", [])),
        write=tuple(Path(p) for p in args.get("write", [])),
        network=bool(args.get("network", False)),
        memory_limit=memory_limit if isinstance(memory_limit, int) and memory_limit > 0 else None,
    )
    report = sandbox.apply(policy)
    return str(report)
