"""A blocking client for theaterd: what the CLI uses and what scripts import.

    from theaterctl.client import Client

    with Client.connect() as c:              # $THEATER_SOCKET or the default path
        c.send("counter", {"type": "increment", "amount": 2})
        print(c.request("counter", {"type": "get"}))   # -> {'count': 2}

Messages may be given as JSON-able Python values (encoded for you) or as
``bytes`` holding JSON.  Replies come back decoded from JSON (use
``raw=True`` for bytes).  Every failure raises a
:class:`daemon.errors.TheaterError` subclass whose ``code`` is the CLI's exit
code: ``NotFound`` (3), ``ActorFailed`` (1), ``Timeout`` (4),
``Unavailable`` (69, daemon not running) and so on.

This module imports no trio and no rich: one-shot commands stay fast.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any, List

from daemon import wire
from daemon.connection import NEED_DATA, Connection, ConnectionClosed, Role, State
from daemon.errors import BadInput, ErrorCode, TheaterError, Timeout, Unavailable, error_from_code
from daemon.jsontext import from_json_bytes, to_json_bytes
from daemon.paths import default_socket

CLIENT_NAME = "theaterctl"


def connect_socket(path: str | os.PathLike[str], timeout: float | None = 10.0) -> socket.socket:
    """Connect to the daemon's socket, turning every failure into a clear :class:`Unavailable`."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(os.fspath(path))
    except FileNotFoundError:
        sock.close()
        raise Unavailable(f"theaterd is not running (no socket at {path}); start it with: theaterctl daemon start") from None
    except ConnectionRefusedError:
        sock.close()
        raise Unavailable(f"theaterd is not running (stale socket {path}); start it with: theaterctl daemon start") from None
    except PermissionError:
        sock.close()
        raise Unavailable(f"permission denied connecting to {path}") from None
    except OSError as exc:
        sock.close()
        if exc.errno == errno.ENAMETOOLONG or "too long" in str(exc):
            raise Unavailable(f"socket path {path} is too long") from None
        raise Unavailable(f"cannot connect to {path}: {exc.strerror or exc}") from None
    return sock


def check_daemon_uid(sock: socket.socket, path: str | os.PathLike[str]) -> None:
    """Refuse to talk to a daemon run by another user (SO_PEERCRED)."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return
    _pid, uid, _gid = struct.unpack("3i", creds)
    if uid != os.getuid():
        raise Unavailable(f"refusing to talk to {path}: the daemon runs as uid {uid}, not as you ({os.getuid()})")


def failure(frame: wire.Error) -> TheaterError:
    """The client side's one translation of an error frame into its :class:`TheaterError` subclass."""
    return error_from_code(frame.code, frame.message)


