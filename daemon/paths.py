"""Where the socket and the data live.  Shared by theaterd and theaterctl; pure."""

from __future__ import annotations

import os
from pathlib import Path

SOCKET_ENV = "THEATER_SOCKET"
HOME_ENV = "THEATER_HOME"
DURABILITY_ENV = "THEATER_DURABILITY"


def default_socket(env: dict[str, str] | None = None) -> Path:
    """``$THEATER_SOCKET``, else ``$XDG_RUNTIME_DIR/theater/theaterd.sock``, else ``/tmp/theater-$UID/...``."""
    env = dict(os.environ) if env is None else env
    if env.get(SOCKET_ENV):
        return Path(env[SOCKET_ENV])
    runtime_dir = env.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        return Path(runtime_dir) / "theater" / "theaterd.sock"
    return Path(f"/tmp/theater-{os.getuid()}") / "theaterd.sock"


def default_home(env: dict[str, str] | None = None) -> Path:
    """``$THEATER_HOME``, else ``$XDG_STATE_HOME/theater``, else ``~/.local/state/theater``."""
    env = dict(os.environ) if env is None else env
    if env.get(HOME_ENV):
        return Path(env[HOME_ENV])
    state = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(state) / "theater"
