"""The baseline server for #2 and #3: bare trio, the same framing, nothing else.

``python -m benchmarks.echo_server SOCKET``

Same wire format as theaterd (4-byte big-endian length + one CBOR map), same
handshake (hello -> welcome), and it answers every call at once: a
``request`` with its ``msg``, anything else with ``None``.  Like theaterd's
connection writer it batches the replies to one read into one ``send_all``.
No runtime, no store, no strict decoding: the floor for a trio server with
this protocol.
"""

from __future__ import annotations

import os
import socket as _socket
import struct
import sys

import cbor2
import trio

HEADER = struct.Struct(">I")


def _frame(m: dict[str, object]) -> bytes:
    body = cbor2.dumps(m)
    return HEADER.pack(len(body)) + body


async def handle(stream: trio.SocketStream) -> None:
    buf = bytearray()
    async with stream:
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                return
            if not data:
                return
            buf += data
            out: list[bytes] = []
            while len(buf) >= 4:
                (length,) = HEADER.unpack_from(buf)
                if len(buf) < 4 + length:
                    break
                m = cbor2.loads(bytes(buf[4 : 4 + length]))
                del buf[: 4 + length]
                kind = m.get("t")
                if kind == "hello":
                    out.append(_frame({"t": "welcome", "version": 1, "server": "echo", "pid": os.getpid(),
                                       "uid": os.getuid()}))
                elif kind == "call":
                    result = m["args"].get("msg") if m.get("op") == "request" else None
                    out.append(_frame({"t": "reply", "id": m["id"], "result": result}))
            if out:
                try:
                    await stream.send_all(b"".join(out))
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return


async def main(path: str) -> None:
    sock = trio.socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    await sock.bind(path)
    sock.listen(512)
    listener = trio.SocketListener(sock)
    await trio.serve_listeners(handle, [listener])


if __name__ == "__main__":
    try:
        trio.run(main, sys.argv[1])
    except KeyboardInterrupt:
        pass
