"""The sans-IO wire protocol: framing, strict CBOR decoding, frame and argument checks."""

from __future__ import annotations

import datetime as dt
import json
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import cbor2
import pytest

from daemon.errors import BadInput, ErrorCode, NotFound, ProtocolError
from daemon.wire import (
    DEFAULT_MAX_FRAME,
    MAX_DEPTH,
    OPS,
    PROTOCOL_VERSION,
    Call,
    Error,
    FrameReader,
    Hello,
    LocalProtocolError,
    Push,
    RemoteProtocolError,
    Reply,
    Welcome,
    check_args,
    decode_body,
    encode,
    error_frame,
    frame_from_map,
)

import daemon.wire as wire_module  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------
# helpers


def framed(body: bytes) -> bytes:
    """A 4-byte big-endian length prefix followed by ``body`` (built by hand)."""
    return struct.pack(">I", len(body)) + body


def c(value: Any) -> bytes:
    """CBOR for one item (used to hand-assemble maps cbor2 would refuse to emit)."""
    return cbor2.dumps(value)


def read_all(data: bytes, **kwargs: Any) -> list[Any]:
    reader = FrameReader(**kwargs)
    reader.feed(data)
    return list(reader.frames())


def reject(body: bytes, **kwargs: Any) -> RemoteProtocolError:
    """Feed one framed body; it must be rejected as a remote protocol error."""
    reader = FrameReader(**kwargs)
    reader.feed(framed(body))
    with pytest.raises(RemoteProtocolError) as info:
        reader.next_frame()
    return info.value


# Every frame type, with the exact CBOR map the protocol says it travels as.
FRAMES: list[tuple[Any, dict[str, Any]]] = [
    (Hello(1, "theaterctl/0.1"), {"t": "hello", "version": 1, "client": "theaterctl/0.1"}),
    (Hello(PROTOCOL_VERSION), {"t": "hello", "version": 1, "client": ""}),
    (
        Welcome(1, "theaterd/0.1", 4242, 1000, 2048),
        {"t": "welcome", "version": 1, "server": "theaterd/0.1", "pid": 4242, "uid": 1000, "max_frame": 2048},
    ),
    (Call(1, "status"), {"t": "call", "id": 1, "op": "status", "args": {}}),
    (
        Call(2**32 + 7, "spawn", {"manifest": "/tmp/m.toml", "name": "counter", "state": b"\x00\xff"}),
        {
            "t": "call",
            "id": 2**32 + 7,
            "op": "spawn",
            "args": {"manifest": "/tmp/m.toml", "name": "counter", "state": b"\x00\xff"},
        },
    ),
    (Reply(3), {"t": "reply", "id": 3, "result": None}),
    (
        Reply(4, {"list": [1, -2, 2.5, "x", b"y", True, False, None], "nested": {"k": {"z": []}}}),
        {
            "t": "reply",
            "id": 4,
            "result": {"list": [1, -2, 2.5, "x", b"y", True, False, None], "nested": {"k": {"z": []}}},
        },
    ),
    (Reply(5, "caf\u00e9 \U0001f3ad"), {"t": "reply", "id": 5, "result": "caf\u00e9 \U0001f3ad"}),
    (Error(None, 76, "bad frame"), {"t": "error", "id": None, "code": 76, "message": "bad frame"}),
    (Error(6, 3, "no such actor"), {"t": "error", "id": 6, "code": 3, "message": "no such actor"}),
    (Push(7, "message", {"payload": b"\x01\x02", "n": 1}), {"t": "push", "id": 7, "event": "message", "data": {"payload": b"\x01\x02", "n": 1}}),
    (Push(8, "closed"), {"t": "push", "id": 8, "event": "closed", "data": {}}),
]
FRAME_IDS = [f"{type(f).__name__}-{i}" for i, (f, _) in enumerate(FRAMES)]


# ---------------------------------------------------------------------------
# encoding and round trips


@pytest.mark.parametrize(("frame", "wire_map"), FRAMES, ids=FRAME_IDS)
def test_encode_layout(frame: Any, wire_map: dict[str, Any]) -> None:
    data = encode(frame)
    (length,) = struct.unpack(">I", data[:4])
    assert length == len(data) - 4
    assert cbor2.loads(data[4:]) == wire_map


@pytest.mark.parametrize(("frame", "wire_map"), FRAMES, ids=FRAME_IDS)
def test_round_trip_each_frame(frame: Any, wire_map: dict[str, Any]) -> None:
    reader = FrameReader()
    reader.feed(encode(frame))
    got = reader.next_frame()
    assert got == frame
    assert type(got) is type(frame)
    assert reader.next_frame() is None
    assert reader.buffered == 0