class Client:
    """One connection to theaterd.  Not thread-safe; one call at a time (or use :meth:`pipeline`)."""

    def __init__(self, sock: socket.socket, path: str, conn: Connection) -> None:
        self.sock = sock
        self.path = path
        self.conn = conn
        assert conn.welcome is not None
        self.welcome: wire.Welcome = conn.welcome

    # -- connecting -------------------------------------------------------

    @classmethod
    def connect(cls, path: str | os.PathLike[str] | None = None, timeout: float | None = 10.0) -> Client:
        path = os.fspath(path) if path is not None else default_socket()
        sock = connect_socket(path, timeout)
        try:
            check_daemon_uid(sock, path)
            conn = Connection(Role.CLIENT, CLIENT_NAME)
            try:
                sock.sendall(conn.send(wire.Hello(wire.PROTOCOL_VERSION, CLIENT_NAME)))
                frame = next_frame(sock, conn)
            except TimeoutError:
                raise Unavailable(f"the daemon at {path} accepted the connection but did not answer within"
                                  f" {timeout:g} s") from None
            except (BrokenPipeError, ConnectionResetError):
                raise Unavailable(f"the daemon at {path} closed the connection") from None
            if isinstance(frame, wire.Error):
                raise failure(frame)
            sock.settimeout(None)  # (anything but a welcome or an error was a RemoteProtocolError)
            return cls(sock, path, conn)
        except BaseException:
            sock.close()
            raise

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the raw call -------------------------------------------------------

    def _send_call(self, op: str, args: dict[str, Any]) -> int:
        if self.conn.state is State.CLOSED:
            raise Unavailable("the daemon closed the connection")
        try:
            call_id, data = self.conn.call(op, {k: v for k, v in args.items() if v is not None})
        except wire.LocalProtocolError as exc:
            raise BadInput(f"the {op} call is too large to send: {exc}") from None
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            raise Unavailable("the daemon closed the connection") from None
        return call_id

    def _next_frame(self) -> wire.Frame:
        return next_frame(self.sock, self.conn)

    def _await_reply(self, call_id: int, timeout: float | None = None) -> Any:
        self.sock.settimeout(timeout)
        while True:
            try:
                frame = self._next_frame()
            except TimeoutError:
                raise Timeout(f"no answer from the daemon within {timeout:g} s") from None
            if isinstance(frame, wire.Reply) and frame.id == call_id:
                return frame.result
            if isinstance(frame, wire.Error) and frame.id in (call_id, None):
                raise failure(frame)

    def call(self, op: str, /, **args: Any) -> Any:
        """Run one operation (see docs/protocol.md) and return its result.

        Arguments that are None are left out.  Timeouts are the daemon's to enforce
        (pass ``timeout=`` for the operations that take one); this waits for the answer.
        """
        return self._await_reply(self._send_call(op, args))

    def pipeline(self, calls: list[tuple[str, dict[str, Any]]]) -> list[Any]:
        """Send several calls at once, then collect every result (errors are returned, not raised)."""
        ids = [self._send_call(op, args) for op, args in calls]
        pending = set(ids)
        results: dict[int, Any] = {}
        while pending:
            frame = self._next_frame()
            if isinstance(frame, (wire.Reply, wire.Error)) and frame.id in pending:
                pending.discard(frame.id)
                results[frame.id] = frame.result if isinstance(frame, wire.Reply) else failure(frame)
            elif isinstance(frame, wire.Error) and frame.id is None:
                raise failure(frame)
        return [results[i] for i in ids]

    # -- the API ------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        return self.call("status")

    def spawn(self, manifest: str | os.PathLike[str], name: str | None = None, state: Any = None) -> dict[str, str]:
        st = None if state is None else to_json_bytes(state)
        return self.call("spawn", manifest=os.path.abspath(manifest), name=name, state=st)

    def list(self, all: bool = False) -> List[dict[str, Any]]:
        return self.call("list", all=all or None)

    def stop(self, actor: str) -> dict[str, Any]:
        return self.call("stop", actor=actor)

    def send(self, actor: str, message: Any, timeout: float | None = None) -> None:
        self.call("send", actor=actor, msg=to_json_bytes(message), timeout=timeout)

    def request(self, actor: str, message: Any, timeout: float | None = None, raw: bool = False) -> Any:
        reply = self.call("request", actor=actor, msg=to_json_bytes(message), timeout=timeout)
        return reply if raw else from_json_bytes(reply)

    def chain(self, actor: str, limit: int | None = None, type: str | None = None,
              since: float | None = None, after: int | None = None) -> List[dict[str, Any]]:
        return self.call("chain", actor=actor, limit=limit, type=type, since=since, after=after)

    def iter_chain(self, actor: str, limit: int | None = None, type: str | None = None,
                   since: float | None = None) -> Iterator[dict[str, Any]]:
        """Matching events, oldest first, fetched page by page (bounded memory).

        ``limit`` keeps the newest N.
        """
        events = self.call("chain", actor=actor, limit=limit, type=type, since=since)
        count = 0
        while events:
            for ev in events:
                if limit is not None and count >= limit:
                    return
                count += 1
                yield ev
            events = self.call("chain", actor=actor, type=type, since=since, after=events[-1]["seq"])

    def follow_chain(self, actor: str, limit: int | None = 10, type: str | None = None,
                     since: float | None = None) -> Iterator[dict[str, Any]]:
        """The newest ``limit`` events, then every new event as it is stored (until closed)."""
        call_id = self._send_call("chain", {"actor": actor, "limit": limit, "type": type, "since": since,
                                            "follow": True})
        yield from self._await_reply(call_id)
        while True:
            frame = self._next_frame()
            if isinstance(frame, wire.Push) and frame.id == call_id:
                yield frame.data
            elif isinstance(frame, wire.Error) and frame.id in (call_id, None):
                raise failure(frame)

    def export_lines(self, actor: str) -> Iterator[str]:
        """The chain as self-contained JSON Lines entries, oldest first, page by page."""
        after = 0
        while True:
            page = self.call("export", actor=actor, after=after)
            yield from page["lines"]
            if not page["more"]:
                return
            after = page["last"]

    def event(self, actor: str, ref: str) -> dict[str, Any]:
        return self.call("event", actor=actor, ref=str(ref))

    def verify(self, actor: str) -> dict[str, Any]:
        return self.call("verify", actor=actor)

    def state(self, actor: str) -> Any:
        result = self.call("state", actor=actor)
        return from_json_bytes(result["state"])

    def inspect(self, actor: str) -> dict[str, Any]:
        return self.call("inspect", actor=actor)

    def channels(self) -> List[dict[str, Any]]:
        return self.call("channels")

    def shutdown(self) -> None:
        self.call("shutdown")

    def call_with_deadline(self, op: str, wait: float, /, **args: Any) -> Any:
        """Like :meth:`call`, but give up (``Timeout``) when no answer arrives within ``wait`` s."""
        return self._await_reply(self._send_call(op, args), wait)

    def wait_closed(self, timeout: float = 30.0) -> None:
        """Block until the daemon closes this connection (it does so when it exits)."""
        self.sock.settimeout(timeout)
        try:
            while self.sock.recv(65536):
                pass
        except (TimeoutError, OSError):
            pass


def next_frame(sock: socket.socket, conn: Connection) -> wire.Frame:
    """The next frame from the daemon, reading ``sock`` as needed; the end of the stream is
    :class:`Unavailable` (the daemon went away, even in the middle of a frame)."""
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            if not data and conn.buffered:
                raise Unavailable("the daemon closed the connection")
            conn.receive_data(data)
        elif isinstance(event, ConnectionClosed):
            raise Unavailable("the daemon closed the connection")
        else:
            return event


__all__ = ["Client", "TheaterError", "ErrorCode", "to_json_bytes", "from_json_bytes"]
