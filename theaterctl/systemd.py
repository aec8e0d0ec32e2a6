"""The systemd user units for theaterd, with the path of the theaterd to run filled in.

``contrib/systemd/`` holds them rendered for ``%h/.local/bin/theaterd`` (pipx,
``pip install --user``); ``theaterctl daemon install-unit`` writes them for the
theaterd installed next to the running theaterctl (a venv, say).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_EXEC = "%h/.local/bin/theaterd"
SOCKET = "%t/theater/theaterd.sock"

SOCKET_UNIT = """\
# systemd user socket unit for theaterd (socket activation).
# Install: theaterctl daemon install-unit (or see docs/systemd.md), then:
#     systemctl --user enable --now theaterd.socket
#
# systemd creates and owns the socket at $XDG_RUNTIME_DIR/theater/theaterd.sock,
# theaterctl's default path, and starts theaterd.service on the first
# connection, handing the listening socket over as fd 3 (LISTEN_FDS=1).

[Unit]
Description=theater actor runtime (theaterd) socket

[Socket]
ListenStream={socket}
# 0600 socket in a 0700 directory: only you can talk to your daemon.
SocketMode=0600
DirectoryMode=0700
RemoveOnStop=yes
Service=theaterd.service

[Install]
WantedBy=sockets.target
"""

SERVICE_UNIT = """\
# systemd user service for theaterd, the theater actor runtime.
# Install: theaterctl daemon install-unit (or see docs/systemd.md); normally
# started through theaterd.socket.
#
# {exec_note}
#
# Data (store, lock) lives in $THEATER_HOME, default ~/.local/state/theater,
# which is this unit's StateDirectory= (writable despite ProtectSystem=strict).
# To move it, or to let actor code write files elsewhere, add a drop-in with
# `systemctl --user edit theaterd.service`:
#
#     [Service]
#     Environment=THEATER_HOME=%h/theater-data
#     ReadWritePaths=%h/theater-data

[Unit]
Description=theater actor runtime (theaterd)
Requires=theaterd.socket
After=theaterd.socket

[Service]
# theaterd sends READY=1 to $NOTIFY_SOCKET once it accepts connections,
# and STOPPING=1 when it begins a graceful shutdown.
Type=notify
NotifyAccess=main
ExecStart={exec_start} --socket {socket}
# SIGTERM -> graceful shutdown: actors stop, the store is flushed, exit 0.
KillSignal=SIGTERM
KillMode=mixed
TimeoutStopSec=45
Restart=on-failure
RestartSec=2
UMask=0077
Environment=PYTHONUNBUFFERED=1
# Hardening: nothing gains privileges; the file system is read-only except the
# state directory (~/.local/state/theater); a private /tmp.  In a user unit these
# need unprivileged user namespaces; where the kernel has them off, clear them in
# a drop-in (NoNewPrivileges=no, ProtectSystem=no, PrivateTmp=no).
NoNewPrivileges=yes
ProtectSystem=strict
StateDirectory=theater
StateDirectoryMode=0700
PrivateTmp=yes

[Install]
# `systemctl --user enable theaterd.service` also enables the socket; with
# only the socket enabled, theaterd starts on the first theaterctl call.
Also=theaterd.socket
WantedBy=default.target
"""

DEFAULT_NOTE = ("ExecStart assumes theaterd is installed at ~/.local/bin/theaterd (pipx, or\n"
                "# `pip install --user`).  In a venv? Run `theaterctl daemon install-unit` from it,\n"
                "# which writes these units with its own theaterd's path.")


def theaterd_path() -> str:
    """The theaterd installed next to this Python (a venv's bin/), else the one on PATH."""
    candidate = Path(sys.executable).parent / "theaterd"
    if candidate.exists():
        return str(candidate.absolute())
    import shutil

    found = shutil.which("theaterd")
    return os.path.abspath(found) if found else f"{sys.executable} -m daemon"


def render(exec_start: str = DEFAULT_EXEC) -> dict[str, str]:
    """File name -> unit text."""
    note = DEFAULT_NOTE if exec_start == DEFAULT_EXEC else f"Written by `theaterctl daemon install-unit` for {exec_start}."
    return {
        "theaterd.socket": SOCKET_UNIT.format(socket=SOCKET),
        "theaterd.service": SERVICE_UNIT.format(exec_start=exec_start, socket=SOCKET, exec_note=note),
    }


def user_unit_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "systemd" / "user"
