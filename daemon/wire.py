"""The theater wire protocol: frames in, bytes out, no I/O.

Theory of operation
-------------------
A connection carries *frames*.  On the wire each frame is a 4-byte unsigned
big-endian length ``N`` followed by exactly ``N`` bytes holding one CBOR map.
The map's ``"t"`` key names the frame type; the classes below are the only
frame types there are.  The full reference is ``docs/protocol.md``.

Invariants this module keeps:

* It never touches a socket, a file or trio: bytes go in through
  :meth:`FrameReader.feed`, frames come out of :meth:`FrameReader.next_frame`,
  and :func:`encode` turns a frame into bytes.  Both the daemon and the CLI
  import it; ``tests/test_wire.py`` proves it imports neither trio nor socket.
* The length prefix is checked against ``max_frame`` *before* any of the body
  is buffered, so a peer cannot make us allocate more than the cap.
* A body is decoded strictly: bounded nesting depth, definite lengths only,
  no CBOR tags (not even the "standard" ones), no duplicate map keys, only
  text or byte strings as map keys, and no trailing bytes after the map.
* After decoding, every field of every frame is type-checked, and a call's
  arguments are checked against :data:`OPS`.  Anything malformed raises
  :class:`RemoteProtocolError`; the reader is then poisoned (the stream can no
  longer be trusted) and every later call raises the same error.
* Misuse by our own side (encoding a frame with wrong field types) raises
  :class:`LocalProtocolError` instead, so bugs are not blamed on the peer.
"""

from __future__ import annotations

import io
import math
import struct
import threading
from collections.abc import Mapping
from typing import Any, Final, Iterator, Union

import cbor2

from .errors import ErrorCode, ProtocolError

PROTOCOL_VERSION: Final = 1
DEFAULT_MAX_FRAME: Final = 1 << 20  # 1 MiB
MAX_DEPTH: Final = 32
HEADER = struct.Struct(">I")


class RemoteProtocolError(ProtocolError):
    """The peer sent something that is not valid theater protocol."""


class LocalProtocolError(ProtocolError):
    """Our own side tried to send something invalid."""


# ---------------------------------------------------------------------------
# Frames
#
# Immutable value classes, written out by hand rather than with
# ``@dataclass(frozen=True, slots=True)``: the dataclass machinery costs every
# one-shot theaterctl command about 2.5 ms of import time (it compiles each
# class's methods at import), and a frozen dataclass's ``__init__`` assigns
# through ``object.__setattr__`` (0.42 us for a call frame against 0.26 us
# here, where each field is set through its slot's descriptor).  They behave
# as the dataclasses did: keyword or positional fields with the same defaults,
# equality and hashing by type and fields, the same ``repr``, and assignment
# raises ``FrozenFrameError`` (an ``AttributeError``).


class FrozenFrameError(AttributeError):
    """A frame's fields cannot be assigned or deleted."""


class _Frame:
    __slots__ = ()
    _fields: tuple[str, ...] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple([getattr(self, name) for name in self._fields])

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenFrameError(f"cannot assign to field {name!r} of a frame")

    def __delattr__(self, name: str) -> None:
        raise FrozenFrameError(f"cannot delete field {name!r} of a frame")

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            return self._values() == other._values()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__qualname__}({fields})"

    def __copy__(self) -> Any:
        return self

    def __reduce__(self) -> Any:
        return (type(self), self._values())


class Hello(_Frame):
    """Client -> daemon, first frame on a connection."""

    __slots__ = ("version", "client")
    _fields = __slots__
    version: int
    client: str

    def __init__(self, version: int, client: str = "") -> None:
        _set_hello_version(self, version)
        _set_hello_client(self, client)


class Welcome(_Frame):
    """Daemon -> client, answer to :class:`Hello`."""

    __slots__ = ("version", "server", "pid", "uid", "max_frame")
    _fields = __slots__
    version: int
    server: str
    pid: int
    uid: int
    max_frame: int  # the largest frame the daemon accepts

    def __init__(self, version: int, server: str, pid: int, uid: int, max_frame: int = DEFAULT_MAX_FRAME) -> None:
        _set_welcome_version(self, version)
        _set_welcome_server(self, server)
        _set_welcome_pid(self, pid)
        _set_welcome_uid(self, uid)
        _set_welcome_max_frame(self, max_frame)