@pytest.mark.parametrize(("frame", "wire_map"), FRAMES, ids=FRAME_IDS)
def test_hand_built_map_decodes_to_frame(frame: Any, wire_map: dict[str, Any]) -> None:
    reader = FrameReader()
    reader.feed(framed(cbor2.dumps(wire_map)))
    assert reader.next_frame() == frame


def test_error_frame_code_is_sent_as_plain_int() -> None:
    data = encode(Error(1, ErrorCode.NOT_FOUND, "x"))
    raw = cbor2.loads(data[4:])
    assert raw["code"] == 3 and type(raw["code"]) is int
    got = read_all(data)
    assert got == [Error(1, 3, "x")]


def test_bytes_fed_one_at_a_time() -> None:
    frames = [f for f, _ in FRAMES]
    data = b"".join(encode(f) for f in frames)
    boundaries = set()
    pos = 0
    for f in frames:
        pos += len(encode(f))
        boundaries.add(pos)

    reader = FrameReader()
    got: list[Any] = []
    for i in range(len(data)):
        reader.feed(data[i : i + 1])
        frame = reader.next_frame()
        if i + 1 in boundaries:
            assert frame is not None, f"frame should complete at byte {i + 1}"
            got.append(frame)
            assert reader.buffered == 0
        else:
            assert frame is None, f"no frame should complete at byte {i + 1}"
            assert reader.buffered > 0
        assert reader.next_frame() is None
    assert got == frames


def test_several_frames_in_one_feed() -> None:
    frames = [f for f, _ in FRAMES]
    reader = FrameReader()
    reader.feed(b"".join(encode(f) for f in frames))
    assert list(reader.frames()) == frames
    assert reader.buffered == 0
    assert reader.next_frame() is None


def test_several_frames_plus_a_partial_one() -> None:
    a, b, last = encode(Call(1, "status")), encode(Reply(1, 5)), encode(Push(2, "e", {"k": "v"}))
    reader = FrameReader()
    reader.feed(a + b + last[:-3])
    assert list(reader.frames()) == [Call(1, "status"), Reply(1, 5)]
    assert reader.buffered == len(last) - 3
    reader.feed(last[-3:])
    assert list(reader.frames()) == [Push(2, "e", {"k": "v"})]


@pytest.mark.parametrize("cut", [0, 1, 2, 3, 4, 5])
def test_truncated_frame_needs_more_data(cut: int) -> None:
    data = encode(Reply(9, {"k": "value"}))
    keep = len(data) - 1 if cut == 5 else cut
    reader = FrameReader()
    reader.feed(data[:keep])
    assert reader.next_frame() is None
    assert reader.next_frame() is None  # still waiting, not broken
    assert reader.buffered == keep
    reader.feed(data[keep:])
    assert reader.next_frame() == Reply(9, {"k": "value"})


def test_empty_reader_needs_data() -> None:
    reader = FrameReader()
    assert reader.next_frame() is None
    assert list(reader.frames()) == []
    reader.feed(b"")
    assert reader.next_frame() is None


# ---------------------------------------------------------------------------
# the size cap


def test_oversized_length_rejected_before_body_arrives() -> None:
    reader = FrameReader(max_frame=1024)
    reader.feed(struct.pack(">I", 1025))  # only the header
    with pytest.raises(RemoteProtocolError):
        reader.next_frame()


def test_huge_length_rejected_with_default_cap() -> None:
    reader = FrameReader()
    reader.feed(b"\xff\xff\xff\xff")
    with pytest.raises(RemoteProtocolError):
        reader.next_frame()
    reader2 = FrameReader()
    reader2.feed(struct.pack(">I", DEFAULT_MAX_FRAME + 1))
    with pytest.raises(RemoteProtocolError):
        reader2.next_frame()


def test_length_at_cap_waits_for_body() -> None:
    reader = FrameReader(max_frame=1024)
    reader.feed(struct.pack(">I", 1024))
    assert reader.next_frame() is None  # exactly the cap is allowed


def test_frame_exactly_at_cap_round_trips_and_one_more_byte_does_not() -> None:
    # Reply(1, b"x"*n): find n so that the body is exactly 200 bytes.
    cap = 200
    base = len(encode(Reply(1, b""))) - 4
    # bytes of length 24..255 take a 2-byte header instead of 1.
    n = cap - base - 1
    frame = Reply(1, b"x" * n)
    data = encode(frame, max_frame=cap)
    assert len(data) == 4 + cap
    assert read_all(data, max_frame=cap) == [frame]
    # One byte larger: both the encoder and the reader refuse.
    bigger = Reply(1, b"x" * (n + 1))
    with pytest.raises(LocalProtocolError):
        encode(bigger, max_frame=cap)
    with pytest.raises(RemoteProtocolError):
        read_all(encode(bigger), max_frame=cap)


