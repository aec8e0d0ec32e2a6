"""daemon.server without a daemon: the accept loop (the protocol itself is tests/test_connection.py)."""

from __future__ import annotations

import errno
import logging
from typing import Any, cast

import pytest
import trio
import trio.testing

from daemon.server import Server


class _Listener(trio.abc.Listener[trio.abc.Stream]):
    """Out of file descriptors twice, then one connection, then nothing."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.accepts: list[float] = []
        self.closed = False

    async def accept(self) -> trio.abc.Stream:
        self.accepts.append(trio.current_time())
        if len(self.accepts) <= 2:
            raise OSError(errno.EMFILE, "Too many open files")
        if len(self.accepts) == 3:
            return self.stream
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        self.closed = True


async def test_accept_out_of_file_descriptors_waits_and_accepts_again(
        autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture) -> None:
    stream, _peer = trio.testing.memory_stream_pair()
    listener = _Listener(stream)
    server = Server(cast(Any, None))
    handled: list[trio.abc.Stream] = []

    async def connection(s: trio.abc.Stream) -> None:
        handled.append(s)

    server._connection = connection  # type: ignore[method-assign, assignment]
    with caplog.at_level(logging.ERROR, logger="trio.serve_listeners"):
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve, cast(trio.SocketListener, listener))
            await trio.sleep(1)
            nursery.cancel_scope.cancel()
    assert handled == [stream]
    first, second, third = listener.accepts[:3]
    assert second - first == pytest.approx(0.1) and third - second == pytest.approx(0.1)
    assert listener.closed
    assert len([r for r in caplog.records if "EMFILE" in r.getMessage()]) == 2


def test_every_op_returns_its_answer_or_raises() -> None:
    # ops written in the older shape (writing their own reply, or starting work without returning
    # LATER) would be answered twice: the dispatcher writes what an op returns
    import inspect

    from daemon import wire
    from daemon.server import Connection

    for op in wire.OPS:
        method = getattr(Connection, "op_" + op.replace("-", "_"))
        body = [line.strip() for line in inspect.getsource(method).splitlines()
                if line.startswith(" " * 8) and not line.startswith(" " * 9)]  # the method's own statements
        for line in body:
            assert not line.startswith("self.write("), (op, line)
            assert not line.startswith(("self._spawn(", "self.nursery.start_soon(")), (op, line)
