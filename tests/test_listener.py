"""daemon.listener: the socket's directory, the socket file, a peer's credentials."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
import trio

from daemon.listener import SocketDirError, open_unix_listener, peer_creds, prepare_socket_dir


def test_the_socket_directory_is_made_private(short_tmp: Path) -> None:
    directory = short_tmp / "run" / "theater"
    prepare_socket_dir(directory / "s.sock")
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700


def test_a_directory_others_can_enter_is_refused_with_the_fix(short_tmp: Path) -> None:
    directory = short_tmp / "open"
    directory.mkdir(mode=0o755)
    os.chmod(directory, 0o755)
    with pytest.raises(SocketDirError, match=r"mode 755 lets others in \(run: chmod 700 .*open\)"):
        prepare_socket_dir(directory / "s.sock")


def test_a_symlinked_directory_is_refused(short_tmp: Path) -> None:
    real = short_tmp / "real"
    real.mkdir(mode=0o700)
    (short_tmp / "link").symlink_to(real)
    with pytest.raises(SocketDirError, match="it is a symlink"):
        prepare_socket_dir(short_tmp / "link" / "s.sock")


async def test_the_socket_is_0600_and_a_stale_one_is_replaced(short_tmp: Path) -> None:
    path = short_tmp / "s.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.fspath(path))  # left behind by a daemon that died (nobody listens)
    stale.close()
    listener = await open_unix_listener(path)
    try:
        assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
        client = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await client.connect(os.fspath(path))
        with trio.fail_after(10):
            stream = await listener.accept()
        assert peer_creds(stream) == (os.getpid(), os.getuid())
        await stream.aclose()
        client.close()
    finally:
        await listener.aclose()


async def test_a_file_that_is_not_a_socket_is_left_alone(short_tmp: Path) -> None:
    path = short_tmp / "s.sock"
    path.write_text("mine")
    with pytest.raises(SocketDirError, match="exists and is not a socket"):
        await open_unix_listener(path)
    assert path.read_text() == "mine"


async def test_a_path_too_long_for_a_unix_socket_is_refused(short_tmp: Path) -> None:
    path = short_tmp / ("d" * 60) / ("s" * 60 + ".sock")
    with pytest.raises(SocketDirError, match=r"too long \(Unix sockets allow 107 bytes\)"):
        await open_unix_listener(path)