def test_encode_refuses_frame_bigger_than_max_frame() -> None:
    with pytest.raises(LocalProtocolError):
        encode(Reply(1, b"\x00" * 100), max_frame=50)
    with pytest.raises(LocalProtocolError):
        encode(Reply(1, b"\x00" * DEFAULT_MAX_FRAME))


def test_encode_refuses_unencodable_values() -> None:
    with pytest.raises(LocalProtocolError):
        encode(Reply(1, object()))
    with pytest.raises(LocalProtocolError):
        encode(Call(1, "send", {"actor": "a", "msg": object()}))
    with pytest.raises(LocalProtocolError):
        encode(Push(1, "e", {"k": lambda: None}))


def test_encode_refuses_non_frames() -> None:
    with pytest.raises(LocalProtocolError):
        encode({"t": "reply", "id": 1})  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        encode(None)  # type: ignore[arg-type]


def test_local_and_remote_errors_are_distinct_protocol_errors() -> None:
    assert issubclass(LocalProtocolError, ProtocolError)
    assert issubclass(RemoteProtocolError, ProtocolError)
    assert not issubclass(LocalProtocolError, RemoteProtocolError)
    assert not issubclass(RemoteProtocolError, LocalProtocolError)
    assert RemoteProtocolError("x").code == ErrorCode.PROTOCOL == 76


# The module docstring promises: "Misuse by our own side (encoding a frame
# with wrong field types) raises LocalProtocolError instead, so bugs are not
# blamed on the peer."  Every frame below is something our own reader rejects.
WRONGLY_TYPED = [
    Call("1", "status"),  # type: ignore[arg-type]
    Call(True, "status"),
    Call(1, 5),  # type: ignore[arg-type]
    Call(1, "status", ["not", "a", "map"]),  # type: ignore[arg-type]
    Reply("1"),  # type: ignore[arg-type]
    Error("1", 3, "m"),  # type: ignore[arg-type]
    Error(1, 3, b"m"),  # type: ignore[arg-type]
    Push(1, 2, {}),  # type: ignore[arg-type]
    Push(1, "e", [1]),  # type: ignore[arg-type]
    Hello("1"),  # type: ignore[arg-type]
    Hello(1, 2),  # type: ignore[arg-type]
    Welcome(1, "s", "pid", 0),  # type: ignore[arg-type]
    Welcome(1, None, 1, 0),  # type: ignore[arg-type]
]


@pytest.mark.parametrize("frame", WRONGLY_TYPED, ids=repr)
def test_our_reader_rejects_wrongly_typed_frames(frame: Any) -> None:
    # Sanity check of the premise: on the wire, these frames are not valid protocol.
    wire_map: dict[str, Any]
    if isinstance(frame, Call):
        wire_map = {"t": "call", "id": frame.id, "op": frame.op, "args": frame.args}
    elif isinstance(frame, Reply):
        wire_map = {"t": "reply", "id": frame.id, "result": frame.result}
    elif isinstance(frame, Error):
        wire_map = {"t": "error", "id": frame.id, "code": frame.code, "message": frame.message}
    elif isinstance(frame, Push):
        wire_map = {"t": "push", "id": frame.id, "event": frame.event, "data": frame.data}
    elif isinstance(frame, Hello):
        wire_map = {"t": "hello", "version": frame.version, "client": frame.client}
    else:
        wire_map = {"t": "welcome", "version": frame.version, "server": frame.server, "pid": frame.pid, "uid": frame.uid}
    reject(cbor2.dumps(wire_map))


@pytest.mark.parametrize("frame", WRONGLY_TYPED, ids=repr)
def test_encode_refuses_wrongly_typed_frames(frame: Any) -> None:
    with pytest.raises(LocalProtocolError):
        encode(frame)


# Values cbor2 happily encodes but our strict reader rejects (tags, non-text
# keys).  If encode() emits them the *peer* gets the blame and the connection
# is poisoned; the documented contract is that our side refuses instead.
UNSENDABLE_RESULTS = [
    dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),  # tag 0
    {1: "int key"},
    {b"k": "bytes key"},
    2**64,  # bignum, tag 2
]


