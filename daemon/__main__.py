"""theaterd: process concerns (options, lock file, signals, logging) around trio.run.

The nursery tree::

    root
    ├─ signal watcher     SIGTERM/SIGINT -> graceful shutdown
    ├─ runtime            actor:<name> x N (mailbox loops)
    └─ server             connection x M
    (the store writer is a thread owned by Store, flushed last)

Exit status: 0 after a clean shutdown; 1 when it cannot start (the one line
on stderr says why: bad home or socket directory, another daemon owns the
home, a corrupt store); 2 for bad options.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from . import __version__
from .paths import DURABILITY_ENV, HOME_ENV, SOCKET_ENV, default_home, default_socket

log = logging.getLogger("theaterd")


@dataclass
class Config:
    socket: Path
    home: Path
    durability: str = "normal"
    debug: bool = False
    timeout: float = 30.0
    mailbox_size: int = 1024
    max_frame: int = 1 << 20
    max_connections: int = 256
    idle_timeout: float = 600.0
    max_component_bytes: int = 16 << 20
    max_inflight: int = 1024
    workers: int = 0
    require_sandbox: bool = False


#: free bytes under which theaterd warns at start that the store may soon refuse writes
LOW_SPACE = 16 << 20


class StartupError(Exception):
    pass


HOME_FILES = ("theater.db-wal", "theater.db-shm", "theaterd.log")  # narrowed to 0600 when present


def _prepare_home(home: Path) -> None:
    """Create the data directory 0700, or refuse one that others can enter; keep its files 0600."""
    from .files import UnsafeDirError, ensure_private_dir, private_file
    from .store import DB_NAME

    try:
        ensure_private_dir(home, "data directory", "use a directory of your own with --home")
    except UnsafeDirError as exc:
        raise StartupError(str(exc)) from None
    # SQLite gives the WAL and shared-memory files the database file's mode
    os.close(private_file(home / DB_NAME))
    for name in HOME_FILES:
        if (home / name).exists():
            os.close(private_file(home / name, os.O_RDONLY))


def _take_lock(home: Path) -> Any:
    from .files import private_file

    _prepare_home(home)
    lock_path = home / "theaterd.lock"
    fh = os.fdopen(private_file(lock_path), "r+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        pid = fh.read().strip() or "?"
        fh.close()
        raise StartupError(f"another theaterd (pid {pid}) already uses {home}; stop it with"
                           " 'theaterctl daemon stop', or give this one another --home") from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def _sd_notify(message: str) -> None:
    """Tell systemd (Type=notify) about our state, when it asked."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(message.encode(), address)
    except OSError as exc:
        log.warning("sd_notify failed: %s", exc)


def _inherited_fd() -> int | None:
    """The listening socket handed over by systemd socket activation, if any."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return None
    try:
        count = int(os.environ.get("LISTEN_FDS", "0"))
    except ValueError:
        return None
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(key, None)
    return 3 if count >= 1 else None


async def amain(config: Config) -> None:
    import trio

    from .loopcalls import LoopCalls
    from .runtime import Runtime, Settings
    from .listener import listener_from_fd, open_unix_listener
    from .server import Server, ServerSettings
    from .store import Store

    from . import sandbox

    abi = sandbox.probe()
    if abi == 0:
        if config.require_sandbox:
            raise StartupError("this kernel cannot confine worker processes (no Landlock);"
                               " start without --require-sandbox to run actors unconfined")
        log.warning("sandbox: none: this kernel has no Landlock; actor code can reach everything this user can")
    from .store import free_bytes

    free = free_bytes(config.home)
    if free < LOW_SPACE:
        log.warning("the disk holding %s has only %d bytes free: writes may be refused (exit 75) until"
                    " space is freed", config.home, free)
    calls = LoopCalls(trio.lowlevel.current_trio_token())  # one wake-up path into the loop for all threads
    store = Store(config.home, config.durability)
    store.start(calls)
    runtime = Runtime(store, Settings(default_timeout=config.timeout, mailbox_size=config.mailbox_size,
                                      max_message=config.max_frame, debug=config.debug, workers=config.workers))
    runtime.call_soon = calls
    shutdown = trio.Event()
    server = Server(runtime, ServerSettings(max_frame=config.max_frame, max_connections=config.max_connections,
                                            idle_timeout=config.idle_timeout, max_inflight=config.max_inflight),
                    on_shutdown=shutdown.set)
    server.socket_path, server.home = str(config.socket), str(config.home)
    fd = _inherited_fd()
    listener = listener_from_fd(fd) if fd is not None else await open_unix_listener(config.socket)
    try:
        async with trio.open_nursery() as root:
            root.start_soon(_watch_signals, shutdown)
            await root.start(runtime.serve)
            serving = trio.CancelScope()

            async def serve() -> None:
                with serving:
                    await server.serve(listener)

            root.start_soon(serve)
            log.info("theaterd %s listening on %s (home %s, durability %s)", __version__, config.socket,
                     config.home, config.durability)
            _sd_notify("READY=1")
            await shutdown.wait()
            _sd_notify("STOPPING=1")
            log.info("shutting down")
            with trio.move_on_after(30):
                await runtime.shutdown()
            await trio.sleep(0.05)  # let connection writers flush the last frames
            serving.cancel()
            root.cancel_scope.cancel()
    finally:
        store.close()
        if fd is None:
            try:
                config.socket.unlink()
            except OSError:
                pass


async def _watch_signals(shutdown: Any) -> None:
    import trio

    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            shutdown.set()


def run(config: Config) -> int:
    import trio

    from .listener import SocketDirError
    from .store import StoreError

    logging.basicConfig(
        level=logging.DEBUG if config.debug else logging.INFO,
        format="%(asctime)s theaterd[%(process)d] %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    from .files import LIMITS

    LIMITS.component = config.max_component_bytes  # before any component is read
    try:
        lock = _take_lock(config.home)
        try:
            trio.run(amain, config)
        finally:
            lock.close()
    except BaseException as exc:  # the one place start-up failures become a line and a status
        known = _first_known(exc, (StartupError, SocketDirError, StoreError, OSError, KeyboardInterrupt))
        if isinstance(known, KeyboardInterrupt):
            return 0
        if isinstance(known, OSError) and not isinstance(known, (SocketDirError,)):
            where = getattr(known, "filename", None) or config.socket
            print(f"theaterd: error: {known.strerror or known} ({where})", file=sys.stderr)
            return 1
        if known is not None:
            print(f"theaterd: error: {known}", file=sys.stderr)
            return 1
        raise
    return 0


def _first_known(exc: BaseException, kinds: tuple[type[BaseException], ...]) -> BaseException | None:
    """Find the first exception of ``kinds`` in ``exc`` or, through exception groups, inside it."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_known(inner, kinds)
            if found is not None:
                return found
        return None
    return exc if isinstance(exc, kinds) else None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--socket", "socket_path", type=click.Path(path_type=Path), envvar=SOCKET_ENV,
              help="Unix socket to listen on [env THEATER_SOCKET].")
