"""Property tests for the wire protocol: hostile input only ever yields RemoteProtocolError."""

from __future__ import annotations

import struct
from typing import Any

import cbor2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.wire import (
    OPS,
    Call,
    Error,
    FrameReader,
    Hello,
    Push,
    RemoteProtocolError,
    Reply,
    Welcome,
    check_args,
    encode,
)

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LIGHT = settings(FUZZ, max_examples=120)

FRAME_TYPES = (Hello, Welcome, Call, Reply, Error, Push)
I64 = st.integers(min_value=-(2**64), max_value=2**64 - 1)  # what CBOR ints hold without tags


def framed(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def assert_well_typed(frame: Any) -> None:
    """A frame the reader hands out must satisfy the protocol's field types."""
    assert isinstance(frame, FRAME_TYPES)

    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    if isinstance(frame, Hello):
        assert is_int(frame.version) and isinstance(frame.client, str)
    elif isinstance(frame, Welcome):
        assert is_int(frame.version) and isinstance(frame.server, str)
        assert is_int(frame.pid) and is_int(frame.uid)
    elif isinstance(frame, Call):
        assert is_int(frame.id) and isinstance(frame.op, str) and isinstance(frame.args, dict)
    elif isinstance(frame, Reply):
        assert is_int(frame.id)
    elif isinstance(frame, Error):
        assert frame.id is None or is_int(frame.id)
        assert is_int(frame.code) and isinstance(frame.message, str)
    else:
        assert is_int(frame.id) and isinstance(frame.event, str) and isinstance(frame.data, dict)


def drain(chunks: list[bytes], max_frame: int = 4096) -> list[Any]:
    """Feed ``chunks`` one by one, collecting frames.  Only RemoteProtocolError may escape."""
    reader = FrameReader(max_frame=max_frame)
    frames: list[Any] = []
    for chunk in chunks:
        reader.feed(chunk)
        try:
            frames.extend(reader.frames())
        except RemoteProtocolError:
            # Poisoned for good: every later call fails the same way.
            reader.feed(encode(Reply(1)))
            try:
                reader.next_frame()
            except RemoteProtocolError:
                pass
            else:  # pragma: no cover - a failure
                raise AssertionError("reader recovered after a protocol error")
            return frames
    for frame in frames:
        assert_well_typed(frame)
    return frames


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in zip(points, points[1:])] or [b""]


# ---------------------------------------------------------------------------
# strategies

text_keys = st.text(max_size=6)
scalars = st.one_of(
    st.none(), st.booleans(), I64, st.floats(allow_nan=False), st.text(max_size=12), st.binary(max_size=12)
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(text_keys, inner, max_size=4)),
    max_leaves=8,
)
small_values = st.one_of(scalars, st.lists(scalars, max_size=3), st.dictionaries(text_keys, scalars, max_size=3))


@st.composite
def args_for(draw: st.DrawFn, op: str) -> dict[str, Any]:
    # numeric arguments are range-checked (|n| < 2**53: seqs, counts, seconds)
    arg_int = st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1)
    arg_float = st.floats(min_value=-(2.0**53) + 1, max_value=2.0**53 - 1)
    by_type = {
        (str,): st.text(max_size=20),
        (bytes,): st.binary(max_size=40),
        (int,): arg_int,
        (int, float): st.one_of(arg_int, arg_float),
        (bool,): st.booleans(),
    }
    args: dict[str, Any] = {}
    for key, (types, required) in OPS[op].items():
        if required or draw(st.booleans()):
            args[key] = draw(by_type[types])
    return args


calls = st.sampled_from(sorted(OPS)).flatmap(
    lambda op: st.builds(Call, I64, st.just(op), args_for(op))
)

frames = st.one_of(
    st.builds(Hello, I64, st.text(max_size=10)),
    st.builds(Welcome, I64, st.text(max_size=10), I64, I64),
    calls,
    st.builds(Reply, I64, values),
    st.builds(Error, st.none() | I64, I64, st.text(max_size=20)),
    st.builds(Push, I64, st.text(max_size=10), st.dictionaries(text_keys, values, max_size=4)),
)

