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


def check_json(data: bytes, what: str = "message") -> None:
    """Refuse anything but JSON text in UTF-8: no NaN or Infinity, no escaped lone surrogates."""
    try:
        value = _DECODER.decode(data.decode("utf-8"))
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