@click.option("--home", type=click.Path(path_type=Path), envvar=HOME_ENV,
              help="Data directory (store, lock, log) [env THEATER_HOME].")
@click.option("--durability", type=click.Choice(["normal", "full"]), envvar=DURABILITY_ENV, default="normal",
              show_default=True, help="normal: survives kill -9; full: fsync, survives power loss.")
@click.option("--timeout", type=click.FloatRange(min=0.001), default=30.0, show_default=True,
              help="Default request timeout in seconds.")
@click.option("--mailbox-size", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Default mailbox capacity per actor (backpressure beyond it).")
@click.option("--max-frame", type=click.IntRange(min=1024), default=1 << 20, show_default=True,
              help="Largest accepted frame, in bytes.")
@click.option("--max-connections", type=click.IntRange(min=1), default=256, show_default=True,
              help="Concurrent client connections; more get a 'busy' error.")
@click.option("--idle-timeout", type=click.FloatRange(min=0.1), default=600.0, show_default=True,
              help="Close client connections idle this many seconds.")
@click.option("--max-component-bytes", type=click.IntRange(min=1), default=16 << 20, show_default=True,
              help="Largest actor component (Python file) accepted, in bytes.")
@click.option("--max-inflight", type=click.IntRange(min=1), default=1024, show_default=True,
              help="Calls in flight per connection; beyond it the daemon stops reading that connection.")
@click.option("--workers", type=click.IntRange(min=0), default=0,
              help="Shared worker processes for actor code [default: one per usable CPU].")
@click.option("--require-sandbox", is_flag=True,
              help="Refuse to start where the kernel cannot confine workers (no Landlock).")
@click.option("--debug", is_flag=True, help="Verbose logs, including what actors print.")
@click.version_option(__version__, prog_name="theaterd")
def cli(socket_path: Path | None, home: Path | None, durability: str, timeout: float, mailbox_size: int,
        max_frame: int, max_connections: int, idle_timeout: float, max_component_bytes: int, max_inflight: int,
        workers: int, require_sandbox: bool, debug: bool) -> None:
    """Run the theater daemon in the foreground."""
    config = Config(
        socket=socket_path or Path(default_socket()),
        home=home or Path(default_home()),
        durability=durability,
        debug=debug,
        timeout=timeout,
        mailbox_size=mailbox_size,
        max_frame=max_frame,
        max_connections=max_connections,
        idle_timeout=idle_timeout,
        workers=workers,
        require_sandbox=require_sandbox,
        max_component_bytes=max_component_bytes,
        max_inflight=max_inflight,
    )
    sys.exit(run(config))


def main() -> None:
    cli(prog_name="theaterd")


if __name__ == "__main__":
    main()