# Maps that look like frames: a known or unknown "t" plus random fields.
FIELD_NAMES = ["t", "id", "op", "args", "result", "code", "message", "event", "data", "version",
               "client", "server", "pid", "uid"]
frame_like_maps = st.builds(
    lambda t, extra: {**extra, "t": t} if t is not None else extra,
    st.one_of(st.none(), st.sampled_from(["hello", "welcome", "call", "reply", "error", "push"]), scalars),
    st.dictionaries(st.sampled_from(FIELD_NAMES), small_values, max_size=6),
)


# ---------------------------------------------------------------------------
# (1) random bytes


@FUZZ
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0), max_size=5))
def test_random_bytes_only_raise_remote_protocol_error(data: bytes, cuts: list[int]) -> None:
    drain(split(data, cuts))


@FUZZ
@given(st.lists(st.binary(max_size=80), min_size=1, max_size=4), st.lists(st.integers(min_value=0), max_size=5))
def test_random_bodies_with_valid_length_prefix(bodies: list[bytes], cuts: list[int]) -> None:
    # A correct prefix gets random bytes past the size check and into the decoder.
    drain(split(b"".join(framed(b) for b in bodies), cuts))


@FUZZ
@given(st.lists(frame_like_maps, min_size=1, max_size=2))
def test_random_frame_like_maps(maps: list[dict[str, Any]]) -> None:
    data = b"".join(framed(cbor2.dumps(m)) for m in maps)
    drain([data])


# ---------------------------------------------------------------------------
# (2) mutated valid frames

mutations = st.lists(
    st.tuples(st.sampled_from(["flip", "insert", "delete", "set"]), st.integers(min_value=0), st.integers(0, 255)),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, byte in ops:
        if kind == "insert":
            buf.insert(pos % (len(buf) + 1), byte)
        elif not buf:
            continue
        elif kind == "delete":
            del buf[pos % len(buf)]
        elif kind == "flip":
            buf[pos % len(buf)] ^= 1 << (byte % 8)
        else:
            buf[pos % len(buf)] = byte
    return bytes(buf)


@LIGHT
@given(st.lists(frames, min_size=1, max_size=2), mutations, st.lists(st.integers(min_value=0), max_size=3))
def test_mutated_frames_only_raise_remote_protocol_error(
    originals: list[Any], ops: list[tuple[str, int, int]], cuts: list[int]
) -> None:
    data = b"".join(encode(f) for f in originals)
    drain(split(mutate(data, ops), cuts), max_frame=1 << 16)


@FUZZ
@given(frames, mutations)
def test_mutated_body_with_fixed_prefix(frame: Any, ops: list[tuple[str, int, int]]) -> None:
    # Keep the length prefix right so that every mutation reaches the decoder.
    body = encode(frame)[4:]
    drain([framed(mutate(body, ops))], max_frame=1 << 16)


# ---------------------------------------------------------------------------
# (3) round trips


@FUZZ
@given(calls, st.lists(st.integers(min_value=0), max_size=4))
def test_call_round_trip(call: Call, cuts: list[int]) -> None:
    check_args(call.op, call.args)  # the generator only builds valid calls
    data = encode(call)
    got = drain(split(data, cuts), max_frame=1 << 16)
    assert got == [call]
    assert isinstance(got[0], Call)
    check_args(got[0].op, got[0].args)
    # Types survive the trip exactly (e.g. bytes stay bytes, bools stay bools).
    assert {k: type(v) for k, v in got[0].args.items()} == {k: type(v) for k, v in call.args.items()}


@LIGHT
@given(st.lists(frames, min_size=1, max_size=3))
def test_any_frame_sequence_round_trips(originals: list[Any]) -> None:
    data = b"".join(encode(f) for f in originals)
    reader = FrameReader(max_frame=1 << 16)
    reader.feed(data)
    assert list(reader.frames()) == originals
    assert reader.buffered == 0
