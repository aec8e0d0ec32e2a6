"""JSON text at the edges.

Messages and states are the spec's ``json`` type: bytes holding RFC 8259 JSON
text in UTF-8.  The daemon checks what it accepts (:func:`check_json`); the
client library and the actor test harness turn Python values into such bytes
and back (:func:`to_json_bytes`, :func:`from_json_bytes`).
"""

from __future__ import annotations

import json
from typing import Any

from .errors import BadInput


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constants)
_SCAN = _DECODER.scan_once  # type: ignore[attr-defined]
_JSON_SPACE = " \t\n\r"


def _decode(text: str) -> object:
    """``_DECODER.decode(text)``, without its two whitespace matches when ``text`` has no
    whitespace around the value (every message the client library sends)."""
    if text and text[0] not in _JSON_SPACE and text[-1] not in _JSON_SPACE:
        try:
            value, end = _SCAN(text, 0)
        except StopIteration:
            raise ValueError("expecting a value") from None
        if end != len(text):
            raise ValueError("extra data")
        return value
    return _DECODER.decode(text)


def check_json(data: bytes, what: str = "message") -> None:
    """Refuse anything but JSON text in UTF-8: no NaN or Infinity, no escaped lone surrogates."""
    try:
        value = _decode(data.decode("utf-8"))
        if b"\\u" in data:  # an escaped lone surrogate decodes, but is not Unicode text
            json.dumps(value, ensure_ascii=False).encode("utf-8")
    except (ValueError, UnicodeError):
        raise BadInput(f"{what} is not valid JSON: send JSON text in UTF-8 (no NaN or Infinity)") from None


def to_json_bytes(value: Any) -> bytes:
    """A value as compact JSON bytes; bytes-like values are taken to be JSON already."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return json.dumps(value, separators=(",", ":")).encode()


def from_json_bytes(data: bytes | None) -> Any:
    """JSON bytes as a value; bytes that are not JSON are returned as they are."""
    if data is None:
        return None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return data