@pytest.mark.parametrize("result", UNSENDABLE_RESULTS, ids=repr)
def test_encode_never_emits_what_our_reader_rejects(result: Any) -> None:
    frame = Reply(1, result)
    try:
        data = encode(frame)
    except LocalProtocolError:
        return
    assert read_all(data) == [frame]


def test_largest_plain_integers_round_trip() -> None:
    for value in (2**64 - 1, -(2**64), 0, -1, 23, 24, 255, 256, 65535, 65536):
        assert read_all(encode(Reply(1, value))) == [Reply(1, value)]


# ---------------------------------------------------------------------------
# the reader stays broken


def test_reader_stays_broken_after_oversize() -> None:
    reader = FrameReader(max_frame=64)
    reader.feed(struct.pack(">I", 65))
    with pytest.raises(RemoteProtocolError) as first:
        reader.next_frame()
    reader.feed(encode(Call(1, "status")))
    for _ in range(3):
        with pytest.raises(RemoteProtocolError) as again:
            reader.next_frame()
        assert again.value is first.value
    with pytest.raises(RemoteProtocolError):
        list(reader.frames())


def test_reader_stays_broken_after_bad_body() -> None:
    good = encode(Call(1, "status"))
    reader = FrameReader()
    reader.feed(good + framed(cbor2.dumps([1, 2])) + good)
    assert reader.next_frame() == Call(1, "status")
    with pytest.raises(RemoteProtocolError) as first:
        reader.next_frame()
    # The following frame is perfectly valid, but the stream can't be trusted.
    with pytest.raises(RemoteProtocolError) as again:
        reader.next_frame()
    assert again.value is first.value
    reader.feed(good)
    with pytest.raises(RemoteProtocolError):
        reader.next_frame()


def test_frames_iterator_raises_at_the_bad_frame() -> None:
    good = encode(Reply(1, 1))
    reader = FrameReader()
    reader.feed(good + good + framed(b"\xff"))
    it = reader.frames()
    assert next(it) == Reply(1, 1)
    assert next(it) == Reply(1, 1)
    with pytest.raises(RemoteProtocolError):
        next(it)


# ---------------------------------------------------------------------------
# strict decoding

REPLY_PREFIX = b"\xa3" + c("t") + c("reply") + c("id") + c(1) + c("result")  # map(3), 2.5 pairs


def test_reply_prefix_helper_is_sound() -> None:
    assert read_all(framed(REPLY_PREFIX + c([1]))) == [Reply(1, [1])]


