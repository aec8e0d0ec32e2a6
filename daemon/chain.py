"""The state chain: hash-linked, append-only event records.  Pure.

Theory of operation
-------------------
Every event in an actor's chain is stored as one *record*: the canonical CBOR
encoding (RFC 8949 section 4.2.1, ``cbor2.dumps(..., canonical=True)``) of
the map::

    {"alg": "sha256", "actor": <actor id>, "seq": <int, from 1>,
     "parent": <32 bytes, or null for seq 1>, "type": <str>,
     "ts": <int, microseconds since the Unix epoch, UTC>,
     "data": <map of str -> str|int|bool|null>, "payload": <bytes or null>}

The event's hash is ``alg`` (SHA-256) over exactly those record bytes.  The
record bytes are what the store keeps and what an export carries; verification
recomputes every hash from the stored bytes and never re-encodes, so an
encoder change can never make an old chain look broken (or a tampered one
look fine).  Because each record contains its parent's hash, changing any
stored byte of event ``n`` breaks the link from event ``n + 1``.

Invariants: ``seq`` starts at 1 and increases by exactly 1; ``parent`` of
event ``seq`` is the hash of event ``seq - 1``; the algorithm is named in every
record, so a future format can switch algorithms without ambiguity.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import cbor2

from .jsontext import from_json_bytes
from .wire import _NO_TAGS, MAX_DEPTH, RemoteProtocolError, _reject_tag, decode_body

HASH_ALG: Final = "sha256"
FORMAT_VERSION: Final = 1
EXTERNAL: Final = "external"


@dataclass(frozen=True, slots=True)
class Head:
    """Where a chain ends: the last seq and hash (seq 0 and None when empty)."""

    seq: int = 0
    hash: bytes | None = None


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as stored: its position, its hash and the exact record bytes."""

    actor: str
    seq: int
    hash: bytes
    type: str
    ts: int
    record: bytes


def now_us() -> int:
    return time.time_ns() // 1000


def _canonical_key(key: str) -> tuple[int, bytes]:
    raw = key.encode()
    return len(raw), raw


_PLAIN = frozenset((str, int, bool, type(None)))
_INT_LIMIT = 1 << 64
_KEY_ORDER: dict[tuple[str, ...], tuple[str, ...]] = {}  # data keys as given -> canonical order


def _encode_record(record: dict[str, Any]) -> bytes:
    """Canonical CBOR for a record, fast.

    cbor2's canonical mode sorts every map on every call; records have fixed outer keys
    and flat ``data`` maps of plain values, so building the maps in canonical key order
    (length first, then bytewise; the order is cached per key set) and dumping them
    plainly gives the same bytes in a fraction of the time.  Anything else falls back
    to canonical mode.  ``tests/test_chain.py`` checks that both give identical bytes.
    """
    data = record["data"]
    for value in data.values():
        kind = type(value)
        if kind not in _PLAIN or (kind is int and not -_INT_LIMIT <= value < _INT_LIMIT):
            return cbor2.dumps(record, canonical=True)
    keys = tuple(data)
    order = _KEY_ORDER.get(keys)
    if order is None:
        if len(_KEY_ORDER) > 4096:  # key sets come from the daemon's own code: few
            _KEY_ORDER.clear()
        order = _KEY_ORDER[keys] = tuple(sorted(keys, key=_canonical_key))
    return cbor2.dumps({
        "ts": record["ts"],
        "alg": record["alg"],
        "seq": record["seq"],
        "data": {k: data[k] for k in order},
        "type": record["type"],
        "actor": record["actor"],
        "parent": record["parent"],
        "payload": record["payload"],
    })


