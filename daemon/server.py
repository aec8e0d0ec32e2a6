"""Client connections: bytes <-> wire <-> runtime (the socket itself is :mod:`daemon.listener`).

Each connection is a small nursery::

    connection
    ├─ writer          drains the outgoing frame queue into the socket
    ├─ reader (inline) reads frames, runs quick calls in order
    └─ call x K        slow calls (requests, channel opens, chain reads) in flight

Calls that enqueue a message (``send``, ``request``, ``channel-send``) do
the enqueue inline, so a connection's messages reach mailboxes in the order
they were sent; only the wait for the answer runs beside the reader.

Operations are one method each (``op_<name>``, in :mod:`daemon.ops`): what it
returns is the reply, what it raises is the error, and
:meth:`Connection._fail` is the one place where a failure becomes an error
frame.  An op whose answer comes later (a ``send`` once stored, a ``request``
when the actor replies, the concurrent ones) returns
:data:`daemon.ops.LATER`.  The wire state (handshake, frame types) is the
sans-IO :class:`daemon.connection.Connection`'s; this module keeps the socket,
the timers and flow control.  A failure in one connection closes that
connection and nothing else.  A client going away never cancels an actor: it
only drops its pending replies and closes the channels it opened.
"""

from __future__ import annotations

import errno
import logging
import math
import os
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NoReturn

import trio

from . import __version__, wire
from .connection import NEED_DATA, ConnectionClosed, Role
from .connection import Connection as Protocol
from .channels import ClientEnd
from .errors import ErrorCode, InternalError, ProtocolError, TheaterError
from .listener import peer_creds
from .ops import LATER, Later, Operations
from .runtime import ReplySlot, Runtime
from .timers import Timer

log = logging.getLogger("theaterd.server")

RECEIVE_SIZE = 65536  # bytes per read
WRITE_BATCH_BYTES = 1 << 20  # queued frames joined into one write by the writer task, at most (about)
MAX_INFLIGHT = 1024  # calls read and not yet answered, per connection; beyond it the reader waits
MAX_OUTGOING_BYTES = 64 << 20  # bytes queued for a client that does not read (at least 4 frames' worth)


@dataclass(slots=True)
class ServerSettings:
    max_frame: int = wire.DEFAULT_MAX_FRAME
    max_connections: int = 256
    handshake_timeout: float = 5.0
    partial_frame_timeout: float = 5.0
    idle_timeout: float = 600.0
    max_outgoing: int = 4096  # frames queued for a client that does not read
    max_outgoing_bytes: int = MAX_OUTGOING_BYTES
    max_inflight: int = MAX_INFLIGHT
    check_peer: bool = True


