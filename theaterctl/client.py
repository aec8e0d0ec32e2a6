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
from daemon.errors import BadInput, ErrorCode, ProtocolError, TheaterError, Unavailable, error_from_code
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


class Client:
    """One connection to theaterd.  Not thread-safe; one call at a time (or use :meth:`pipeline`)."""

    def __init__(self, sock: socket.socket, path: str, welcome: wire.Welcome, reader: wire.FrameReader) -> None:
        self.sock = sock
        self.path = path
        self.welcome = welcome
        self._reader = reader
        self._next_id = 1

    # -- connecting -------------------------------------------------------

    @classmethod
    def connect(cls, path: str | os.PathLike[str] | None = None, timeout: float | None = 10.0) -> Client:
        path = os.fspath(path) if path is not None else default_socket()
        sock = connect_socket(path, timeout)
        try:
            check_daemon_uid(sock, path)
            reader = wire.FrameReader()
            try:
                sock.sendall(wire.encode(wire.Hello(wire.PROTOCOL_VERSION, CLIENT_NAME)))
                frame = _read_frame(sock, reader)
            except TimeoutError:
                raise Unavailable(f"the daemon at {path} accepted the connection but did not answer within"
                                  f" {timeout:g} s") from None
            except (BrokenPipeError, ConnectionResetError):
                raise Unavailable(f"the daemon at {path} closed the connection") from None
            if isinstance(frame, wire.Error):
                raise error_from_code(frame.code, frame.message)
            if not isinstance(frame, wire.Welcome):
                raise ProtocolError(f"expected a welcome frame, got {type(frame).__name__}")
            sock.settimeout(None)
            reader.max_frame = frame.max_frame  # the daemon's limit, announced in the welcome
            return cls(sock, path, frame, reader)
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
        call_id = self._next_id
        self._next_id += 1
        try:
            frame = wire.Call(call_id, op, {k: v for k, v in args.items() if v is not None})
            try:
                data = wire.encode(frame, self.welcome.max_frame)
            except wire.LocalProtocolError as exc:
                raise BadInput(f"the {op} call is too large to send: {exc}") from None
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            raise Unavailable("the daemon closed the connection") from None
        return call_id

    def _await_reply(self, call_id: int, timeout: float | None = None) -> Any:
        self.sock.settimeout(timeout)
        while True:
            try:
                frame = _read_frame(self.sock, self._reader)
            except TimeoutError:
                from daemon.errors import Timeout

                raise Timeout(f"no answer from the daemon within {timeout:g} s") from None
            if isinstance(frame, wire.Reply) and frame.id == call_id:
                return frame.result
            if isinstance(frame, wire.Error) and frame.id in (call_id, None):
                raise error_from_code(frame.code, frame.message)

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
            frame = _read_frame(self.sock, self._reader)
            if isinstance(frame, (wire.Reply, wire.Error)) and frame.id in pending:
                pending.discard(frame.id)
                results[frame.id] = (frame.result if isinstance(frame, wire.Reply)
                                     else error_from_code(frame.code, frame.message))
            elif isinstance(frame, wire.Error) and frame.id is None:
                raise error_from_code(frame.code, frame.message)
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
            frame = _read_frame(self.sock, self._reader)
            if isinstance(frame, wire.Push) and frame.id == call_id:
                yield frame.data
            elif isinstance(frame, wire.Error) and frame.id in (call_id, None):
                raise error_from_code(frame.code, frame.message)

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


def _read_frame(sock: socket.socket, reader: wire.FrameReader) -> wire.Frame:
    while True:
        frame = reader.next_frame()
        if frame is not None:
            return frame
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            raise Unavailable("the daemon closed the connection")
        reader.feed(data)


__all__ = ["Client", "TheaterError", "ErrorCode", "to_json_bytes", "from_json_bytes"]
