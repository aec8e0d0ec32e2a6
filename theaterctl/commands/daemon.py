from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from daemon.errors import BadInput, ErrorCode, InternalError, TheaterError, Timeout, Unavailable
from daemon.files import UnsafeDirError, ensure_private_dir, private_file

from ..app import App, SuggestingGroup, json_option
from ..client import Client
from ..output import emit_json, emit_text, human_duration, is_tty, key_values, note

START_TIMEOUT = 20.0
STOP_TIMEOUT = 40.0


@click.group("daemon", cls=SuggestingGroup, short_help="Start, stop, restart and check theaterd.")
def command() -> None:
    """Start, stop, restart and check theaterd; install its systemd units.

    \b
    Examples:
      theaterctl daemon start
      theaterctl daemon status
    """


def _try_connect(app: App) -> Client | None:
    try:
        return Client.connect(app.socket, timeout=5)
    except Unavailable:
        return None


@command.command("start", short_help="Start theaterd in the background.")
@click.option("--durability", type=click.Choice(["normal", "full"]), help="Passed to theaterd.")
@click.option("--debug", is_flag=True, help="Run theaterd with --debug.")
@json_option
@click.pass_obj
def start(app: App, durability: str | None, debug: bool) -> None:
    """Start theaterd in the background; returns once it accepts connections.

    If theaterd cannot start, exits with theaterd's own status and its reason:
    2 for a bad option or setting, 1 for anything else (a socket directory
    with unsafe permissions, a store it cannot open, another daemon on the
    same data directory).

    \b
    Examples:
      theaterctl daemon start
      theaterctl daemon start --durability full
    """
    existing = _try_connect(app)
    if existing is not None:
        pid = existing.welcome.pid
        existing.close()
        if app.json:
            emit_json({"running": True, "started": False, "pid": pid, "socket": str(app.socket)})
        else:
            note(f"theaterd is already running (pid {pid}, socket {app.socket})")
        return
    pid, log_path = _launch(app, durability, debug)
    if app.json:
        emit_json({"running": True, "started": True, "pid": pid, "socket": str(app.socket), "log": str(log_path)})
    else:
        note(f"theaterd started (pid {pid}, socket {app.socket}, log {log_path})")


def _launch(app: App, durability: str | None, debug: bool) -> tuple[int, Path]:
    """Start theaterd and wait until it serves; its pid and log file."""
    log_path = _private_log(app.home)
    cmd = [sys.executable, "-m", "daemon", "--socket", str(app.socket), "--home", str(app.home)]
    if durability:
        cmd += ["--durability", durability]
    if debug:
        cmd.append("--debug")
    with os.fdopen(private_file(log_path, os.O_WRONLY | os.O_APPEND), "ab") as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                close_fds=True)
    client = _wait_ready(app, proc, log_path)
    pid = client.welcome.pid
    client.close()
    return pid, log_path


def _private_log(home: Path) -> Path:
    """The log's path in ``home``, once the home is known to be private (theaterd would refuse it too)."""
    try:
        ensure_private_dir(home, "data directory", "use a directory of your own with --home")
    except UnsafeDirError as exc:
        raise BadInput(str(exc)) from None
    return home / "theaterd.log"


def _wait_ready(app: App, proc: subprocess.Popen[bytes], log_path: Path) -> Client:
    deadline = time.monotonic() + START_TIMEOUT
    started = time.monotonic()
    spinner: Any = None
    try:
        while time.monotonic() < deadline:
            client = _try_connect(app)
            if client is not None:
                return client
            code = proc.poll()
            if code is not None:
                raise _start_failed(code, log_path)
            if spinner is None and is_tty(sys.stderr) and time.monotonic() - started > 0.5:
                from rich.console import Console

                spinner = Console(stderr=True, markup=False, emoji=False, highlight=False).status(
                    "waiting for theaterd to accept connections...")
                spinner.start()
            time.sleep(0.02)
    finally:
        if spinner is not None:
            spinner.stop()
    raise Timeout(f"theaterd did not accept connections within {START_TIMEOUT:g} s (see {log_path})")


def _start_failed(code: int, log_path: Path) -> TheaterError:
    """theaterd's own status says what kind of failure: 2 bad options, 1 could not start."""
    reason = _last_error(log_path)
    if code == 2:
        return BadInput(f"theaterd refused its options: {reason}")
    if code == 1:
        return TheaterError(f"theaterd could not start: {reason}", ErrorCode.ACTOR_FAILED)
    return InternalError(f"theaterd exited with status {code}: {reason}")


def _last_error(log_path: Path) -> str:
    try:
        lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return f"see {log_path}"
    for line in reversed(lines[-20:]):
        if "error" in line.lower():
            return line.strip()
    return lines[-1].strip() if lines else f"see {log_path}"


@command.command("stop", short_help="Stop theaterd gracefully.")
@json_option
@click.pass_obj
def stop(app: App) -> None:
    """Stop theaterd gracefully (channels closed, actors stopped, chains flushed).

    \b
    Examples:
      theaterctl daemon stop
      theaterctl --socket /tmp/t/theaterd.sock daemon stop
    """
    pid = _stop(app)
    if pid is None:
        if app.json:
            emit_json({"running": False, "stopped": False})
        else:
            note("theaterd is not running")
        return
    if app.json:
        emit_json({"running": False, "stopped": True, "pid": pid})
    else:
        note(f"theaterd stopped (pid {pid})")