class Call(_Frame):
    """Client -> daemon: run operation ``op`` with ``args``; ``id`` matches the answer.

    The reader checks the frame's shape only; the receiver checks ``args``
    against :data:`OPS` with :func:`check_args`, so that one bad call gets an
    error reply without breaking the connection.
    """

    __slots__ = ("id", "op", "args")
    _fields = __slots__
    id: int
    op: str
    args: dict[str, Any]

    def __init__(self, id: int, op: str, args: dict[str, Any] | None = None) -> None:
        _set_call_id(self, id)
        _set_call_op(self, op)
        _set_call_args(self, {} if args is None else args)


class Reply(_Frame):
    """Daemon -> client: call ``id`` succeeded with ``result``."""

    __slots__ = ("id", "result")
    _fields = __slots__
    id: int
    result: Any

    def __init__(self, id: int, result: Any = None) -> None:
        _set_reply_id(self, id)
        _set_reply_result(self, result)


class Error(_Frame):
    """Daemon -> client: call ``id`` failed (``id`` is None for connection-level errors)."""

    __slots__ = ("id", "code", "message")
    _fields = __slots__
    id: int | None
    code: int
    message: str

    def __init__(self, id: int | None, code: int, message: str) -> None:
        _set_error_id(self, id)
        _set_error_code(self, code)
        _set_error_message(self, message)


class Push(_Frame):
    """Daemon -> client: an event for a long-lived call (a channel session, a chain follow)."""

    __slots__ = ("id", "event", "data")
    _fields = __slots__
    id: int
    event: str
    data: dict[str, Any]

    def __init__(self, id: int, event: str, data: dict[str, Any] | None = None) -> None:
        _set_push_id(self, id)
        _set_push_event(self, event)
        _set_push_data(self, {} if data is None else data)


# each field set through its slot's descriptor (a frame's own __setattr__ refuses)
_set_hello_version, _set_hello_client = (Hello.__dict__[n].__set__ for n in Hello._fields)
_set_welcome_version, _set_welcome_server, _set_welcome_pid, _set_welcome_uid, _set_welcome_max_frame = (
    Welcome.__dict__[n].__set__ for n in Welcome._fields)
_set_call_id, _set_call_op, _set_call_args = (Call.__dict__[n].__set__ for n in Call._fields)
_set_reply_id, _set_reply_result = (Reply.__dict__[n].__set__ for n in Reply._fields)
_set_error_id, _set_error_code, _set_error_message = (Error.__dict__[n].__set__ for n in Error._fields)
_set_push_id, _set_push_event, _set_push_data = (Push.__dict__[n].__set__ for n in Push._fields)


Frame = Union[Hello, Welcome, Call, Reply, Error, Push]

# ---------------------------------------------------------------------------
# Operations: argument schemas, checked on receipt.  ``(type, required)``.

_Opt = tuple[tuple[type, ...], bool]
_STR = (str,)
_BYTES = (bytes,)
_INT = (int,)
_NUM = (int, float)

