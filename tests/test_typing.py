"""The code stays mypy-clean (configuration in pyproject.toml): the daemon, the CLI, the host API,
and the tests, benchmarks and scripts that use them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_is_clean() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "daemon", "theaterctl", "actors/message_server.py", "actors/testing.py",
         "tests", "benchmarks", "scripts"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