def _stop(app: App) -> int | None:
    """Stop the daemon if it runs and wait until it is gone; its pid, or None if none ran."""
    client = _try_connect(app)
    if client is None:
        return None
    pid = client.welcome.pid
    try:
        client.call("shutdown")
    except TheaterError as exc:
        if exc.code != ErrorCode.UNAVAILABLE:
            raise
    client.wait_closed(STOP_TIMEOUT)
    client.close()
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.02)
    if _alive(pid):
        raise Timeout(f"theaterd (pid {pid}) is still running after {STOP_TIMEOUT:g} s")
    return pid


@command.command("restart", short_help="Stop theaterd, then start it again.")
@click.option("--durability", type=click.Choice(["normal", "full"]),
              help="Passed to theaterd (default: what the running daemon has).")
@click.option("--debug", is_flag=True, help="Run theaterd with --debug.")
@json_option
@click.pass_obj
def restart(app: App, durability: str | None, debug: bool) -> None:
    """Stop theaterd gracefully, then start it again (or just start it if it was not running).

    Running actors come back with the same ids, names and last state.  Under
    systemd socket activation the socket starts the new daemon itself.

    \b
    Examples:
      theaterctl daemon restart
      theaterctl daemon restart --durability full
    """
    old: int | None = None
    client = _try_connect(app)
    if client is not None:
        with client:
            if durability is None:
                durability = str(client.call("status").get("durability") or "") or None
    old = _stop(app)
    log_path: Path | None = None
    existing = _try_connect(app)  # socket activation: the socket already started a new one
    if existing is not None:
        pid = existing.welcome.pid
        existing.close()
    else:
        pid, log_path = _launch(app, durability, debug)
    if app.json:
        emit_json({"running": True, "restarted": old is not None, "old_pid": old, "pid": pid,
                   "socket": str(app.socket), "log": str(log_path) if log_path else None})
    elif old is None:
        note(f"theaterd was not running; started it (pid {pid}, socket {app.socket})")
    else:
        note(f"theaterd restarted (pid {old} -> {pid}, socket {app.socket})")


@command.command("install-unit", short_help="Write systemd user units for this theaterd.")
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False),
              help="Where to write them (default: ~/.config/systemd/user).")
@click.option("--print", "to_stdout", is_flag=True, help="Print the service unit instead of writing files.")
@click.option("--force", is_flag=True, help="Overwrite units that differ.")
@json_option
@click.pass_obj
def install_unit(app: App, directory: Path | None, to_stdout: bool, force: bool) -> None:
    """Write theaterd.socket and theaterd.service, running the theaterd installed
    next to this theaterctl (a venv's, pipx's or ~/.local/bin's).

    Then enable the socket as printed: theaterd starts on the first call.
    See docs/systemd.md.

    \b
    Examples:
      .venv/bin/theaterctl daemon install-unit
      theaterctl daemon install-unit --print
    """
    from ..systemd import render, theaterd_path, user_unit_dir

    units = render(theaterd_path())
    if to_stdout:
        emit_text(units["theaterd.service"].rstrip("\n"))
        return
    target = directory or user_unit_dir()
    for name, text in units.items():
        path = target / name
        if path.exists() and path.read_text() != text and not force:
            raise BadInput(f"{path} exists and differs; --force overwrites it (or --print shows the new one)")
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in units.items():
        (target / name).write_text(text)
        written.append(str(target / name))
    if app.json:
        emit_json({"files": written, "theaterd": theaterd_path()})
    else:
        note(f"wrote {', '.join(written)} (theaterd: {theaterd_path()})")
        note("now run: systemctl --user daemon-reload && systemctl --user enable --now theaterd.socket")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours (tests) counts as gone
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@command.command("status", short_help="Is theaterd running? (exit 0 or 69)")
@json_option
@click.pass_obj
def status(app: App) -> None:
    """Exit 0 when theaterd is running (and print its details), 69 when it is not.

    \b
    Examples:
      theaterctl daemon status
      theaterctl daemon status --json
    """
    try:
        client = Client.connect(app.socket, timeout=5)
    except Unavailable as exc:
        if app.json:
            emit_json({"running": False, "socket": str(app.socket), "reason": str(exc)})
            raise click.exceptions.Exit(int(ErrorCode.UNAVAILABLE)) from None
        raise
    with client:
        info = client.call("status")
    if app.json:
        emit_json({"running": True, **info})
        return
    if is_tty():
        key_values([("status", "running"), ("pid", info["pid"]), ("version", info["version"]),
                    ("uptime", human_duration(info["uptime"] or 0)), ("socket", info["socket"]),
                    ("home", info["home"]), ("actors", info["actors"]), ("durability", info["durability"])])
    else:
        emit_text(f"running pid={info['pid']} socket={info['socket']} actors={info['actors']}")