class Server:
    def __init__(self, runtime: Runtime, settings: ServerSettings | None = None,
                 on_shutdown: Callable[[], None] | None = None) -> None:
        self.runtime = runtime
        self.settings = settings or ServerSettings()
        self.on_shutdown = on_shutdown or (lambda: None)
        self.connections = 0
        self.socket_path: str = ""
        self.home: str = ""
        # connections with frames queued during a pass of loop callbacks (the store and the
        # handler threads settling replies): each is written once, when the pass ends
        self.dirty: list[Connection] = []
        self._hooked = False
        self.calls_in_flight = 0  # calls read and not answered yet, over all connections
        self.calls_in_flight_peak = 0  # the most one connection has had at once

    @property
    def corked(self) -> bool:
        """True during a pass of loop calls, whose end writes what was queued meanwhile."""
        calls = self.runtime.call_soon
        if calls is None:
            return False
        if not self._hooked:  # (the runtime made its loop calls after this server started)
            calls.after_drain.append(self.uncork)
            self._hooked = True
        return calls.draining

    def uncork(self) -> None:
        dirty, self.dirty = self.dirty, []
        for conn in dirty:
            conn.flush()

    async def serve(self, listener: trio.SocketListener, *,
                    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED) -> NoReturn:
        """Accept connections until cancelled, each in a task of its own.  Out of file
        descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM), ``trio.serve_listeners``
        logs it, waits 100 ms and accepts again."""
        await trio.serve_listeners(self._connection, [listener], task_status=task_status)

    async def _connection(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        try:
            conn = Connection(self, stream)
            await conn.run()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except BaseExceptionGroup as group:  # nursery errors: a dead peer is not a bug
            rest = group.subgroup(lambda e: not isinstance(e, (trio.BrokenResourceError, trio.ClosedResourceError)))
            if rest is not None:
                if rest.subgroup(lambda e: not isinstance(e, Exception)) is not None:
                    raise
                log.error("connection failed", exc_info=rest)
        except Exception:  # a bug in one connection must not take the daemon down
            log.exception("connection failed")
        finally:
            self.connections -= 1
            with trio.CancelScope(shield=True):
                await stream.aclose()


# ---------------------------------------------------------------------------
# one connection


class _Closed(Exception):
    pass


class Connection(Operations):
    """One client connection: the socket, the timers and flow control around the sans-IO protocol."""

    def __init__(self, server: Server, stream: trio.SocketStream) -> None:
        self.server = server
        self.runtime = server.runtime
        self.settings = server.settings
        self.stream = stream
        self.protocol = Protocol(Role.DAEMON, f"theaterd {__version__}", self.settings.max_frame)
        self.client_ends: set[ClientEnd] = set()  # this connection's ends of channels it opened
        self.follows = 0  # active chain follows: exempt from the idle limit
        self.writer_done = trio.Event()
        self.in_flight = 0
        self.closing = False
        self.waiting: dict[ReplySlot, Timer] = {}  # requests whose replies this connection awaits
        # output: frames are written straight to the socket when it takes them; what it
        # does not take waits in ``_out`` for the writer task, which waits for room
        self._fd = stream.socket.fileno()
        self._out: deque[bytes | memoryview] = deque()
        self._out_closed = False  # nothing more after what is queued (then the writer ends)
        self._blocked = False  # the socket is full: the writer task owns the output
        self._dirty = False  # queued while the server is corked: written at the uncork
        self._writer_lot = trio.lowlevel.ParkingLot()
        self._drained = False  # the last read was short: wait for data before reading again
        # flow control: the reader takes no new call while this connection has ``max_inflight``
        # calls unanswered, or more than half of ``max_outgoing`` frames or a quarter of its
        # byte limit queued, and resumes as answers go out; past the limits themselves (pushes
        # can get there) the client is disconnected as one that does not read
        self.unanswered: set[int] = set()  # ids of calls read and not answered yet
        self._out_bytes = 0  # bytes in ``_out``
        self._max_out_bytes = max(self.settings.max_outgoing_bytes, 4 * self.settings.max_frame)
        self._reader_lot = trio.lowlevel.ParkingLot()
        # time limits of the read loop (see ``_watch_due``): when the reader started waiting
        # for a frame, and for the rest of a partial one; None while it is not waiting
        self._idle_since: float | None = None
        self._partial_since: float | None = None
        self._receiving = False  # the reader waits in ``_receive``
        self._watch: Timer | None = None
        self._watch_at = math.inf
        self._read_scope: trio.CancelScope | None = None
        self._expired: str | None = None  # why the watch cut the reader off

    # -- output -------------------------------------------------------------

    def write(self, frame: wire.Frame) -> None:
        """Send a frame; a client that stops reading is disconnected, never waited for."""
        if isinstance(frame, (wire.Reply, wire.Error)) and frame.id in self.unanswered:
            self.unanswered.discard(frame.id)
            self.server.calls_in_flight -= 1
            if self._reader_lot:
                self._wake_reader()
        if self.closing or self._out_closed:
            return
        try:
            data = self.protocol.send(frame)
        except wire.LocalProtocolError as exc:  # an answer too large, or one that cannot be encoded
            call_id = getattr(frame, "id", None)
            data = self.protocol.send(wire.Error(call_id, int(ErrorCode.INTERNAL), str(exc)))
        self._out.append(data)
        self._out_bytes += len(data)
        if self._blocked:
            if len(self._out) > self.settings.max_outgoing or self._out_bytes > self._max_out_bytes:
                log.warning("client is not reading its replies; disconnecting it")
                self._abort()
        elif self.server.corked:
            if not self._dirty:
                self._dirty = True
                self.server.dirty.append(self)
        else:
            self.flush()

    def flush(self) -> None:
        """Write what is queued now, as far as the socket takes it (never waits)."""
        self._dirty = False
        out = self._out
        if self._blocked or not out or self.closing:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        try:
            sent = os.write(self._fd, data)
        except BlockingIOError:
            sent = 0
        except OSError:  # the peer went away
            self._abort()
            return
        self._out_bytes = len(data) - sent
        if sent < len(data):
            out.append(memoryview(data)[sent:])
            self._blocked = True
            self._writer_lot.unpark()
        elif self._reader_lot:
            self._wake_reader()

    def _abort(self) -> None:
        """Give up on this connection now (the read loop ends too)."""
        self.closing = True
        self._out.clear()
        self._out_bytes = 0
        self._reader_lot.unpark_all()
        nursery = getattr(self, "nursery", None)
        if nursery is not None:
            nursery.cancel_scope.cancel()

    async def _writer(self) -> None:
        try:
            await self._write_loop()
        finally:
            self.writer_done.set()

    async def _write_loop(self) -> None:
        """Waits for room in the socket whenever it fills; otherwise :meth:`flush` writes."""
        out = self._out
        while True:
            if not self._blocked:
                if self._out_closed or self.closing:
                    return
                await self._writer_lot.park()
                continue
            await trio.lowlevel.wait_writable(self.stream.socket)
            while out and not self.closing:
                parts = [out.popleft()]
                size = len(parts[0])
                while out and len(parts) < 256 and size < WRITE_BATCH_BYTES:  # one copy of a few frames
                    size += len(out[0])
                    parts.append(out.popleft())
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                try:
                    sent = os.write(self._fd, data)
                except BlockingIOError:
                    sent = 0
                except OSError:
                    self._abort()
                    return
                self._out_bytes -= sent
                if sent < len(data):
                    out.appendleft(memoryview(data)[sent:])
                    break
            else:
                self._blocked = False
            if self._reader_lot:
                self._wake_reader()

    async def _fatal(self, code: ErrorCode, message: str) -> None:
        """Send one connection-level error frame directly, then give up on the stream."""
        with trio.move_on_after(1):
            try:
                await self.stream.send_all(self.protocol.send(wire.Error(None, int(code), message)))
                await self.stream.send_eof()
                # read what the peer already sent, so that closing does not reset the
                # connection and destroy the error frame before the peer reads it
                while await self.stream.receive_some(65536):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    # -- flow control -------------------------------------------------------

    def _full(self) -> bool:
        """True while the reader must not take another call (see ``unanswered``)."""
        return (len(self.unanswered) >= self.settings.max_inflight
                or len(self._out) > self.settings.max_outgoing // 2
                or self._out_bytes > self._max_out_bytes // 4)

    def _wake_reader(self) -> None:
        if not self._full():
            self._reader_lot.unpark_all()

    async def _wait_for_room(self) -> None:
        """Backpressure: stop reading this connection until it is below its limits again."""
        while self._full() and not self.closing:
            await self._reader_lot.park()

    # -- input --------------------------------------------------------------

    def _exempt_from_idle(self) -> bool:
        """A connection with calls in flight or an open session is not idle."""
        if self.in_flight or self.follows:
            return True
        channels = self.runtime.channels.channels
        return any(end.channel_id is None or end.channel_id in channels for end in self.client_ends)

    async def _hello(self, timeout: float) -> wire.Frame:
        """The first frame, within ``timeout`` (the handshake)."""
        with trio.move_on_after(timeout):
            return await self._next_frame()
        if self.protocol.buffered:
            raise ProtocolError(self._incomplete(timeout))
        raise ProtocolError(f"no hello frame within {timeout:g} s")

    async def _next_frame(self) -> wire.Frame:
        """The next frame.  A frame already read (pipelined calls) is returned without reading
        the clock.  While the reader waits for data, :meth:`_watch_due` enforces the time limits:
        a partial frame must complete within ``partial_frame_timeout`` of the reader starting
        to wait for its rest, and a connection is closed after ``idle_timeout`` without frames
        unless exempt."""
        protocol = self.protocol
        while True:
            event = protocol.next_event()
            if event is not NEED_DATA:
                self._idle_since = self._partial_since = None
                if type(event) is ConnectionClosed:
                    raise _Closed()
                return event  # type: ignore[return-value]
            now = trio.current_time()
            if self._idle_since is None:
                self._idle_since = now
            if protocol.buffered and self._partial_since is None:
                self._partial_since = now
            if self._read_scope is not None:  # (the handshake has a limit of its own)
                self._arm_watch()
            self._receiving = True
            try:
                data = await self._receive()
            finally:
                self._receiving = False
            if self._expired is not None:  # the watch fired as this data came: the limit wins,
                await trio.lowlevel.checkpoint()  # nothing of it is run (raises Cancelled: the read scope is)
            protocol.receive_data(data)  # b"" at EOF: the next event says how the stream ended

    def _deadline(self) -> float:
        if self._partial_since is not None:
            return self._partial_since + self.settings.partial_frame_timeout
        if self._idle_since is not None:
            return self._idle_since + self.settings.idle_timeout
        return math.inf

    def _arm_watch(self) -> None:
        """Make sure :meth:`_watch_due` runs by the current deadline.  One timer per connection,
        re-armed lazily: a frame only moves the deadline later, which the timer finds out
        when it is due (no timer, and no cancel scope, per frame)."""
        due = self._deadline()
        if due < self._watch_at:
            if self._watch is not None:
                self.runtime.timers.cancel(self._watch)
            self._watch_at = due
            self._watch = self.runtime.timers.at(due, self._watch_due)

    def _watch_due(self) -> None:
        """The watch timer: cut the connection off if its reader is still waiting past a
        deadline; otherwise wait for the deadline as it is now."""
        self._watch, self._watch_at = None, math.inf
        scope = self._read_scope
        if self.closing or not self._receiving or scope is None:
            return  # (the reader arms it again when it next waits)
        now = trio.current_time()
        if self._deadline() > now:
            self._arm_watch()
            return
        if self._partial_since is None and self._exempt_from_idle():
            self._idle_since = now
            self._arm_watch()
            return
        if self._partial_since is not None:
            self._expired = self._incomplete(self.settings.partial_frame_timeout)
        else:
            self._expired = "idle"
        scope.cancel()

    def _incomplete(self, waited: float) -> str:
        return f"incomplete frame: {self.protocol.buffered} bytes and no more data for {waited:g} s"

    async def _receive(self) -> bytes:
        """The next bytes from the socket (b"" at EOF).

        After a short read the socket is most likely drained (a client waiting for its
        reply), so wait for it to become readable before reading, rather than read, fail
        and then wait: one system call less per message."""
        if self._drained:
            await trio.lowlevel.wait_readable(self.stream.socket)
        else:
            await trio.lowlevel.checkpoint()
        while True:
            try:
                data = os.read(self._fd, RECEIVE_SIZE)
            except BlockingIOError:
                await trio.lowlevel.wait_readable(self.stream.socket)
                continue
            except OSError as exc:  # reset by the peer: like EOF
                if exc.errno in (errno.EBADF, errno.ENOTCONN):
                    raise trio.ClosedResourceError("the connection is closed") from None
                return b""
            self._drained = len(data) < RECEIVE_SIZE
            return data

    async def run(self) -> None:
        if self.settings.check_peer:
            creds = peer_creds(self.stream)
            if creds is not None and creds[1] != os.getuid():
                log.warning("refused a connection from uid %s", creds[1])
                await self._fatal(ErrorCode.UNAVAILABLE, "permission denied: this daemon belongs to another user")
                return
            if creds is not None and self.server.runtime.pool.is_worker_process(creds[0]):
                # Landlock does not cover connecting to a Unix socket by path: actor code must
                # not reach the daemon's socket
                log.warning("refused a connection from worker process %s", creds[0])
                await self._fatal(ErrorCode.UNAVAILABLE, "permission denied: actor code cannot connect to the daemon")
                return
        if self.server.connections > self.settings.max_connections:
            await self._fatal(ErrorCode.BUSY, f"busy: the daemon already has {self.settings.max_connections} connections")
            return
        try:  # the protocol checks that it is a hello of our version
            await self._hello(self.settings.handshake_timeout)
        except (_Closed, ProtocolError) as exc:
            if not isinstance(exc, _Closed):
                await self._fatal(ErrorCode.PROTOCOL, str(exc) or "no hello frame")
            return
        self.write(wire.Welcome(wire.PROTOCOL_VERSION, f"theaterd {__version__}", os.getpid(), os.getuid(),
                                self.settings.max_frame))
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                nursery.start_soon(self._writer)
                try:
                    await self._read_loop()
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                self.closing = True
                if self._watch is not None:
                    self.runtime.timers.cancel(self._watch)
                self.server.calls_in_flight -= len(self.unanswered)
                self.unanswered.clear()
                for slot, timer in self.waiting.items():  # replies nobody will read
                    slot.callback = None
                    self.runtime.timers.cancel(timer)
                self.waiting.clear()
                if self.client_ends:
                    await self.runtime.channels.close_for_client(list(self.client_ends))

    async def _read_loop(self) -> None:
        error: str | None = None
        with trio.CancelScope() as self._read_scope:  # cancelled only by ``_watch_due``
            while not self.closing:
                if self._full():
                    await self._wait_for_room()
                    continue
                try:
                    frame = await self._next_frame()
                except _Closed:
                    return
                except ProtocolError as exc:  # (the protocol lets only calls through after the hello)
                    error = str(exc)
                    break
                await self._dispatch(frame)  # type: ignore[arg-type]
        if self._expired not in (None, "idle"):
            error = self._expired
        if error is not None:
            self._flush_error(ErrorCode.PROTOCOL, error)
            await self._drain_output()

    async def _room(self) -> None:
        """Wait until the outgoing queue is at most half full (flow control for pushes)."""
        while not self.closing:
            if len(self._out) <= self.settings.max_outgoing // 2 and self._out_bytes <= self._max_out_bytes // 2:
                return
            await trio.sleep(0.01)

    def _flush_error(self, code: ErrorCode, message: str) -> None:
        self.write(wire.Error(None, int(code), message))
        self.flush()
        self._out_closed = True
        self._writer_lot.unpark()

    async def _drain_output(self) -> None:
        """Let the writer send what is queued (the output channel is closed), briefly; then
        read what the peer already sent, so that closing does not reset the connection and
        destroy the error frame before the peer reads it."""
        with trio.move_on_after(2):
            await self.writer_done.wait()
            try:
                await self.stream.send_eof()
                while await self.stream.receive_some(65536):
                    pass
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    # -- calls --------------------------------------------------------------

    def _fail(self, call: wire.Call, exc: BaseException) -> None:
        """The one place where an operation's failure becomes its error frame."""
        if not isinstance(exc, TheaterError):
            log.error("internal error in %s", call.op, exc_info=exc)
            exc = InternalError(f"internal error: {type(exc).__name__}: {exc}")
        self.write(wire.error_frame(call.id, exc))

    async def _answer(self, call: wire.Call, work: Awaitable[Any]) -> None:
        """Await ``work`` and answer with its result or its error (none for :data:`LATER`)."""
        self.in_flight += 1
        try:
            result = await work
        except Exception as exc:
            self._fail(call, exc)
        else:
            if result is not LATER:
                self.write(wire.Reply(call.id, result))
        finally:
            self.in_flight -= 1

    def _spawn(self, call: wire.Call, work: Callable[[], Awaitable[Any]]) -> Later:
        """Answer the call from a task of its own (calls run concurrently)."""
        self.nursery.start_soon(self._answer, call, work())
        return LATER

    async def _dispatch(self, call: wire.Call) -> None:
        """Run one call: what its op returns is the reply, what it raises the error (see ``_fail``)."""
        if call.id not in self.unanswered:  # answered by the first reply or error with its id
            self.unanswered.add(call.id)
            self.server.calls_in_flight += 1
            if len(self.unanswered) > self.server.calls_in_flight_peak:
                self.server.calls_in_flight_peak = len(self.unanswered)
        try:
            wire.check_args(call.op, call.args)  # a bad argument fails the call (76), not the connection
            result = await _HANDLERS[call.op](self, call, call.args)
        except Exception as exc:
            self._fail(call, exc)
        else:
            if result is not LATER:
                self.write(wire.Reply(call.id, result))


# every operation of the protocol, to the method that serves it (``channel-open`` -> ``op_channel_open``)
_HANDLERS: dict[str, Callable[[Connection, wire.Call, dict[str, Any]], Awaitable[Any]]] = {
    op: getattr(Connection, "op_" + op.replace("-", "_")) for op in wire.OPS
}


__all__ = ["Server", "ServerSettings"]
