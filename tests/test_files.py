"""daemon/files.py: bounded reads of regular files, private directories and files."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from daemon.errors import BadInput, ErrorCode
from daemon.files import UnsafeDirError, check_private_dir, private_file, read_regular_file, size_text


def test_reads_a_regular_file_within_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_regular_file(path, 100, "component") == b"x" * 100


def test_refuses_a_file_over_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 101)
    with pytest.raises(BadInput, match=rf"^component {path} is too large: 101 bytes, the limit is 100 bytes$") as info:
        read_regular_file(path, 100, "component")
    assert info.value.code == ErrorCode.BAD_INPUT


@pytest.mark.parametrize(("make", "kind"), [(os.mkfifo, "a FIFO"), (os.mkdir, "a directory")])
def test_refuses_what_is_not_a_regular_file(tmp_path: Path, make: Callable[[Path], None], kind: str) -> None:
    path = tmp_path / "f"
    make(path)
    with pytest.raises(BadInput, match=rf"^manifest {path} is {kind}, not a regular file$"):
        read_regular_file(path, 100, "manifest")


def test_refuses_a_socket(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        with pytest.raises(BadInput, match=rf"^manifest {path} is not a regular file$"):
            read_regular_file(path, 100, "manifest")


def test_missing_and_unreadable(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match=r"does not exist$"):
        read_regular_file(tmp_path / "nope", 100, "manifest")


def test_private_file_is_created_0600_and_narrows_an_existing_one(tmp_path: Path) -> None:
    os.close(private_file(tmp_path / "new"))
    assert os.stat(tmp_path / "new").st_mode & 0o777 == 0o600
    (tmp_path / "old").write_text("x")
    os.chmod(tmp_path / "old", 0o664)
    os.close(private_file(tmp_path / "old", os.O_RDONLY))
    assert os.stat(tmp_path / "old").st_mode & 0o777 == 0o600
    assert (tmp_path / "old").read_text() == "x"


def test_private_dir_check(tmp_path: Path) -> None:
    d = tmp_path / "d"
    d.mkdir(mode=0o700)
    check_private_dir(d, "data directory", "hint")
    os.chmod(d, 0o750)
    with pytest.raises(UnsafeDirError, match=rf"^refusing data directory {d}: mode 750 lets others in \(run: chmod 700 {d}\)$"):
        check_private_dir(d, "data directory", "hint")
    os.chmod(d, 0o700)
    link = tmp_path / "link"
    link.symlink_to(d)
    check_private_dir(link, "data directory", "hint")  # the home may be a symlink to a private directory
    with pytest.raises(UnsafeDirError, match=r"it is a symlink \(hint\)$"):
        check_private_dir(link, "socket directory", "hint", follow_symlinks=False)


def test_size_text() -> None:
    assert [size_text(n) for n in (1 << 20, 16 << 20, 2048, 2000)] == ["1 MiB", "16 MiB", "2 KiB", "2000 bytes"]
