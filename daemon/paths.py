"""Where the socket and the data live.  Shared by theaterd and theaterctl; pure.

Paths are plain strings here: importing pathlib costs a one-shot command ~7 ms.
"""

from __future__ import annotations

import os

SOCKET_ENV = "THEATER_SOCKET"
HOME_ENV = "THEATER_HOME"
DURABILITY_ENV = "THEATER_DURABILITY"


def default_socket(env: dict[str, str] | None = None) -> str:
    """``$THEATER_SOCKET``, else ``$XDG_RUNTIME_DIR/theater/theaterd.sock``, else ``/tmp/theater-$UID/...``."""
    env = dict(os.environ) if env is None else env
    if env.get(SOCKET_ENV):
        return env[SOCKET_ENV]
    runtime_dir = env.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        return os.path.join(runtime_dir, "theater", "theaterd.sock")
    return f"/tmp/theater-{os.getuid()}/theaterd.sock"


def default_home(env: dict[str, str] | None = None) -> str:
    """``$THEATER_HOME``, else ``$XDG_STATE_HOME/theater``, else ``~/.local/state/theater``."""
    env = dict(os.environ) if env is None else env
    if env.get(HOME_ENV):
        return env[HOME_ENV]
    state = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "theater")
