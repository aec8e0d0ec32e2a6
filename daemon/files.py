"""Files theaterd reads for actors and keeps for itself: bounded reads, private modes.

Pure and blocking (no trio): callers on the event loop run these on a thread.

* :func:`read_regular_file` reads a manifest or a component: regular files
  only (a FIFO or a device is refused without blocking on it), and at most a
  given number of bytes, so a path given by a client can neither stall nor
  bloat the daemon.
* :func:`check_private_dir` refuses a directory that another user owns or that
  group or others can enter; :func:`private_file` creates a file mode 0600 (and
  narrows an existing one), so the store, its WAL, the lock and the log are
  readable by their owner only.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .errors import BadInput

MANIFEST_MAX_BYTES = 1 << 20  # 1 MiB
COMPONENT_MAX_BYTES = 16 << 20  # 16 MiB, the default of ``theaterd --max-component-bytes``
WASM_MAX_BYTES = 64 << 20  # a Python actor compiled with componentize-py is about 18 MiB


@dataclass(slots=True)
class FileLimits:
    """Size caps for files read on behalf of clients; theaterd sets ``component`` from its options at start-up."""

    manifest: int = MANIFEST_MAX_BYTES
    component: int = COMPONENT_MAX_BYTES
    wasm: int = WASM_MAX_BYTES

    def for_component(self, path: str | os.PathLike[str]) -> int:
        """The cap for a component file: WebAssembly components (``.wasm``) have their own."""
        return self.wasm if os.fspath(path).endswith(".wasm") else self.component


LIMITS = FileLimits()


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def size_text(n: int) -> str:
    """``1 MiB``, ``16 MiB``, ``1500 bytes``: a cap as people read it."""
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    if n >= 1 << 10 and n % (1 << 10) == 0:
        return f"{n >> 10} KiB"
    return f"{n} bytes"


def read_regular_file(path: str | os.PathLike[str], limit: int, what: str) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them.

    Raises :class:`BadInput` naming ``what`` (e.g. ``"manifest"``) when the file is
    missing, unreadable, not a regular file, or larger than ``limit``.  Opening never
    blocks (``O_NONBLOCK``), so a FIFO is refused rather than waited on.
    """
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise BadInput(f"{what} {name} does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a socket, or a FIFO/device without a reader
            raise BadInput(f"{what} {name} is not a regular file") from None
        raise BadInput(f"cannot read {what} {name}: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BadInput(f"{what} {name} is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise BadInput(f"{what} {name} is too large: {info.st_size} bytes, the limit is {size_text(limit)}")
        chunks: list[bytes] = []
        total = 0
        while True:  # the file may grow while we read it: never take more than limit + 1
            chunk = os.read(fd, min(limit + 1 - total, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise BadInput(f"{what} {name} is too large: over {size_text(limit)}")
        return b"".join(chunks)
    except OSError as exc:
        raise BadInput(f"cannot read {what} {name}: {exc.strerror}") from None
    finally:
        os.close(fd)


def check_regular_file(path: str | os.PathLike[str], limit: int, what: str) -> None:
    """Refuse, as :func:`read_regular_file` would, without reading the file."""
    name = os.fspath(path)
    try:
        info = os.stat(name)
    except FileNotFoundError:
        raise BadInput(f"{what} {name} does not exist") from None
    except OSError as exc:
        raise BadInput(f"cannot read {what} {name}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise BadInput(f"{what} {name} is {_kind(info.st_mode)}, not a regular file")
    if info.st_size > limit:
        raise BadInput(f"{what} {name} is too large: {info.st_size} bytes, the limit is {size_text(limit)}")


class UnsafeDirError(Exception):
    """A directory theaterd would keep private data in is not private."""


def ensure_private_dir(path: Path, what: str, hint: str) -> None:
    """Create ``path`` mode 0700 if it is missing, then :func:`check_private_dir` it;
    raises :class:`UnsafeDirError` (one line, saying what to do) either way."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise UnsafeDirError(f"cannot create the {what} {path}: {exc.strerror}") from None
    check_private_dir(path, what, hint)


def check_private_dir(directory: str | os.PathLike[str], what: str, hint: str, *,
                      follow_symlinks: bool = True) -> None:
    """Refuse ``directory`` unless it is a directory owned by us with no group/other access.

    ``what`` names it in the message (``"data directory"``); ``hint`` says what to do
    about another owner or a symlink (e.g. ``"use a directory of your own with --home"``).
    Without ``follow_symlinks``, a symlink is refused too.
    """
    name = os.fspath(directory)
    info = os.stat(name) if follow_symlinks else os.lstat(name)
    if stat.S_ISLNK(info.st_mode):
        raise UnsafeDirError(f"refusing {what} {name}: it is a symlink ({hint})")
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeDirError(f"refusing {what} {name}: it is not a directory")
    if info.st_uid != os.getuid():
        raise UnsafeDirError(f"refusing {what} {name}: owned by uid {info.st_uid}, not you ({hint})")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise UnsafeDirError(f"refusing {what} {name}: mode {mode:o} lets others in (run: chmod 700 {name})")


def private_file(path: str | os.PathLike[str], flags: int = os.O_RDWR) -> int:
    """Open (creating it mode 0600) the file ``path``; an existing file loses any group/other bits.

    Returns the descriptor; symlinks are not followed.
    """
    fd = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if mode & 0o077:
            os.fchmod(fd, mode & 0o700)
    except BaseException:
        os.close(fd)
        raise
    return fd
