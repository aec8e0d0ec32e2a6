"""The hash-linked state chain: record format, linking, verification, export lines."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
from typing import Any

import cbor2
import pytest

from daemon.chain import (
    HASH_ALG,
    ChainVerifier,
    Head,
    StoredEvent,
    check_export_line,
    decode_record,
    event_view,
    export_line,
    head_after,
    iso_timestamp,
    make_event,
    verify,
)

ACTOR = "act-7f3a"
TS = 1_700_000_000_123_456  # 2023-11-14T22:13:20.123456Z

# Golden vectors.  The hashes are SHA-256 over the record bytes that
# ``hand_built_record_*`` assemble byte by byte from RFC 8949 (section 4.2.1
# canonical order: shorter keys first, then bytewise) -- computed once from
# those hand-built bytes and hard-coded here, so any change to the record
# format or the hash breaks these tests.
GOLDEN_HASH_1 = "0a815a7d1d3c3c6197116d17d54493effc1f9be4ad31f847b0f09b1ad127ea76"
GOLDEN_HASH_2 = "0d8d06513e991f6aefc2e6e288f635e0f3ee2e0b67aceb424665fdec15c015b7"


def tstr(s: str) -> bytes:
    """CBOR text string, major type 3, for strings shorter than 24 bytes."""
    raw = s.encode()
    assert len(raw) < 24
    return bytes([0x60 + len(raw)]) + raw


def hand_built_record_1() -> bytes:
    # Key order for 8 keys by (length, bytes): ts, alg, seq, data, type, actor, parent, payload.
    return (
        b"\xa8"  # map of 8 pairs
        + tstr("ts") + b"\x1b" + struct.pack(">Q", TS)  # uint64
        + tstr("alg") + tstr("sha256")
        + tstr("seq") + b"\x01"
        + tstr("data") + b"\xa3" + tstr("n") + b"\x03" + tstr("ok") + b"\xf5" + tstr("who") + b"\xf6"
        + tstr("type") + tstr("spawn")
        + tstr("actor") + tstr(ACTOR)
        + tstr("parent") + b"\xf6"  # null: first event
        + tstr("payload") + b"\x47" + b'{"x":1}'  # 7-byte byte string
    )


def hand_built_record_2(parent: bytes) -> bytes:
    assert len(parent) == 32
    return (
        b"\xa8"
        + tstr("ts") + b"\x1b" + struct.pack(">Q", TS + 1)
        + tstr("alg") + tstr("sha256")
        + tstr("seq") + b"\x02"
        + tstr("data") + b"\xa0"
        + tstr("type") + tstr("message")
        + tstr("actor") + tstr(ACTOR)
        + tstr("parent") + b"\x58\x20" + parent  # 32-byte byte string
        + tstr("payload") + b"\xf6"
    )


def first_event() -> StoredEvent:
    # Data keys deliberately given out of order: the record must sort them.
    return make_event(ACTOR, Head(), "spawn", {"who": None, "ok": True, "n": 3}, b'{"x":1}', ts=TS)


def build_chain(n: int, actor: str = ACTOR) -> list[StoredEvent]:
    events: list[StoredEvent] = []
    head = Head()
    for i in range(n):
        ev = make_event(
            actor,
            head,
            "message" if i else "spawn",
            {"i": i, "even": i % 2 == 0, "note": f"event {i}", "none": None},
            json.dumps({"n": i}).encode() if i % 3 else bytes([i, 0xFF, 0x00]),
            ts=TS + i * 1_000_000,
        )
        events.append(ev)
        head = head_after(ev)
    return events


def triples(events: list[StoredEvent]) -> list[tuple[int, bytes, bytes]]:
    return [(e.seq, e.hash, e.record) for e in events]


CHAIN = build_chain(50)


# ---------------------------------------------------------------------------
# golden vectors


def test_golden_record_and_hash_for_the_first_event() -> None:
    ev = first_event()
    expected_record = hand_built_record_1()
    assert ev.record == expected_record
    # The same bytes, independently, through cbor2's canonical encoder.
    assert ev.record == cbor2.dumps(
        {
            "alg": "sha256",
            "actor": ACTOR,
            "seq": 1,
            "parent": None,
            "type": "spawn",
            "ts": TS,
            "data": {"n": 3, "ok": True, "who": None},
            "payload": b'{"x":1}',
        },
        canonical=True,
    )
    assert hashlib.sha256(expected_record).hexdigest() == GOLDEN_HASH_1
    assert ev.hash.hex() == GOLDEN_HASH_1
    assert (ev.actor, ev.seq, ev.type, ev.ts) == (ACTOR, 1, "spawn", TS)


def test_golden_record_and_hash_for_a_linked_event() -> None:
    first = first_event()
    second = make_event(ACTOR, head_after(first), "message", {}, None, ts=TS + 1)
    assert second.record == hand_built_record_2(bytes.fromhex(GOLDEN_HASH_1))
    assert second.hash.hex() == GOLDEN_HASH_2
    assert second.hash == hashlib.sha256(second.record).digest()
    assert second.seq == 2


def test_record_names_the_algorithm() -> None:
    assert HASH_ALG == "sha256"
    assert decode_record(first_event().record)["alg"] == "sha256"


def test_record_is_independent_of_data_key_order() -> None:
    a = make_event(ACTOR, Head(), "t", {"a": 1, "bb": 2, "c": 3}, ts=TS)
    b = make_event(ACTOR, Head(), "t", {"c": 3, "bb": 2, "a": 1}, ts=TS)
    assert a.record == b.record and a.hash == b.hash


@pytest.mark.parametrize(
    "change",
    [
        {"actor": "act-7f3b"},
        {"type": "spawned"},
        {"data": {"who": None, "ok": True, "n": 4}},
        {"data": {"who": None, "ok": 1, "n": 3}},  # bool vs int must not collide
        {"payload": b'{"x":2}'},
        {"payload": None},
        {"ts": TS + 1},
        {"head": Head(1, b"\x00" * 32)},
    ],
    ids=["actor", "type", "data", "bool-vs-int", "payload", "no-payload", "ts", "head"],
)
def test_every_input_is_hashed(change: dict[str, Any]) -> None:
    kwargs: dict[str, Any] = {
        "actor": ACTOR, "head": Head(), "type": "spawn",
        "data": {"who": None, "ok": True, "n": 3}, "payload": b'{"x":1}', "ts": TS,
    }
    kwargs.update(change)
    ev = make_event(**kwargs)
    assert ev.hash.hex() != GOLDEN_HASH_1
    assert ev.hash == hashlib.sha256(ev.record).digest()


# ---------------------------------------------------------------------------
# linking


def test_events_link_to_their_parents() -> None:
    assert decode_record(CHAIN[0].record)["parent"] is None
    for prev, ev in zip(CHAIN, CHAIN[1:]):
        fields = decode_record(ev.record)
        assert fields["parent"] == prev.hash
        assert fields["seq"] == prev.seq + 1 == ev.seq
        assert ev.hash == hashlib.sha256(ev.record).digest()
    assert [e.seq for e in CHAIN] == list(range(1, 51))
    assert len({e.hash for e in CHAIN}) == 50


def test_head_after() -> None:
    ev = CHAIN[9]
    assert head_after(ev) == Head(10, ev.hash)
    assert Head() == Head(0, None)


def test_default_timestamp_is_now_in_microseconds() -> None:
    import time

    before = int(time.time() * 1_000_000)
    ev = make_event(ACTOR, Head(), "t", {})
    after = int(time.time() * 1_000_000)
    assert before - 1 <= ev.ts <= after + 1
    assert decode_record(ev.record)["ts"] == ev.ts


# ---------------------------------------------------------------------------
# verification


def test_verify_intact_chain() -> None:
    verdict = verify(triples(CHAIN))
    assert verdict.ok
    assert verdict.broken_seq is None
    assert verdict.checked == 50
    assert verdict.head == Head(50, CHAIN[-1].hash)
    assert verdict.reason == ""


def test_verify_intact_chain_with_actor() -> None:
    assert verify(triples(CHAIN), actor=ACTOR).ok
    verdict = verify(triples(CHAIN), actor="someone-else")
    assert not verdict.ok
    assert verdict.broken_seq == 1
    assert verdict.checked == 0


def test_verify_empty_chain() -> None:
    verdict = verify([])
    assert verdict.ok and verdict.checked == 0 and verdict.head == Head()


def test_streaming_verifier_matches_verify() -> None:
    v = ChainVerifier(ACTOR)
    for seq, h, rec in triples(CHAIN):
        assert v.check(seq, h, rec)
    assert v.verdict() == verify(triples(CHAIN), ACTOR)


def flip(record: bytes, pos: int, mask: int = 0x01) -> bytes:
    buf = bytearray(record)
    buf[pos] ^= mask
    return bytes(buf)


@pytest.mark.parametrize("index", range(50))
def test_tampering_a_record_byte_is_detected(index: int) -> None:
    rec = CHAIN[index].record
    positions = sorted({0, 1, len(rec) // 3, len(rec) // 2, 2 * len(rec) // 3, len(rec) - 2, len(rec) - 1})
    for pos in positions:
        for mask in (0x01, 0x80):
            events = triples(CHAIN)
            seq, h, _ = events[index]
            events[index] = (seq, h, flip(rec, pos, mask))
            verdict = verify(events)
            assert not verdict.ok, (index, pos, mask)
            assert verdict.broken_seq == index + 1
            assert verdict.checked == index
            assert verdict.head == (Head(index, CHAIN[index - 1].hash) if index else Head())


def test_tampering_every_byte_of_a_record_is_detected() -> None:
    chain = CHAIN[:4]
    for index in (0, 2, 3):
        rec = chain[index].record
        for pos in range(len(rec)):
            events = triples(chain)
            events[index] = (events[index][0], events[index][1], flip(rec, pos, 0x20))
            verdict = verify(events)
            assert verdict.broken_seq == index + 1, (index, pos)


def test_rewriting_a_record_with_a_fresh_hash_breaks_the_next_link() -> None:
    # The attacker changes event 10 and stores its correct new hash: the
    # change still shows, at event 11, whose parent no longer matches.
    forged = make_event(ACTOR, head_after(CHAIN[8]), "message", {"i": 9, "evil": True}, None, ts=TS)
    events = triples(CHAIN)
    events[9] = (forged.seq, forged.hash, forged.record)
    verdict = verify(events)
    assert verdict.broken_seq == 11
    assert verdict.checked == 10
    assert "parent" in verdict.reason


@pytest.mark.parametrize(("i", "j"), [(0, 1), (3, 4), (10, 30), (0, 49), (48, 49)])
def test_swapping_two_events_is_detected(i: int, j: int) -> None:
    # As a store would see it: rows keep their seq, the contents are swapped.
    events = triples(CHAIN)
    events[i] = (i + 1, CHAIN[j].hash, CHAIN[j].record)
    events[j] = (j + 1, CHAIN[i].hash, CHAIN[i].record)
    verdict = verify(events)
    assert verdict.broken_seq == i + 1
    assert verdict.checked == i


@pytest.mark.parametrize(("i", "j"), [(0, 1), (10, 30)])
def test_reordering_whole_rows_is_detected(i: int, j: int) -> None:
    events = triples(CHAIN)
    events[i], events[j] = events[j], events[i]
    verdict = verify(events)
    assert not verdict.ok
    assert verdict.checked == i  # everything before the swap is fine


@pytest.mark.parametrize("index", [0, 1, 24, 48])
def test_deleting_an_event_is_detected(index: int) -> None:
    events = triples(CHAIN)
    del events[index]
    verdict = verify(events)
    assert not verdict.ok
    assert verdict.broken_seq == index + 2  # the first row that does not fit
    assert verdict.checked == index


def test_deleting_the_last_event_leaves_a_shorter_valid_chain() -> None:
    # Truncation is only visible against a known head; the verdict exposes it.
    verdict = verify(triples(CHAIN[:-1]))
    assert verdict.ok
    assert verdict.head == Head(49, CHAIN[48].hash)
    assert verdict.head != Head(50, CHAIN[49].hash)


@pytest.mark.parametrize("index", [0, 1, 25, 49])
def test_changing_a_stored_hash_is_detected(index: int) -> None:
    for bad in (flip(CHAIN[index].hash, 0), flip(CHAIN[index].hash, 31, 0x80), CHAIN[index - 1].hash, b""):
        events = triples(CHAIN)
        events[index] = (index + 1, bad, CHAIN[index].record)
        verdict = verify(events)
        assert verdict.broken_seq == index + 1
        assert "hash" in verdict.reason


def test_duplicated_event_is_detected() -> None:
    events = triples(CHAIN)
    events.insert(5, events[4])
    verdict = verify(events)
    assert verdict.broken_seq == 5
    assert verdict.checked == 5


def test_events_of_another_actor_are_detected() -> None:
    other = build_chain(3, actor="act-other")
    events = triples(CHAIN[:2]) + triples(other)[2:]
    # Unrelated chain: the parent link breaks whether or not the actor is given.
    assert verify(events).broken_seq == 3
    assert verify(triples(other), actor=ACTOR).broken_seq == 1


def test_verifier_stays_broken() -> None:
    v = ChainVerifier()
    assert not v.check(1, b"\x00" * 32, CHAIN[0].record)
    assert v.broken_seq == 1
    reason = v.reason
    # Even the correct event no longer passes once broken.
    assert not v.check(1, CHAIN[0].hash, CHAIN[0].record)
    assert v.broken_seq == 1 and v.reason == reason and v.checked == 0


@pytest.mark.parametrize(
    "record",
    [b"", b"\xff", b"\x80", cbor2.dumps([1, 2]), cbor2.dumps({"seq": 1}), cbor2.dumps({"alg": "md5", "seq": 1})],
    ids=["empty", "garbage", "array", "list", "no-alg", "other-alg"],
)
def test_unreadable_records_are_reported_not_raised(record: bytes) -> None:
    verdict = verify([(1, hashlib.sha256(record).digest(), record)])
    assert verdict.broken_seq == 1
    assert verdict.reason


# ---------------------------------------------------------------------------
# event_view


# the view of first_event(): what `chain show --json` prints for it
FIRST_VIEW = {
    "seq": 1,
    "hash": GOLDEN_HASH_1,
    "parent_hash": None,
    "type": "spawn",
    "timestamp": "2023-11-14T22:13:20.123456Z",
    "data": {"n": 3, "ok": True, "who": None},
}


def test_event_view_of_first_event() -> None:
    ev = first_event()
    view = event_view(ev.hash, ev.record)
    assert view == FIRST_VIEW


def test_event_view_fields_along_the_chain() -> None:
    iso = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
    for prev, ev in zip([None, *CHAIN], CHAIN):
        view = event_view(ev.hash, ev.record)
        assert view["seq"] == ev.seq
        assert re.fullmatch(r"[0-9a-f]{64}", view["hash"])
        assert view["hash"] == ev.hash.hex()
        assert view["parent_hash"] == (None if prev is None else prev.hash.hex())
        assert view["type"] == ev.type
        assert iso.match(view["timestamp"]) and view["timestamp"].endswith("Z")
        assert view["data"] == {"i": ev.seq - 1, "even": (ev.seq - 1) % 2 == 0, "note": f"event {ev.seq - 1}", "none": None}
        assert set(view) == {"seq", "hash", "parent_hash", "type", "timestamp", "data"}


def test_event_view_full() -> None:
    ev = first_event()
    view = event_view(ev.hash, ev.record, full=True)
    assert view["actor"] == ACTOR
    assert view["alg"] == "sha256"
    assert view["payload"] == {"x": 1}  # JSON payloads are shown as JSON
    binary = CHAIN[0]  # payload bytes([0, 0xff, 0])
    assert event_view(binary.hash, binary.record, full=True)["payload"] == {"base64": "AP8A"}
    none = make_event(ACTOR, Head(), "t", {}, None, ts=TS)
    assert event_view(none.hash, none.record, full=True)["payload"] is None


def test_event_view_timestamps() -> None:
    assert iso_timestamp(0) == "1970-01-01T00:00:00.000000Z"
    assert iso_timestamp(TS) == "2023-11-14T22:13:20.123456Z"
    assert iso_timestamp(1_000_000 * 86_400 + 1) == "1970-01-02T00:00:00.000001Z"
    ev = CHAIN[1]  # TS + 1 s
    assert event_view(ev.hash, ev.record)["timestamp"] == "2023-11-14T22:13:21.123456Z"


# ---------------------------------------------------------------------------
# export lines


def export(events: list[StoredEvent]) -> list[str]:
    return [export_line(e.hash, e.record) for e in events]


def test_export_line_content() -> None:
    ev = first_event()
    line = export_line(ev.hash, ev.record)
    assert "\n" not in line
    obj = json.loads(line)
    assert obj == {
        **FIRST_VIEW,
        "actor": ACTOR,
        "alg": "sha256",
        "payload": {"x": 1},
        "record": base64.b64encode(hand_built_record_1()).decode(),
    }


def test_export_round_trip() -> None:
    verifier = ChainVerifier(ACTOR)
    for line in export(CHAIN):
        assert check_export_line(line, verifier) is None
    assert verifier.verdict().ok
    assert verifier.checked == 50
    assert verifier.head == Head(50, CHAIN[-1].hash)


def test_export_round_trip_survives_reformatting() -> None:
    verifier = ChainVerifier()
    for line in export(CHAIN[:5]):
        assert check_export_line(json.dumps(json.loads(line), indent=1), verifier) is None


def check_lines(lines: list[str]) -> tuple[str | None, ChainVerifier]:
    verifier = ChainVerifier(ACTOR)
    for line in lines:
        problem = check_export_line(line, verifier)
        if problem is not None:
            return problem, verifier
    return None, verifier


def edited(line: str, edit: Any) -> str:
    obj = json.loads(line)
    edit(obj)
    return json.dumps(obj, separators=(",", ":"), sort_keys=True)


def _set(key: str, value: Any) -> Any:
    def edit(obj: dict[str, Any]) -> None:
        obj[key] = value

    return edit


def _set_data(key: str, value: Any) -> Any:
    def edit(obj: dict[str, Any]) -> None:
        obj["data"][key] = value

    return edit


def _tamper_record(obj: dict[str, Any]) -> None:
    raw = bytearray(base64.b64decode(obj["record"]))
    raw[len(raw) // 2] ^= 0x01
    obj["record"] = base64.b64encode(bytes(raw)).decode()


def _record_from_other_event(obj: dict[str, Any]) -> None:
    obj["record"] = base64.b64encode(CHAIN[0].record).decode()


EDITS = {
    "type": _set("type", "spawn"),
    "data-int": _set_data("i", 999),
    "data-str": _set_data("note", "rewritten"),
    "data-bool": _set_data("even", True),  # event 8 (i=7) is odd
    "data-null": _set_data("none", "x"),
    "data-add": _set_data("extra", 1),
    "data-remove": lambda o: o["data"].pop("note"),
    "timestamp": _set("timestamp", "2023-11-14T22:13:28.123457Z"),
    "payload": _set("payload", {"n": 8}),
    "payload-null": _set("payload", None),
    "hash": _set("hash", CHAIN[0].hash.hex()),
    "hash-upper": lambda o: o.__setitem__("hash", o["hash"].upper()),
    "parent_hash": _set("parent_hash", "00" * 32),
    "actor": _set("actor", "act-other"),
    "alg": _set("alg", "sha512"),
    "record": _tamper_record,
    "record-swap": _record_from_other_event,
    "extra-field": _set("comment", "hi"),
    "missing-field": lambda o: o.pop("timestamp"),
}


@pytest.mark.parametrize("name", sorted(EDITS))
def test_changing_any_export_field_is_detected(name: str) -> None:
    lines = export(CHAIN[:12])
    target = 7  # seq 8
    assert json.loads(lines[target])["data"] == {"i": 7, "even": False, "note": "event 7", "none": None}
    lines[target] = edited(lines[target], EDITS[name])
    problem, verifier = check_lines(lines)
    assert problem is not None, name
    assert verifier.broken_seq == 8
    assert verifier.reason == problem
    assert verifier.checked in (7, 8)  # see test_export_verdict_after_field_mismatch_is_consistent


def test_export_verdict_after_field_mismatch_is_consistent() -> None:
    # When line 8's readable fields don't match its (intact) record, the verdict
    # must not count event 8 as checked nor move the head onto it -- exactly
    # what verify() reports for any other break at seq 8.
    lines = export(CHAIN[:12])
    lines[7] = edited(lines[7], _set_data("note", "rewritten"))
    problem, verifier = check_lines(lines)
    assert problem is not None
    verdict = verifier.verdict()
    assert verdict.broken_seq == 8
    assert verdict.checked == 7
    assert verdict.head == Head(7, CHAIN[6].hash)


@pytest.mark.parametrize("new_seq", [7, 9, 0, -8, 800])
def test_changing_the_export_seq_is_detected(new_seq: int) -> None:
    lines = export(CHAIN[:12])
    lines[7] = edited(lines[7], _set("seq", new_seq))
    problem, verifier = check_lines(lines)
    assert problem is not None
    assert verifier.checked == 7
    assert verifier.broken_seq is not None


@pytest.mark.parametrize("new_seq", ["8", 8.5, None, [8]])
def test_non_integer_export_seq_is_rejected(new_seq: Any) -> None:
    lines = export(CHAIN[:12])
    lines[7] = edited(lines[7], _set("seq", new_seq))
    problem, verifier = check_lines(lines)
    assert problem is not None
    assert verifier.checked == 7


# JSON has distinct ``true``/``1``/``1.0``; a verifier comparing decoded
# Python objects sees True == 1 == 1.0 and lets these edits through.
TYPE_CONFUSED_EDITS = {
    "data-int-to-true": (1, _set_data("i", True)),  # event 2 has i == 1
    "data-int-to-float": (1, _set_data("i", 1.0)),
    "data-false-to-zero": (1, _set_data("even", 0)),  # event 2: even is False
    "data-true-to-one": (0, _set_data("even", 1)),  # event 1: even is True
    "seq-to-true": (0, _set("seq", True)),  # event 1: seq == 1
    "payload-int-to-true": (1, _set("payload", {"n": True})),  # event 2: payload {"n": 1}
}


@pytest.mark.parametrize("name", sorted(TYPE_CONFUSED_EDITS))
def test_type_confusion_in_export_lines_is_detected(name: str) -> None:
    target, edit = TYPE_CONFUSED_EDITS[name]
    lines = export(CHAIN[:4])
    original = lines[target]
    lines[target] = edited(lines[target], edit)
    assert lines[target] != original  # the edit really changed the text
    problem, verifier = check_lines(lines)
    assert problem is not None, f"{name}: edited line accepted: {lines[target]}"
    assert verifier.broken_seq in (None, target + 1)  # None: rejected before the chain check


@pytest.mark.parametrize(
    "line",
    ["", "not json", "[]", "42", '"text"', "null", "{}", '{"seq":1,"hash":"00"}',
     '{"seq":1,"hash":"zz","record":""}', '{"seq":1,"hash":"00","record":"***"}',
     '{"seq":1,"hash":5,"record":""}', '{"seq":1,"hash":"00","record":5}'],
)
def test_garbage_export_lines_are_reported_not_raised(line: str) -> None:
    verifier = ChainVerifier()
    problem = check_export_line(line, verifier)
    assert isinstance(problem, str) and problem


def self_consistent_line(fields: dict[str, Any]) -> str:
    """An export line whose hash really is the hash of its (crafted) record."""
    record = cbor2.dumps(fields, canonical=True)
    digest = hashlib.sha256(record).digest()
    return json.dumps({"seq": 1, "hash": digest.hex(), "record": base64.b64encode(record).decode()})


@pytest.mark.parametrize(
    "fields",
    [
        {"alg": "sha256", "actor": ACTOR, "seq": 1, "parent": None, "ts": TS, "data": {}, "payload": None},
        {"alg": "sha256", "actor": ACTOR, "seq": 1, "parent": None, "type": "t", "data": {}, "payload": None},
        {"alg": "sha256", "actor": ACTOR, "seq": 1, "parent": None, "type": "t", "ts": "yesterday",
         "data": {}, "payload": None},
    ],
    ids=["no-type", "no-ts", "text-ts"],
)
def test_crafted_records_in_untrusted_exports_are_reported_not_raised(fields: dict[str, Any]) -> None:
    # Export files are untrusted input: a malformed but correctly hashed record
    # must produce a reason string, not an uncaught exception.
    verifier = ChainVerifier(ACTOR)
    problem = check_export_line(self_consistent_line(fields), verifier)
    assert isinstance(problem, str) and problem


# -- the fast canonical encoder must give exactly cbor2's canonical bytes ---------------

from hypothesis import given, settings, strategies as st  # noqa: E402

from daemon.chain import _encode_record  # noqa: E402

_values = st.one_of(st.text(max_size=20), st.integers(min_value=-(2**70), max_value=2**70), st.booleans(),
                    st.none(), st.floats(allow_nan=False), st.lists(st.integers(), max_size=3))


@settings(max_examples=300, deadline=None)
@given(
    data=st.dictionaries(st.text(min_size=1, max_size=12), _values, max_size=8),
    payload=st.one_of(st.none(), st.binary(max_size=40)),
    seq=st.integers(min_value=1, max_value=2**40),
    ts=st.integers(min_value=0, max_value=2**62),
)
def test_fast_record_encoding_is_canonical(data: dict, payload: bytes | None, seq: int, ts: int) -> None:
    record = {"alg": "sha256", "actor": "a-b", "seq": seq, "parent": b"\x01" * 32 if seq > 1 else None,
              "type": "message-server/x", "ts": ts, "data": data, "payload": payload}
    assert _encode_record(record) == cbor2.dumps(record, canonical=True)


@pytest.mark.parametrize("value", [0, 23, 24, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1, 2**64, -1, -24,
                                   -25, -256, -257, -65537, -(2**64), -(2**64) - 1, True, False, None, "",
                                   "x" * 23, "x" * 24, "é" * 200, "ü" * 40000, 1.5, [1], {"a": 1}, b"raw"])
def test_fast_record_encoding_at_the_boundaries(value: Any) -> None:
    for payload in (None, b"", b"p" * 23, b"p" * 24, b"p" * 300):
        record = {"alg": "sha256", "actor": "actor-" + "é" * 30, "seq": 2**33, "parent": b"\x02" * 32,
                  "type": "t" * 24, "ts": 2**53, "data": {"v": value, "zz": 1, "a" * 30: None}, "payload": payload}
        assert _encode_record(record) == cbor2.dumps(record, canonical=True)