@pytest.mark.parametrize(
    "body",
    [
        cbor2.dumps(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)),  # tag 0
        cbor2.dumps(cbor2.CBORTag(999, 1)),
        cbor2.dumps(cbor2.CBORTag(999, {"t": "reply", "id": 1})),  # a tagged, otherwise valid frame
        b"\xd9\xd9\xf7" + cbor2.dumps({"t": "reply", "id": 1}),  # self-described CBOR, tag 55799
        REPLY_PREFIX + cbor2.dumps(dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)),
        REPLY_PREFIX + cbor2.dumps(cbor2.CBORTag(999, 1)),
        REPLY_PREFIX + b"\xc2\x49\x01" + b"\x00" * 8,  # bignum 2**64 (tag 2)
        REPLY_PREFIX + b"\xc1\x1a\x65\x53\xf1\x00",  # epoch datetime (tag 1)
        REPLY_PREFIX + cbor2.dumps({1, 2}),  # tag 258
    ],
    ids=["datetime", "tag999", "tagged-frame", "self-describe", "nested-datetime", "nested-tag999",
         "bignum", "epoch", "set"],
)
def test_rejects_cbor_tags(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_body(body)
    reject(body)


@pytest.mark.parametrize(
    "body",
    [
        b"\x9f\x01\xff",  # indefinite array
        b"\xbf" + c("t") + c("reply") + c("id") + c(1) + b"\xff",  # indefinite map frame
        REPLY_PREFIX + b"\x9f\x01\x02\xff",
        REPLY_PREFIX + b"\xbf\xff",
        REPLY_PREFIX + b"\x7f\x61a\x61b\xff",  # indefinite text string
        REPLY_PREFIX + b"\x5f\x41a\x41b\xff",  # indefinite byte string
    ],
    ids=["array", "map-frame", "nested-array", "nested-map", "text", "bytes"],
)
def test_rejects_indefinite_lengths(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_body(body)
    reject(body)


@pytest.mark.parametrize(
    "body",
    [
        b"\xa3" + c("t") + c("reply") + c("id") + c(1) + c("id") + c(2),
        b"\xa3" + c("t") + c("reply") + c("t") + c("reply") + c("id") + c(1),
        REPLY_PREFIX + b"\xa2" + c("k") + c(1) + c("k") + c(1),  # same key, same value, nested
    ],
    ids=["id-twice", "t-twice", "nested"],
)
def test_rejects_duplicate_map_keys(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_body(body)
    reject(body)


@pytest.mark.parametrize(
    "body",
    [
        b"\xa3" + c("t") + c("reply") + c("id") + c(1) + c(5) + c(1),  # int key
        b"\xa2" + c("t") + c("reply") + c(b"id") + c(1),  # bytes key
        REPLY_PREFIX + b"\xa1" + c(1) + c(2),
        REPLY_PREFIX + b"\xa1" + c(b"k") + c(2),
        REPLY_PREFIX + b"\xa1" + c(1.5) + c(2),
        REPLY_PREFIX + b"\xa1" + c(None) + c(2),
        REPLY_PREFIX + b"\xa1" + c(True) + c(2),
        REPLY_PREFIX + b"\xa1\x81\x01" + c(2),  # array key
        REPLY_PREFIX + b"\xa1\xa0" + c(2),  # map key
    ],
    ids=["int", "bytes", "nested-int", "nested-bytes", "float", "null", "bool", "array", "map"],
)
def test_rejects_non_text_map_keys(body: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_body(body)
    reject(body)


@pytest.mark.parametrize(
    "tail",
    [b"\x00", b"\xf6", cbor2.dumps({"t": "reply", "id": 2}), b"\xff"],
    ids=["zero", "null", "second-map", "break"],
)
def test_rejects_trailing_bytes(tail: bytes) -> None:
    body = cbor2.dumps({"t": "reply", "id": 1}) + tail
    with pytest.raises(RemoteProtocolError):
        decode_body(body)
    reject(body)


def nested_lists(levels: int) -> bytes:
    return b"\x81" * levels + b"\x01"


def nested_maps(levels: int) -> bytes:
    return (b"\xa1" + c("k")) * levels + b"\x01"


@pytest.mark.parametrize("builder", [nested_lists, nested_maps], ids=["lists", "maps"])
def test_nesting_depth_limit(builder: Any) -> None:
    # The frame map is one container; the result adds ``levels`` more.
    ok = REPLY_PREFIX + builder(MAX_DEPTH - 1)
    assert decode_body(ok)["t"] == "reply"
    assert len(read_all(framed(ok))) == 1
    too_deep = REPLY_PREFIX + builder(MAX_DEPTH)
    with pytest.raises(RemoteProtocolError):
        decode_body(too_deep)
    reject(too_deep)
    # A bare item nested deeper than MAX_DEPTH.
    with pytest.raises(RemoteProtocolError):
        decode_body(builder(MAX_DEPTH + 1))
    assert decode_body(builder(MAX_DEPTH)) is not None


def test_very_deep_nesting_is_a_protocol_error_not_a_crash() -> None:
    with pytest.raises(RemoteProtocolError):
        decode_body(b"\x81" * 100_000 + b"\x01")
    reject(REPLY_PREFIX + b"\x81" * 100_000 + b"\x01")


def test_reader_custom_depth() -> None:
    assert read_all(framed(REPLY_PREFIX + nested_lists(3)), max_depth=4) == [Reply(1, [[[1]]])]
    reject(REPLY_PREFIX + nested_lists(4), max_depth=4)


def test_encoded_deep_python_value_is_checked_too() -> None:
    value: Any = 1
    for _ in range(MAX_DEPTH):
        value = [value]
    reject(cbor2.dumps({"t": "reply", "id": 1, "result": value}))


@pytest.mark.parametrize(
    "body",
    [
        c([{"t": "reply", "id": 1}]),
        c("reply"),
        c(1),
        c(None),
        c(b"\xa2"),
        c(True),
        c(1.5),
        c([]),
    ],
    ids=["array", "text", "int", "null", "bytes", "bool", "float", "empty-array"],
)
def test_rejects_non_map_frames(body: bytes) -> None:
    reject(body)
    with pytest.raises(RemoteProtocolError):
        frame_from_map(decode_body(body))


@pytest.mark.parametrize(
    "body",
    [b"", b"\xa2", b"\x1b\x00", b"\x62a", b"\x62\xff\xfe", b"\x1c", b"\xf8\x10", b"\xf7", b"\xf0"],
    ids=["empty", "truncated-map", "truncated-int", "truncated-text", "bad-utf8", "reserved-ai",
         "simple-16", "undefined", "simple-16-short"],
)
def test_rejects_malformed_cbor(body: bytes) -> None:
    reject(body)


@pytest.mark.parametrize(
    "kind",
    ["bogus", "Call", "CALL", "", "calls", 1, None, b"call", ["call"]],
    ids=repr,
)
def test_rejects_unknown_frame_type(kind: Any) -> None:
    reject(c({"t": kind, "id": 1, "op": "status"}))


def test_rejects_missing_frame_type() -> None:
    reject(c({"id": 1, "op": "status", "args": {}}))
    reject(c({}))


BAD_FIELDS = [
    # call
    {"t": "call", "op": "status"},
    {"t": "call", "id": None, "op": "status"},
    {"t": "call", "id": "1", "op": "status"},
    {"t": "call", "id": True, "op": "status"},
    {"t": "call", "id": 1.0, "op": "status"},
    {"t": "call", "id": 1},
    {"t": "call", "id": 1, "op": 5},
    {"t": "call", "id": 1, "op": b"status"},
    {"t": "call", "id": 1, "op": "status", "args": []},
    {"t": "call", "id": 1, "op": "status", "args": "x"},
    # reply
    {"t": "reply", "result": 1},
    {"t": "reply", "id": None},
    {"t": "reply", "id": False},
    # push
    {"t": "push", "id": 1, "event": "e"},
    {"t": "push", "id": 1, "event": "e", "data": None},
    {"t": "push", "id": 1, "event": "e", "data": [1]},
    {"t": "push", "id": 1, "data": {}},
    {"t": "push", "id": 1, "event": b"e", "data": {}},
    {"t": "push", "event": "e", "data": {}},
    # error
    {"t": "error", "id": 1, "message": "m"},
    {"t": "error", "id": 1, "code": "3", "message": "m"},
    {"t": "error", "id": 1, "code": True, "message": "m"},
    {"t": "error", "id": 1, "code": 3},
    {"t": "error", "id": 1, "code": 3, "message": None},
    {"t": "error", "id": 1, "code": 3, "message": b"m"},
    {"t": "error", "id": "1", "code": 3, "message": "m"},
    # hello
    {"t": "hello"},
    {"t": "hello", "version": "1"},
    {"t": "hello", "version": True},
    {"t": "hello", "version": 1.0},
    {"t": "hello", "version": 1, "client": 7},
    {"t": "hello", "version": 1, "client": b"c"},
    # welcome
    {"t": "welcome", "server": "s", "pid": 1, "uid": 0},
    {"t": "welcome", "version": 1, "pid": 1, "uid": 0},
    {"t": "welcome", "version": 1, "server": "s", "uid": 0},
    {"t": "welcome", "version": 1, "server": "s", "pid": 1},
    {"t": "welcome", "version": 1, "server": "s", "pid": "1", "uid": 0},
    {"t": "welcome", "version": 1, "server": 3, "pid": 1, "uid": 0},
    {"t": "welcome", "version": 1, "server": "s", "pid": 1, "uid": None},
    {"t": "welcome", "version": 1, "server": "s", "pid": 1, "uid": False},
]


@pytest.mark.parametrize("wire_map", BAD_FIELDS, ids=[json.dumps(m, default=repr) for m in BAD_FIELDS])
def test_rejects_missing_or_mistyped_fields(wire_map: dict[str, Any]) -> None:
    reject(c(wire_map))
    with pytest.raises(RemoteProtocolError):
        frame_from_map(wire_map)


@pytest.mark.parametrize(
    ("wire_map", "frame"),
    [
        ({"t": "call", "id": 1, "op": "status"}, Call(1, "status", {})),
        ({"t": "call", "id": 1, "op": "status", "args": None}, Call(1, "status", {})),
        ({"t": "reply", "id": 1}, Reply(1, None)),
        ({"t": "error", "code": 76, "message": "m"}, Error(None, 76, "m")),
        ({"t": "error", "id": None, "code": 76, "message": "m"}, Error(None, 76, "m")),
        ({"t": "hello", "version": 1}, Hello(1, "")),
        ({"t": "hello", "version": 1, "client": None}, Hello(1, "")),
        ({"t": "call", "id": -5, "op": "not-an-op", "args": {"x": 1}}, Call(-5, "not-an-op", {"x": 1})),
    ],
    ids=["no-args", "null-args", "no-result", "no-error-id", "null-error-id", "no-client", "null-client",
         "op-unchecked-by-reader"],
)
def test_optional_fields_have_defaults(wire_map: dict[str, Any], frame: Any) -> None:
    assert read_all(framed(c(wire_map))) == [frame]


# ---------------------------------------------------------------------------
# check_args


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("status", {}),
        ("shutdown", {}),
        ("channels", {}),
        ("spawn", {"manifest": "m.toml"}),
        ("spawn", {"manifest": "m.toml", "name": "n", "state": b"\x00"}),
        ("spawn", {"manifest": "m.toml", "name": None}),  # None means absent
        ("list", {"all": True}),
        ("list", {"all": False}),
        ("list", {}),
        ("inspect", {"actor": "a", "events": 0}),
        ("send", {"actor": "a", "msg": b"", "timeout": 2}),
        ("send", {"actor": "a", "msg": b"", "timeout": 2.5}),
        ("request", {"actor": "a", "msg": b"{}"}),
        ("chain", {"actor": "a", "limit": 10, "type": "spawn", "since": 1.5, "after": 3, "page": 2, "follow": True}),
        ("event", {"actor": "a", "ref": "3"}),
        ("verify", {"actor": "a"}),
        ("channel-open", {"actor": "a", "msg": b"x", "timeout": 0.1}),
        ("channel-send", {"channel": "c", "msg": b"x"}),
        ("channel-close", {"channel": "c"}),
    ],
)
def test_check_args_accepts_valid_calls(op: str, args: dict[str, Any]) -> None:
    check_args(op, args)


def test_every_op_accepts_its_required_args() -> None:
    samples: dict[tuple[type, ...], Any] = {(str,): "s", (bytes,): b"b", (int,): 1, (int, float): 1.5, (bool,): True}
    for op, schema in OPS.items():
        required = {k: samples[types] for k, (types, req) in schema.items() if req}
        check_args(op, required)
        check_args(op, {k: samples[types] for k, (types, _) in schema.items()})


@pytest.mark.parametrize("op", ["", "Status", "spawn ", "nope", "channel_open"])
def test_check_args_rejects_unknown_op(op: str) -> None:
    with pytest.raises(RemoteProtocolError):
        check_args(op, {})


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("spawn", {}),
        ("spawn", {"name": "n"}),
        ("spawn", {"manifest": None}),
        ("stop", {}),
        ("send", {"actor": "a"}),
        ("send", {"msg": b"x"}),
        ("event", {"actor": "a"}),
        ("channel-send", {"msg": b"x"}),
        ("channel-close", {"channel": None}),
    ],
)
def test_check_args_rejects_missing_required(op: str, args: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError):
        check_args(op, args)


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("spawn", {"manifest": b"m.toml"}),
        ("spawn", {"manifest": 1}),
        ("spawn", {"manifest": "m", "state": "text, not bytes"}),
        ("stop", {"actor": 1}),
        ("send", {"actor": "a", "msg": "text"}),
        ("send", {"actor": "a", "msg": b"", "timeout": "1"}),
        ("send", {"actor": "a", "msg": b"", "timeout": True}),  # bool is not a number here
        ("inspect", {"actor": "a", "events": True}),  # bool where int expected
        ("inspect", {"actor": "a", "events": False}),
        ("inspect", {"actor": "a", "events": 1.0}),
        ("inspect", {"actor": "a", "events": "3"}),
        ("chain", {"actor": "a", "limit": True}),
        ("chain", {"actor": "a", "after": 2.5}),
        ("chain", {"actor": "a", "follow": 1}),  # int where bool expected
        ("chain", {"actor": "a", "follow": "yes"}),
        ("list", {"all": 0}),
        ("chain", {"actor": "a", "since": "yesterday"}),
        ("chain", {"actor": "a", "type": ["spawn"]}),
    ],
)
def test_check_args_rejects_wrong_types(op: str, args: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError):
        check_args(op, args)