def make_event(
    actor: str,
    head: Head,
    type: str,
    data: dict[str, Any],
    payload: bytes | None = None,
    ts: int | None = None,
) -> StoredEvent:
    """Build the next event after ``head``.  The caller advances its head."""
    if ts is None:
        ts = now_us()
    record = _encode_record(
        {
            "alg": HASH_ALG,
            "actor": actor,
            "seq": head.seq + 1,
            "parent": head.hash,
            "type": type,
            "ts": ts,
            "data": data,
            "payload": payload,
        }
    )
    return StoredEvent(actor, head.seq + 1, hashlib.sha256(record).digest(), type, ts, record)


def head_after(event: StoredEvent) -> Head:
    return Head(event.seq, event.hash)


def decode_record(record: bytes, strict: bool = True) -> dict[str, Any]:
    """Decode a record.  ``strict`` (for export files) applies every wire rule; the fast
    path (for the daemon's own store) still refuses tags, indefinite lengths and deep
    nesting, but skips the per-value walk and the trailing-bytes check: the hash covers
    the exact bytes anyway."""
    try:
        if strict:
            value = decode_body(record)
        else:
            value = cbor2.loads(record, tag_hook=_reject_tag, semantic_decoders=_NO_TAGS, max_depth=MAX_DEPTH,
                                allow_indefinite=False)
    except RemoteProtocolError as exc:
        raise ValueError(str(exc)) from None
    except (cbor2.CBORError, RecursionError, TypeError, OverflowError, UnicodeError, EOFError) as exc:
        raise ValueError(f"malformed CBOR: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("record is not a map")
    return value


def hash_record(record: bytes, alg: str = HASH_ALG) -> bytes:
    if alg != HASH_ALG:
        raise ValueError(f"unsupported hash algorithm {alg!r}")
    return hashlib.sha256(record).digest()


# ---------------------------------------------------------------------------
# Verification


@dataclass(frozen=True, slots=True)
class Verdict:
    """Result of verifying a chain: ``broken_seq`` is None when it is intact."""

    checked: int
    head: Head
    broken_seq: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_seq is None


class ChainVerifier:
    """Streams over ``(seq, hash, record)`` triples, oldest first, in O(1) memory."""

    __slots__ = ("actor", "_seq", "_hash", "checked", "broken_seq", "reason", "strict")

    def __init__(self, actor: str | None = None, strict: bool = True) -> None:
        self.actor = actor
        self.strict = strict
        self._seq = 0
        self._hash: bytes | None = None
        self.checked = 0
        self.broken_seq: int | None = None
        self.reason = ""

    def _fail(self, seq: int, reason: str) -> bool:
        self.broken_seq = seq
        self.reason = reason
        return False

    def check(self, seq: int, stored_hash: bytes, record: bytes) -> bool:
        """Check one event; returns False (and remembers why) at the first break."""
        if self.broken_seq is not None:
            return False
        expected_seq = self._seq + 1
        try:
            fields = decode_record(record, self.strict)
            alg = fields.get("alg")
            if not isinstance(alg, str):
                return self._fail(seq, "record names no hash algorithm")
            actual = hash_record(record, alg)
        except ValueError as exc:
            return self._fail(seq, f"unreadable record: {exc}")
        if actual != stored_hash:
            return self._fail(seq, "hash does not match the stored record")
        if seq != expected_seq or fields.get("seq") != expected_seq:
            return self._fail(seq, f"expected seq {expected_seq}")
        if fields.get("parent") != self._hash:
            return self._fail(seq, "parent hash does not match the previous event")
        if self.actor is not None and fields.get("actor") != self.actor:
            return self._fail(seq, "event belongs to another actor")
        if not (isinstance(fields.get("type"), str) and isinstance(fields.get("ts"), int)
                and isinstance(fields.get("data"), dict)
                and isinstance(fields.get("payload"), (bytes, type(None)))):
            return self._fail(seq, "record is missing fields or has fields of the wrong type")
        self._seq, self._hash = seq, actual
        self.checked += 1
        return True

    @property
    def head(self) -> Head:
        return Head(self._seq, self._hash)

    @head.setter
    def head(self, value: Head) -> None:
        self._seq, self._hash = value.seq, value.hash

    def verdict(self) -> Verdict:
        return Verdict(self.checked, self.head, self.broken_seq, self.reason)


def verify(events: Iterable[tuple[int, bytes, bytes]], actor: str | None = None) -> Verdict:
    verifier = ChainVerifier(actor)
    for seq, stored_hash, record in events:
        if not verifier.check(seq, stored_hash, record):
            break
    return verifier.verdict()


# ---------------------------------------------------------------------------
# Presentation helpers (JSON-friendly views of records)


def iso_timestamp(ts_us: int) -> str:
    moment = _dt.datetime.fromtimestamp(ts_us / 1_000_000, _dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def payload_view(payload: bytes | None) -> Any:
    """Show a payload as JSON when it is JSON, else as base64 text."""
    value = from_json_bytes(payload)
    if isinstance(value, bytes):  # (JSON never decodes to bytes)
        return {"base64": base64.b64encode(value).decode()}
    return value


def event_view(stored_hash: bytes, record: bytes, full: bool = False) -> dict[str, Any]:
    """The JSON view of one event (what ``chain show --json`` prints)."""
    fields = decode_record(record)
    parent = fields.get("parent")
    view: dict[str, Any] = {
        "seq": fields["seq"],
        "hash": stored_hash.hex(),
        "parent_hash": parent.hex() if isinstance(parent, bytes) else None,
        "type": fields["type"],
        "timestamp": iso_timestamp(fields["ts"]),
        "data": fields.get("data") or {},
    }
    if full:
        view["actor"] = fields.get("actor")
        view["alg"] = fields.get("alg")
        view["payload"] = payload_view(fields.get("payload"))
    return view


def export_line(stored_hash: bytes, record: bytes) -> str:
    """One self-contained JSON Lines entry: the readable view plus the exact record."""
    view = event_view(stored_hash, record, full=True)
    view["record"] = base64.b64encode(record).decode()
    return json.dumps(view, separators=(",", ":"), sort_keys=True)


def check_export_line(line: str, verifier: ChainVerifier) -> str | None:
    """Verify one export line against the chain so far; return why it is bad, or None.

    The line's readable fields must be exactly (type included) what its hashed
    ``record`` says, so editing any field of an exported event is detected.
    """
    try:
        obj = json.loads(line)
        record = base64.b64decode(obj["record"], validate=True)
        stored_hash = bytes.fromhex(obj["hash"])
        seq = obj["seq"]
    except (ValueError, KeyError, TypeError) as exc:
        return _broken(verifier, None, f"not a chain export line ({exc.__class__.__name__})")
    if not isinstance(seq, int) or isinstance(seq, bool):
        return _broken(verifier, None, "seq is not an integer")
    before = (verifier.head, verifier.checked)
    if not verifier.check(seq, stored_hash, record):
        return verifier.reason
    try:
        expected_text = export_line(stored_hash, record)
    except (ValueError, KeyError, TypeError, OverflowError) as exc:
        verifier.head, verifier.checked = before
        return _broken(verifier, seq, f"malformed record ({exc.__class__.__name__}: {exc})")
    actual_text = json.dumps(obj, separators=(",", ":"), sort_keys=True)
    if actual_text != expected_text:
        verifier.head, verifier.checked = before
        expected = json.loads(expected_text)

        def same(key: str) -> bool:
            return json.dumps(obj.get(key), sort_keys=True) == json.dumps(expected.get(key), sort_keys=True)

        changed = sorted(k for k in set(obj) | set(expected) if not same(k))
        return _broken(verifier, seq, f"field(s) {', '.join(changed)} do not match the hashed record")
    return None


def _broken(verifier: ChainVerifier, seq: int | None, reason: str) -> str:
    verifier.broken_seq = seq if seq is not None else verifier.head.seq + 1
    verifier.reason = reason
    return reason
