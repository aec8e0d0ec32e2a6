"""One theater connection as a state machine: bytes in, events out, bytes to send. No I/O.

Theory of operation
-------------------
A :class:`Connection` is one end of a connection (docs/protocol.md §5), in the
style of h11's ``Connection``: it never touches a socket, a clock or trio.

* Bytes the peer sent go in through :meth:`Connection.receive_data` (``b""``
  means the peer closed its side); :meth:`Connection.next_event` then returns
  the next frame (:mod:`daemon.wire`), :data:`NEED_DATA` when it needs more
  bytes, or :class:`ConnectionClosed` once, at a clean end of the stream.
* Frames to send go through :meth:`Connection.send`, which returns their bytes
  (length prefix included) for the I/O layer to write.  On the client side
  :meth:`Connection.call` also picks the call's id.

It keeps the protocol's connection-level rules, for either role:

* the handshake: the client's first frame is a ``hello``, the daemon's a
  ``welcome`` (or one connection-level ``error``); the versions must match,
  with the messages the protocol names;
* the frame types each side may send: a client only ``call`` after its hello,
  a daemon only ``reply``, ``error`` and ``push`` after its welcome;
* on the client side, call ids: every call gets a fresh id, and every
  ``reply``, ``error`` and ``push`` must belong to a call this side made (a push
  only to a long-lived call, §5.3, that has had its reply);
* one connection-level ``error`` (id null) ends the connection either way.

A peer that breaks these rules makes :meth:`next_event` raise
:class:`~daemon.wire.RemoteProtocolError` and the state :attr:`State.BROKEN`
(the I/O layer may still send its one connection-level error); misuse by this
side makes :meth:`send` raise :class:`~daemon.wire.LocalProtocolError` and
changes nothing.  Timers (the handshake's 5 s, partial frames, idleness) are
the I/O layer's: :attr:`Connection.buffered` tells it whether a frame is
partly in.  Argument schemas (:func:`daemon.wire.check_args`) are the
operation's: a bad argument fails one call, not the connection.
"""

from __future__ import annotations

import enum
from typing import Any, Final, Union

from .wire import (
    DEFAULT_MAX_FRAME,
    PROTOCOL_VERSION,
    Call,
    Error,
    Frame,
    FrameReader,
    Hello,
    LocalProtocolError,
    Push,
    RemoteProtocolError,
    Reply,
    Welcome,
    encode,
)


class Role(enum.Enum):
    CLIENT = "client"
    DAEMON = "daemon"


class State(enum.Enum):
    AWAITING_HELLO = "awaiting hello"  # daemon: no hello from the client yet
    AWAITING_WELCOME = "awaiting welcome"  # client: no welcome from the daemon yet
    OPEN = "open"
    CLOSED = "closed"  # the stream ended, or a connection-level error went either way
    BROKEN = "broken"  # the peer broke the protocol: nothing more is read


class NeedData(enum.Enum):
    NEED_DATA = "need data"

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA: Final = NeedData.NEED_DATA  # "feed me more bytes" (an enum member, so that mypy narrows on it)