@pytest.mark.parametrize(
    ("op", "args"),
    [
        ("status", {"verbose": True}),
        ("shutdown", {"now": None}),
        ("stop", {"actor": "a", "force": True}),
        ("spawn", {"manifest": "m", "Manifest": "m"}),
        ("channel-send", {"channel": "c", "msg": b"", "timeout": 1}),
    ],
)
def test_check_args_rejects_unknown_arguments(op: str, args: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError):
        check_args(op, args)


def test_check_args_error_is_a_protocol_error_with_code_76() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        check_args("stop", {})
    assert info.value.code == 76
    assert "actor" in str(info.value)


# ---------------------------------------------------------------------------
# error_frame


def test_error_frame_from_domain_errors() -> None:
    assert error_frame(5, NotFound("no such actor")) == Error(5, 3, "no such actor")
    assert error_frame(None, BadInput("bad")) == Error(None, 2, "bad")
    assert error_frame(1, RemoteProtocolError("junk")) == Error(1, 76, "junk")


def test_error_frame_from_foreign_exceptions() -> None:
    assert error_frame(2, ValueError("boom")) == Error(2, 70, "boom")
    assert error_frame(3, KeyError()) == Error(3, 70, "KeyError")
    frame = error_frame(4, RuntimeError())
    assert frame == Error(4, 70, "RuntimeError")
    assert read_all(encode(frame)) == [frame]


