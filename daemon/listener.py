"""The daemon's Unix socket: its directory made safe, the listener, a peer's credentials.

The socket's directory is created 0700 (or refused when it is not private), the
socket itself is 0600, and a stale socket left by a daemon that died is
replaced (the lock file proves no other daemon owns it).  Under systemd socket
activation the listener is inherited instead (:func:`listener_from_fd`).
"""

from __future__ import annotations

import os
import socket as _socket
import stat
import struct
from pathlib import Path

import trio

from .files import UnsafeDirError, check_private_dir


class SocketDirError(UnsafeDirError):
    """The socket's directory is unsafe or unusable."""



def prepare_socket_dir(path: Path) -> None:
    """Create the socket's directory 0700, or refuse an unsafe one."""
    directory = path.parent
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise SocketDirError(f"cannot create {directory}: {exc.strerror}") from None
    try:
        check_private_dir(directory, "socket directory", "use a directory of your own with --socket",
                          follow_symlinks=False)
    except UnsafeDirError as exc:
        raise SocketDirError(str(exc)) from None


async def open_unix_listener(path: Path, backlog: int = 512) -> trio.SocketListener:
    prepare_socket_dir(path)
    if len(os.fsencode(path)) >= 108:
        raise SocketDirError(f"socket path {path} is too long (Unix sockets allow 107 bytes)")
    sock = trio.socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        if path.exists() or path.is_symlink():
            if not stat.S_ISSOCK(os.lstat(path).st_mode):
                raise SocketDirError(f"{path} exists and is not a socket")
            path.unlink()  # stale: the lock file proved no other daemon owns it
        old = os.umask(0o177)
        try:
            await sock.bind(os.fspath(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(backlog)
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


def listener_from_fd(fd: int) -> trio.SocketListener:
    """Wrap a listening socket inherited through systemd socket activation."""
    sock = trio.socket.fromfd(fd, _socket.AF_UNIX, _socket.SOCK_STREAM)
    os.close(fd)
    return trio.SocketListener(sock)


def peer_creds(stream: trio.SocketStream) -> tuple[int, int] | None:
    """The peer's (pid, uid), from ``SO_PEERCRED``."""
    try:
        creds = stream.socket.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid, uid, _gid = struct.unpack("3i", creds)
    return int(pid), int(uid)


__all__ = ["SocketDirError", "listener_from_fd", "open_unix_listener", "peer_creds", "prepare_socket_dir"]
