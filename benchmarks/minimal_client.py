"""The baseline for #1: the least a one-shot ``request`` command can do.

``python benchmarks/minimal_client.py ACTOR MESSAGE`` (socket from $THEATER_SOCKET)

click + socket + cbor2 and nothing else: parse the arguments, connect, hello ->
welcome, one call, print the reply.  No validation, no error mapping, no
output module; theaterctl does more, and the target allows it 25 % more time.
"""

from __future__ import annotations

import os
import socket
import struct
import sys

import cbor2
import click

HEADER = struct.Struct(">I")


def _send(sock: socket.socket, m: dict[str, object]) -> None:
    body = cbor2.dumps(m)
    sock.sendall(HEADER.pack(len(body)) + body)


def _recv(sock: socket.socket, buf: bytearray) -> dict[str, object]:
    while True:
        if len(buf) >= 4:
            (length,) = HEADER.unpack_from(buf)
            if len(buf) >= 4 + length:
                m = cbor2.loads(bytes(buf[4 : 4 + length]))
                del buf[: 4 + length]
                return m
        data = sock.recv(65536)
        if not data:
            raise click.ClickException("connection closed")
        buf += data


@click.command()
@click.argument("actor")
@click.argument("message")
def main(actor: str, message: str) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.environ["THEATER_SOCKET"])
    buf = bytearray()
    _send(sock, {"t": "hello", "version": 1, "client": "minimal"})
    _recv(sock, buf)
    _send(sock, {"t": "call", "id": 1, "op": "request", "args": {"actor": actor, "msg": message.encode()}})
    reply = _recv(sock, buf)
    if reply.get("t") != "reply":
        raise click.ClickException(str(reply.get("message")))
    result = reply["result"]
    sys.stdout.write((result.decode() if isinstance(result, bytes) else str(result)) + "\n")


if __name__ == "__main__":
    main()