class ConnectionClosed:
    """The peer closed its side of the stream at a frame boundary.

    (A plain class, not a dataclass: importing dataclasses costs a one-shot command about 0.7 ms.)
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return other.__class__ is ConnectionClosed

    def __hash__(self) -> int:
        return hash(ConnectionClosed)

    def __repr__(self) -> str:
        return "ConnectionClosed()"


Event = Union[Frame, ConnectionClosed]


def is_long_lived(op: str, args: dict[str, Any]) -> bool:
    """Calls that stay open after their reply and get pushes (docs/protocol.md §5.3)."""
    return op == "channel-open" or (op == "chain" and bool(args.get("follow")))


_DAEMON_SENDS: Final = frozenset((Reply, Error, Push))


class Connection:
    """One end of a theater connection; see the module's docstring.

    ``name`` is this side's name: the daemon's goes in the version error
    (``"theaterd 0.1.0"``).  ``max_frame`` is the largest frame body this side
    accepts and sends; a client takes the daemon's from its ``welcome``.
    """

    __slots__ = ("role", "name", "_state", "welcome", "_reader", "_next_frame", "_max_frame", "_eof",
                 "_welcomed", "_serving", "_answering", "_next_id", "_unanswered", "_live")

    def __init__(self, role: Role, name: str = "", max_frame: int = DEFAULT_MAX_FRAME) -> None:
        self.role = role
        self.name = name
        self.welcome: Welcome | None = None  # client: the daemon's welcome, once it came
        self._reader = FrameReader(max_frame)
        self._next_frame = self._reader.next_frame
        self._max_frame = max_frame
        self._eof = False
        self._welcomed = False  # this side has sent its hello (client) or welcome (daemon)
        # the daemon's steady state, checked first on every frame: reading calls, writing answers
        self._serving = False  # daemon, open: the next frames are calls
        self._answering = False  # daemon, welcome sent and not closed: replies and pushes may go
        self._state = State.AWAITING_WELCOME
        self.state = State.AWAITING_HELLO if role is Role.DAEMON else State.AWAITING_WELCOME
        # client side: call ids
        self._next_id = 1
        self._unanswered: dict[int, bool] = {}  # calls without their reply or error -> long-lived?
        self._live: set[int] = set()  # long-lived calls that had their reply: pushes may come

    # -- state ----------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    @state.setter
    def state(self, state: State) -> None:
        self._state = state
        daemon = self.role is Role.DAEMON
        self._serving = daemon and state is State.OPEN
        self._answering = daemon and self._welcomed and state in (State.OPEN, State.BROKEN)

    @property
    def max_frame(self) -> int:
        return self._max_frame

    @property
    def buffered(self) -> int:
        """Bytes received that do not make a whole frame yet."""
        return self._reader.buffered

    @property
    def unanswered(self) -> int:
        """Client side: calls sent that have no reply or error yet."""
        return len(self._unanswered)

    def is_live(self, call_id: int) -> bool:
        """Client side: True for a long-lived call that had its reply (pushes may come)."""
        return call_id in self._live

    # -- receiving ------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Bytes from the peer; ``b""`` when it closed its side."""
        if data:
            if self._eof:
                raise LocalProtocolError("data received after the end of the stream")
            self._reader.feed(data)
        else:
            self._eof = True

    def next_event(self) -> Event | NeedData:
        """The next frame the peer sent, :data:`NEED_DATA`, or :class:`ConnectionClosed`."""
        if self._serving:
            try:
                frame = self._next_frame()
            except RemoteProtocolError:
                self.state = State.BROKEN
                raise
            if type(frame) is Call:
                return frame
        else:
            if self._state is State.BROKEN:
                raise RemoteProtocolError("the connection is broken")
            try:
                frame = self._next_frame()
            except RemoteProtocolError:
                self.state = State.BROKEN
                raise
        if frame is None:
            if not self._eof:
                return NEED_DATA
            if self._reader.buffered:
                self.state = State.BROKEN
                raise RemoteProtocolError(
                    f"connection closed in the middle of a frame ({self._reader.buffered} bytes)")
            self.state = State.CLOSED
            return ConnectionClosed()
        return self._received(frame)

    def _broken(self, message: str) -> RemoteProtocolError:
        self.state = State.BROKEN
        return RemoteProtocolError(message)

    def _received(self, frame: Frame) -> Frame:
        state = self.state
        kind = type(frame)
        if state is State.CLOSED:
            raise self._broken(f"{kind.__name__.lower()} frame after the connection was closed")
        if self.role is Role.DAEMON:
            if state is State.AWAITING_HELLO:
                if not isinstance(frame, Hello):
                    raise self._broken("the first frame must be a hello")
                if frame.version != PROTOCOL_VERSION:
                    raise self._broken(f"unsupported protocol version {frame.version}"
                                       f" ({self.name} speaks {PROTOCOL_VERSION})")
                self.state = State.OPEN
                return frame
            raise self._broken(f"unexpected {kind.__name__.lower()} frame from a client")
        # the client's side
        if isinstance(frame, Error) and frame.id is None:
            self.state = State.CLOSED  # the daemon closes after it (§6.2)
            return frame
        if state is State.AWAITING_WELCOME:
            if not isinstance(frame, Welcome):
                raise self._broken(f"expected a welcome frame, got {kind.__name__}")
            if frame.version != PROTOCOL_VERSION:
                raise self._broken(f"the daemon ({frame.server}) speaks protocol version {frame.version};"
                                   f" this client speaks {PROTOCOL_VERSION}")
            self.welcome = frame
            self._max_frame = self._reader.max_frame = frame.max_frame
            self.state = State.OPEN
            return frame
        if isinstance(frame, (Reply, Error)):
            call_id = frame.id
            long_lived = self._unanswered.pop(call_id, None) if call_id is not None else None
            if long_lived is None:
                if isinstance(frame, Error) and call_id in self._live:
                    return frame  # one push of a long-lived call was lost (§7.3): it stays open
                raise self._broken(f"{kind.__name__.lower()} for call {call_id}, which is not awaiting one")
            if long_lived and isinstance(frame, Reply):
                self._live.add(frame.id)
            return frame
        if isinstance(frame, Push):
            if frame.id not in self._live:
                raise self._broken(f"push for call {frame.id}, which is not open")
            return frame
        raise self._broken(f"unexpected {kind.__name__.lower()} frame from the daemon")

    # -- sending --------------------------------------------------------------

    def send(self, frame: Frame) -> bytes:
        """The bytes of ``frame``, checked against what this side may send now."""
        kind = type(frame)
        if self._answering and (kind is Reply or kind is Push):
            return encode(frame, self._max_frame)  # the daemon's steady state, first
        state = self.state
        if state is State.CLOSED:
            raise LocalProtocolError(f"cannot send a {kind.__name__.lower()} frame: the connection is closed")
        if self.role is Role.DAEMON:
            if isinstance(frame, Error) and frame.id is None:
                data = encode(frame, self._max_frame)
                self.state = State.CLOSED
                return data
            if not self._welcomed:
                if kind is not Welcome or state is not State.OPEN:
                    raise LocalProtocolError("the daemon's first frame must be a welcome, after the client's hello")
                data = encode(frame, self._max_frame)
                self._welcomed = True
                self.state = state  # (now answering)
                return data
            if kind not in _DAEMON_SENDS:
                raise LocalProtocolError(f"a daemon does not send {kind.__name__.lower()} frames")
            return encode(frame, self._max_frame)
        # the client's side
        if not self._welcomed:
            if kind is not Hello:
                raise LocalProtocolError("the client's first frame must be a hello")
            data = encode(frame, self._max_frame)
            self._welcomed = True
            return data
        if not isinstance(frame, Call):
            raise LocalProtocolError(f"a client sends only call frames after its hello, not {kind.__name__.lower()}")
        if frame.id in self._unanswered or frame.id in self._live:
            raise LocalProtocolError(f"call id {frame.id} is still in use")
        data = encode(frame, self._max_frame)
        self._unanswered[frame.id] = is_long_lived(frame.op, frame.args)
        if frame.id >= self._next_id:
            self._next_id = frame.id + 1
        return data

    def call(self, op: str, args: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """Client side: a call with the next free id; returns the id and the bytes to send."""
        call_id = self._next_id
        return call_id, self.send(Call(call_id, op, args or {}))


__all__ = ["NEED_DATA", "NeedData", "Connection", "ConnectionClosed", "Event", "Role", "State", "is_long_lived"]
