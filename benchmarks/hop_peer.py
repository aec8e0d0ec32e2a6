"""The bare end of benchmark #11's baseline: ``python -m benchmarks.hop_peer FD``.

Reads frames from the inherited socket with the daemon's own framing and, for
every call, writes at once what a worker writes for a one-message ``run``: a
``done`` push and the reply.  No threads, no handler: what is left is the
process hop itself (two writes, two wake-ups, CBOR both ways).
"""

from __future__ import annotations

import socket
import sys

from daemon import wire

DONE = {"outcome": "ok", "state": b'{"n":1}', "value": b'{"type":"ping"}'}


def main(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    reader = wire.FrameReader(64 << 20)
    while True:
        data = sock.recv(1 << 20)
        if not data:
            return
        reader.feed(data)
        for frame in reader.frames():
            if isinstance(frame, wire.Call):
                sock.sendall(wire.encode(wire.Push(frame.id, "done", DONE), 64 << 20)
                             + wire.encode(wire.Reply(frame.id, {"count": 1}), 64 << 20))


if __name__ == "__main__":
    main(int(sys.argv[1]))