OPS: Final[dict[str, dict[str, _Opt]]] = {
    "status": {},
    "shutdown": {},
    "spawn": {"manifest": (_STR, True), "name": (_STR, False), "state": (_BYTES, False)},
    "list": {"all": ((bool,), False)},
    "stop": {"actor": (_STR, True)},
    "inspect": {"actor": (_STR, True), "events": (_INT, False)},
    "state": {"actor": (_STR, True)},
    "send": {"actor": (_STR, True), "msg": (_BYTES, True), "timeout": (_NUM, False)},
    "request": {"actor": (_STR, True), "msg": (_BYTES, True), "timeout": (_NUM, False)},
    "chain": {
        "actor": (_STR, True),
        "limit": (_INT, False),
        "type": (_STR, False),
        "since": (_NUM, False),
        "after": (_INT, False),
        "page": (_INT, False),
        "follow": ((bool,), False),
    },
    "event": {"actor": (_STR, True), "ref": (_STR, True)},
    "verify": {"actor": (_STR, True)},
    "export": {"actor": (_STR, True), "after": (_INT, False)},
    "channel-open": {"actor": (_STR, True), "msg": (_BYTES, True), "timeout": (_NUM, False)},
    "channel-send": {"channel": (_STR, True), "msg": (_BYTES, True)},
    "channel-close": {"channel": (_STR, True)},
    "channels": {},
    "dead-letters": {"actor": (_STR, False)},
    "dead-letter-retry": {"id": (_INT, True)},
    "dead-letter-drop": {"id": (_INT, True)},
    "logs": {"actor": (_STR, False), "lines": (_INT, False)},
    "restart": {"actor": (_STR, True)},
    "remove": {"actor": (_STR, True), "purge": ((bool,), False)},
    "prune": {"purge": ((bool,), False)},
}


_ARG_LIMIT = 1 << 53  # numbers in arguments: seqs, counts, seconds (and exact in a float)