# ---------------------------------------------------------------------------
# purity


@pytest.mark.parametrize("module", ["daemon.wire", "daemon.connection"])
def test_importing_the_protocol_loads_neither_trio_nor_socket(module: str) -> None:
    code = (
        f"import sys, json, {module}\n"
        "mods = sorted(m for m in sys.modules if m.split('.')[0] in ('trio', 'socket', '_socket', 'daemon'))\n"
        "print(json.dumps(mods))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    mods = json.loads(proc.stdout)
    assert module in mods  # the probe really imported the module
    assert "trio" not in mods
    assert "socket" not in mods
    assert not [m for m in mods if m.startswith("trio.")]


@pytest.mark.parametrize("value", [2**53, -(2**53), 2**63, 1e300, -1e300])
def test_numeric_arguments_out_of_range_are_rejected(value: float) -> None:
    with pytest.raises(RemoteProtocolError, match="out of range"):
        check_args("chain", {"actor": "a", "since": value} if isinstance(value, float) else {"actor": "a", "after": value})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize(("op", "key"), [("chain", "since"), ("send", "timeout"), ("request", "timeout"),
                                         ("channel-open", "timeout")])
def test_non_finite_numbers_are_left_to_the_operation(op: str, key: str, value: float) -> None:
    # a well-formed frame: the operation answers 2 (bad input), not 76 (docs/protocol.md 7.2, 9.10)
    args = {"actor": "a", key: value} if op == "chain" else {"actor": "a", "msg": b"{}", key: value}
    check_args(op, args)


def test_frames_are_immutable_values() -> None:
    import copy
    import pickle

    call = Call(7, "request", {"actor": "a"})
    assert call == Call(id=7, op="request", args={"actor": "a"})
    assert call != Call(8, "request", {"actor": "a"})
    assert Reply(1, None) != Hello(1, None)  # type: ignore[arg-type]  # same shape, another type
    assert repr(call) == "Call(id=7, op='request', args={'actor': 'a'})"
    assert Call(1, "status").args == {} and Push(1, "x").data == {} and Hello(1).client == ""
    assert Welcome(1, "theaterd", 2, 3).max_frame == DEFAULT_MAX_FRAME
    assert hash(Reply(1, "x")) == hash(Reply(1, "x"))
    with pytest.raises(AttributeError):
        call.id = 8
    with pytest.raises(AttributeError):
        del call.op
    for frame in (call, Reply(1, b"x"), Error(None, 70, "boom"), Push(3, "message", {"k": 1}),
                  Welcome(1, "theaterd", 2, 3, 4096), Hello(1, "me")):
        assert pickle.loads(pickle.dumps(frame)) == frame
        assert copy.deepcopy(frame) == frame and copy.copy(frame) == frame


@pytest.mark.parametrize("frame", [
    Reply(1, None), Reply(2**64 - 1, b"x"), Reply(3, "text"), Reply(4, 1.5), Reply(5, True), Reply(6, {"a": [1]}),
    Reply(-1, None), Push(7, "done", {"outcome": "ok", "state": b"s", "value": None, "accepted": False}),
    Push(8, "log", {"n": 1}), Call(9, "send", {"actor": "a", "msg": b"{}"}), Call(10, "run", {"batch": [1]}),
    Call(11, "status", {}),
])
def test_fast_paths_encode_and_read_as_the_checked_ones(frame: Any) -> None:
    data = encode(frame)
    assert data[4:] == cbor2.dumps(wire_module._to_map(frame))
    reader = FrameReader()
    reader.feed(data)
    assert reader.next_frame() == frame


def test_fast_paths_refuse_what_the_checked_ones_refuse() -> None:
    with pytest.raises(LocalProtocolError):
        encode(Reply(2**64, None))
    with pytest.raises(LocalProtocolError):
        encode(Call(1, "send", {"actor": 2**65}))
    with pytest.raises(LocalProtocolError):
        encode(Push(1, "x", {1: "a"}))  # type: ignore[dict-item]
    for bad in ({"t": "call", "id": True, "op": "x", "args": {}}, {"t": "push", "id": 1, "event": "e"},
                {"t": "reply", "id": "1"}, {"t": "call", "id": 1, "op": 2}):
        with pytest.raises(RemoteProtocolError):
            frame_from_map(bad)
