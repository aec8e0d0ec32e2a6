"""Shared fixtures: short socket directories and a real theaterd process."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from tests.daemonproc import TheaterdProcess, bin_path

__all__ = ["ROOT", "EXAMPLES", "DaemonFactory", "DaemonProcess", "bin_path"]

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


class DaemonProcess(TheaterdProcess):
    """A theaterd running in a subprocess, plus a way to run the real theaterctl against it."""

    def __init__(self, socket: Path, home: Path, extra_args: list[str] | None = None) -> None:
        super().__init__(socket, home, extra_args or [])


class DaemonFactory(Protocol):
    """The ``daemon_factory`` fixture: a :class:`DaemonProcess` with extra theaterd options."""

    def __call__(self, *extra: str) -> DaemonProcess: ...


@pytest.fixture
def theaterd(short_tmp: Path) -> Iterator[DaemonProcess]:
    d = DaemonProcess(socket=short_tmp / "s.sock", home=short_tmp / "home")
    d.start()
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture
def daemon_factory(short_tmp: Path) -> Iterator[DaemonFactory]:
    """For tests that need custom theaterd options or restarts: ``DaemonProcess(...)`` objects are stopped at the end."""
    made: list[DaemonProcess] = []

    def factory(*extra: str) -> DaemonProcess:
        d = DaemonProcess(socket=short_tmp / "s.sock", home=short_tmp / "home", extra_args=list(extra))
        made.append(d)
        return d

    try:
        yield factory
    finally:
        for d in made:
            d.stop()