def check_args(op: str, args: Mapping[str, Any]) -> None:
    """Raise :class:`RemoteProtocolError` unless ``args`` fit ``OPS[op]``."""
    schema = OPS.get(op)
    if schema is None:
        raise RemoteProtocolError(f"unknown operation {op!r}")
    for key, (types, required) in schema.items():
        if key not in args or args[key] is None:
            if required:
                raise RemoteProtocolError(f"{op}: missing argument {key!r}")
            continue
        value = args[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            want = " or ".join(t.__name__ for t in types)
            raise RemoteProtocolError(f"{op}: argument {key!r} must be {want}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not -_ARG_LIMIT < value < _ARG_LIMIT:
            if isinstance(value, float) and not math.isfinite(value):
                continue  # a well-formed frame: the operation refuses NaN and ±Inf as bad input (2)
            raise RemoteProtocolError(f"{op}: argument {key!r} is out of range")
    for key in args:
        if key not in schema:
            raise RemoteProtocolError(f"{op}: unknown argument {key!r}")


# ---------------------------------------------------------------------------
# Encoding


def _to_map(frame: Frame) -> dict[str, Any]:
    if isinstance(frame, Call):
        return {"t": "call", "id": frame.id, "op": frame.op, "args": frame.args}
    if isinstance(frame, Reply):
        return {"t": "reply", "id": frame.id, "result": frame.result}
    if isinstance(frame, Push):
        return {"t": "push", "id": frame.id, "event": frame.event, "data": frame.data}
    if isinstance(frame, Error):
        return {"t": "error", "id": frame.id, "code": int(frame.code), "message": frame.message}
    if isinstance(frame, Hello):
        return {"t": "hello", "version": frame.version, "client": frame.client}
    if isinstance(frame, Welcome):
        return {
            "t": "welcome",
            "version": frame.version,
            "server": frame.server,
            "pid": frame.pid,
            "uid": frame.uid,
            "max_frame": frame.max_frame,
        }
    raise LocalProtocolError(f"not a frame: {frame!r}")


_FIELD_TYPES: dict[type, dict[str, tuple[type, ...]]] = {
    Hello: {"version": _INT, "client": _STR},
    Welcome: {"version": _INT, "server": _STR, "pid": _INT, "uid": _INT, "max_frame": _INT},
    Call: {"id": _INT, "op": _STR, "args": (dict,)},
    Reply: {"id": _INT},
    Error: {"id": (int, type(None)), "code": _INT, "message": _STR},
    Push: {"id": _INT, "event": _STR, "data": (dict,)},
}
_INT_MIN, _INT_MAX = -(1 << 64), (1 << 64) - 1


def _check_outgoing(value: Any, budget: int, where: str) -> None:
    """What we send must pass the peer's strict decoder: plain values, text keys, 64-bit ints."""
    if isinstance(value, (str, bytes, bool, float, type(None))):
        return
    if isinstance(value, int):
        if not _INT_MIN <= value <= _INT_MAX:
            raise LocalProtocolError(f"{where}: integer {value} does not fit in 64 bits")
        return
    if budget <= 0:
        raise LocalProtocolError(f"{where}: nested deeper than {MAX_DEPTH}")
    if isinstance(value, (list, tuple)):
        for item in value:
            _check_outgoing(item, budget - 1, where)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise LocalProtocolError(f"{where}: map key {key!r} is not a text string")
            if type(item) not in _PLAIN_OUT:
                _check_outgoing(item, budget - 1, where)
        return
    raise LocalProtocolError(f"{where}: values of type {type(value).__name__} cannot be sent")


_PLAIN_OUT = frozenset((str, bytes, bool, float, type(None)))  # need no check (ints do: 64 bits)


def encode(frame: Frame, max_frame: int = DEFAULT_MAX_FRAME) -> bytes:
    """Serialise one frame, length prefix included.

    Raises :class:`LocalProtocolError` for a frame the peer would reject.
    """
    kind = type(frame)
    # the frames sent per message, when their fields are of the exact types: no walk of a
    # plain result or map of plain values (anything else takes the checked path below)
    if kind is Reply:
        call_id, result = frame.id, frame.result  # type: ignore[union-attr]
        if type(call_id) is int and 0 <= call_id <= _INT_MAX and type(result) in _PLAIN_OUT:
            return _framed({"t": "reply", "id": call_id, "result": result}, max_frame, kind)
    elif kind is Push or kind is Call:
        if kind is Push:
            call_id, name, mapping = frame.id, frame.event, frame.data  # type: ignore[union-attr]
        else:
            call_id, name, mapping = frame.id, frame.op, frame.args  # type: ignore[union-attr]
        if type(call_id) is int and 0 <= call_id <= _INT_MAX and type(name) is str and type(mapping) is dict \
                and _plain_map(mapping):
            if kind is Push:
                return _framed({"t": "push", "id": call_id, "event": name, "data": mapping}, max_frame, kind)
            return _framed({"t": "call", "id": call_id, "op": name, "args": mapping}, max_frame, kind)
    fields = _FIELD_TYPES.get(kind)
    if fields is None:
        raise LocalProtocolError(f"not a frame: {frame!r}")
    for name, types in fields.items():
        value = getattr(frame, name)
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise LocalProtocolError(f"{kind.__name__}.{name} has the wrong type ({type(value).__name__})")
    mapped = _to_map(frame)
    _check_outgoing(mapped, MAX_DEPTH, kind.__name__)
    return _framed(mapped, max_frame, kind)


def _plain_map(mapping: dict[str, Any]) -> bool:
    """True for a map of text keys to values that need no check (not even ints: 64 bits)."""
    for key, value in mapping.items():
        if type(key) is not str or type(value) not in _PLAIN_OUT:
            return False
    return True


def _framed(mapped: dict[str, Any], max_frame: int, kind: type) -> bytes:
    try:
        body = cbor2.dumps(mapped)
    except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
        raise LocalProtocolError(f"cannot encode {kind.__name__}: {exc}") from None
    if len(body) > max_frame:
        raise LocalProtocolError(f"frame of {len(body)} bytes exceeds the {max_frame}-byte limit")
    return HEADER.pack(len(body)) + body


# ---------------------------------------------------------------------------
# Decoding


def _reject_tag(decoder: object, tag: object = None) -> Any:
    raise cbor2.CBORDecodeError("CBOR tags are not allowed")


class _NoSemanticTags(Mapping[int, Any]):
    """Overrides every built-in CBOR semantic decoder with a rejection."""

    def __getitem__(self, key: int) -> Any:
        return _reject_tag

    def __contains__(self, key: object) -> bool:
        return True

    def get(self, key: int, default: Any = None) -> Any:
        return _reject_tag

    def __iter__(self) -> Iterator[int]:
        return iter(())

    def __len__(self) -> int:
        return 0


_NO_TAGS = _NoSemanticTags()


_local = threading.local()  # one configured decoder per thread, reused frame after frame


def _decoder(max_depth: int) -> cbor2.CBORDecoder:
    cache: dict[int, cbor2.CBORDecoder] | None = getattr(_local, "decoders", None)
    if cache is None:
        cache = _local.decoders = {}
    decoder = cache.get(max_depth)
    if decoder is None:
        decoder = cache[max_depth] = _new_decoder(max_depth)
    return decoder


def _new_decoder(max_depth: int) -> cbor2.CBORDecoder:
    """A strict decoder: no tags, bounded depth, definite lengths, no duplicate keys."""
    return cbor2.CBORDecoder(
        io.BytesIO(b""),
        tag_hook=_reject_tag,
        semantic_decoders=_NO_TAGS,
        max_depth=max_depth,
        allow_indefinite=False,
        allow_duplicate_keys=False,
        strict_hashable_types=True,
    )


def decode_body(body: bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Strictly decode one CBOR item that must fill ``body`` exactly."""
    stream = io.BytesIO(body)
    decoder = _decoder(max_depth)
    decoder.fp = stream
    try:
        value = decoder.decode()
    except RecursionError:
        _local.decoders.pop(max_depth, None)  # never reuse a decoder an error left midway
        raise RemoteProtocolError("CBOR nesting too deep") from None
    except (cbor2.CBORError, ValueError, TypeError, OverflowError, UnicodeError, EOFError) as exc:
        _local.decoders.pop(max_depth, None)
        raise RemoteProtocolError(f"malformed CBOR: {exc}") from None
    if stream.tell() != len(body):
        raise RemoteProtocolError(f"{len(body) - stream.tell()} trailing bytes after the CBOR item")
    _check_values(value, max_depth)
    return value


_SCALARS = (str, bytes, int, float, bool, type(None))
_SCALAR_TYPES = frozenset(_SCALARS)  # exactly these: the decoder builds no subclasses of them


def _check_values(value: Any, budget: int) -> None:
    """Only maps with text keys, arrays and plain scalars are allowed."""
    kind = type(value)
    if kind in _SCALAR_TYPES:
        return
    if budget <= 0:
        raise RemoteProtocolError("CBOR nesting too deep")
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise RemoteProtocolError("map keys must be text strings")
            if type(item) not in _SCALAR_TYPES:
                _check_values(item, budget - 1)
        return
    if kind is list:
        for item in value:
            if type(item) not in _SCALAR_TYPES:
                _check_values(item, budget - 1)
        return
    raise RemoteProtocolError(f"CBOR value of type {kind.__name__} is not allowed")


def _field(m: dict[str, Any], key: str, types: tuple[type, ...], kind: str, optional: bool = False) -> Any:
    if key not in m or (optional and m[key] is None):
        if optional:
            return None
        raise RemoteProtocolError(f"{kind} frame: missing field {key!r}")
    value = m[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise RemoteProtocolError(f"{kind} frame: field {key!r} has the wrong type")
    return value


def frame_from_map(m: Any) -> Frame:
    """Build and type-check a frame from a decoded CBOR map."""
    if not isinstance(m, dict):
        raise RemoteProtocolError("a frame must be a CBOR map")
    kind = m.get("t")
    # the frames read per message, well-formed (decoded CBOR ints and texts are exact types)
    if kind == "call":
        call_id, op, args = m.get("id"), m.get("op"), m.get("args")
        if type(call_id) is int and type(op) is str and type(args) is dict:
            return Call(call_id, op, args)
    elif kind == "push":
        call_id, event, data = m.get("id"), m.get("event"), m.get("data")
        if type(call_id) is int and type(event) is str and type(data) is dict:
            return Push(call_id, event, data)
    elif kind == "reply":
        call_id = m.get("id")
        if type(call_id) is int:
            return Reply(call_id, m.get("result"))
    return _checked_frame(m, kind)


def _checked_frame(m: dict[str, Any], kind: Any) -> Frame:
    if kind == "call":
        op = _field(m, "op", _STR, kind)
        args = m.get("args", {})
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise RemoteProtocolError("call frame: field 'args' has the wrong type")
        return Call(_field(m, "id", _INT, kind), op, args)
    if kind == "reply":
        return Reply(_field(m, "id", _INT, kind), m.get("result"))
    if kind == "push":
        data = _field(m, "data", (dict,), kind)
        return Push(_field(m, "id", _INT, kind), _field(m, "event", _STR, kind), data)
    if kind == "error":
        return Error(
            _field(m, "id", _INT, kind, optional=True),
            _field(m, "code", _INT, kind),
            _field(m, "message", _STR, kind),
        )
    if kind == "hello":
        client = _field(m, "client", _STR, kind, optional=True) or ""
        return Hello(_field(m, "version", _INT, kind), client)
    if kind == "welcome":
        return Welcome(
            _field(m, "version", _INT, kind),
            _field(m, "server", _STR, kind),
            _field(m, "pid", _INT, kind),
            _field(m, "uid", _INT, kind),
            _field(m, "max_frame", _INT, kind, optional=True) or DEFAULT_MAX_FRAME,
        )
    raise RemoteProtocolError(f"unknown frame type {kind!r}")


class FrameReader:
    """Incremental frame parser: ``feed`` bytes, then ``next_frame`` until None.

    ``next_frame`` returns None when it needs more data.  After a
    :class:`RemoteProtocolError` the reader stays broken.
    """

    __slots__ = ("_buf", "_max_frame", "_max_depth", "_broken", "_decoder")

    def __init__(self, max_frame: int = DEFAULT_MAX_FRAME, max_depth: int = MAX_DEPTH) -> None:
        self._buf = bytearray()
        self._max_frame = max_frame
        self._max_depth = max_depth
        self._broken: RemoteProtocolError | None = None
        # its own decoder (a reader is read by one thread at a time), made on the first frame
        self._decoder: cbor2.CBORDecoder | None = None

    @property
    def max_frame(self) -> int:
        return self._max_frame

    @max_frame.setter
    def max_frame(self, value: int) -> None:
        self._max_frame = value

    def feed(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as frames (a partial frame)."""
        return len(self._buf)

    def next_frame(self) -> Frame | None:
        if self._broken is not None:
            raise self._broken
        buf = self._buf
        if len(buf) < 4:
            return None
        (length,) = HEADER.unpack_from(buf)
        if length > self._max_frame:
            self._broken = RemoteProtocolError(
                f"frame of {length} bytes exceeds the {self._max_frame}-byte limit"
            )
            raise self._broken
        if len(buf) < 4 + length:
            return None
        body = bytes(buf[4 : 4 + length])
        del buf[: 4 + length]
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = _new_decoder(self._max_depth)
        stream = io.BytesIO(body)
        decoder.fp = stream
        try:
            try:
                value = decoder.decode()
            except RecursionError:
                raise RemoteProtocolError("CBOR nesting too deep") from None
            except (cbor2.CBORError, ValueError, TypeError, OverflowError, UnicodeError, EOFError) as exc:
                raise RemoteProtocolError(f"malformed CBOR: {exc}") from None
            if stream.tell() != length:
                raise RemoteProtocolError(f"{length - stream.tell()} trailing bytes after the CBOR item")
            _check_values(value, self._max_depth)
            return frame_from_map(value)
        except RemoteProtocolError as exc:
            self._broken = exc  # (and its decoder, perhaps left midway, is never used again)
            raise

    def frames(self) -> Iterator[Frame]:
        """Every complete frame buffered so far."""
        while (frame := self.next_frame()) is not None:
            yield frame


def error_frame(call_id: int | None, exc: BaseException) -> Error:
    """The wire form of a domain error."""
    code = getattr(exc, "code", ErrorCode.INTERNAL)
    return Error(call_id, int(code), str(exc) or type(exc).__name__)
