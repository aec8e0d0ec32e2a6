"""Stamp a component with the hash of the sources it was built from.

componentize-py 0.25 does not build byte-reproducibly (its pre-initialized
CPython heap differs from run to run; bytecodealliance/componentize-py#247),
so a rebuild cannot be compared byte for byte with the committed .wasm.
Instead the build appends a custom section ``theater-sources`` holding the
SHA-256 of the inputs, and the freshness test compares that with the
sources in the checkout.

    python stamp.py add COMPONENT.wasm SOURCE...    append the section
    python stamp.py check COMPONENT.wasm SOURCE...  exit 1 when stale
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

SECTION = b"theater-sources"


def sources_digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        data = path.read_bytes()
        h.update(f"{path.name}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def _leb(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def custom_section(name: bytes, payload: bytes) -> bytes:
    body = _leb(len(name)) + name + payload
    return b"\x00" + _leb(len(body)) + body


def read_stamp(wasm: bytes) -> str | None:
    """The digest in the last ``theater-sources`` section (appended last), or None."""
    marker = _leb(len(SECTION)) + SECTION
    at = wasm.rfind(marker)
    if at < 0:
        return None
    return wasm[at + len(marker):at + len(marker) + 64].decode("ascii", "replace")


def main(argv: list[str]) -> int:
    command, target, *sources = argv
    digest = sources_digest([Path(s) for s in sources])
    path = Path(target)
    if command == "add":
        path.write_bytes(path.read_bytes() + custom_section(SECTION, digest.encode()))
        return 0
    if command == "check":
        found = read_stamp(path.read_bytes())
        if found != digest:
            print(f"{path} is stale: built from sources {found}, checkout has {digest}", file=sys.stderr)
            return 1
        return 0
    raise SystemExit(f"usage: stamp.py add|check COMPONENT.wasm SOURCE...")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
