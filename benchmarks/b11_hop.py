"""#11: the cost of the worker hop.

11a: the daemon's own :class:`daemon.workerpool.WorkerPool`, run in this
process under trio, starts one (sandboxed) worker and loads the ``sink`` bench
actor into it; each ``run`` call hands it one request and waits for the
handler's ``done`` push and the reply, as a mailbox task does.  Baseline (same
run, alternating blocks): the same trio loop and framing against
``benchmarks/hop_peer.py``, a process that answers each call at once with the
same two frames: the floor of any process hop here.

11b: the hop's share of a whole request: a real theaterd with ``sink`` on
one persistent connection (figure 2's path); the p50 of 11a over this p50.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from typing import Any

import trio

from daemon import wire
from daemon.workerpool import WorkerPool

from .common import ROOT, SINK, Daemon, Figure, _bench_env, log, percentile, ratio, spawn

MSG = b'{"type":"ping"}'
ITEM = {"fn": "handle_request", "params": [MSG]}


async def _pool_block(worker: Any, actor: str, state: bytes, n: int, out: list[float]) -> None:
    results: list[Any] = []
    clock = time.perf_counter
    for _ in range(n):
        results.clear()
        t = clock()
        await worker.call("run", {"actor": actor, "state": state, "items": [ITEM]}, pushes=results.append)
        out.append(clock() - t)
        if len(results) != 1 or results[0].get("outcome") != "ok":
            raise RuntimeError(f"unexpected result from the worker: {results!r}")


async def _bare_block(stream: trio.SocketStream, reader: wire.FrameReader, n: int, out: list[float]) -> None:
    clock = time.perf_counter
    for i in range(n):
        t = clock()
        await stream.send_all(wire.encode(wire.Call(i + 1, "run", {"actor": "a", "state": b'{"n":0}',
                                                                    "items": [ITEM]}), 64 << 20))
        got = 0
        while got < 2:
            for frame in reader.frames():
                got += 1
                if isinstance(frame, wire.Reply):
                    assert got == 2
            if got < 2:
                data = await stream.receive_some(1 << 20)
                if not data:
                    raise RuntimeError("the bare peer went away")
                reader.feed(data)
        out.append(clock() - t)


async def _measure(blocks: int, per_block: int, warm: int) -> dict[str, list[float]]:
    lat: dict[str, list[float]] = {"pool": [], "bare": []}

    async def on_host(worker: Any, args: dict[str, Any]) -> Any:
        raise RuntimeError("no host calls in this benchmark")

    pool = WorkerPool(1, on_host, lambda *a: None)
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    peer = subprocess.Popen([sys.executable, "-m", "benchmarks.hop_peer", str(theirs.fileno())],
                            pass_fds=(theirs.fileno(),), env=_bench_env(), cwd=ROOT, stdin=subprocess.DEVNULL)
    theirs.close()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(pool.run)
            worker = pool.workers[0]
            actor = "11111111-2222-3333-4444-555555555555"
            await worker.call("load", {"actor": actor, "path": str(SINK.parent / "sink.py"),
                                       "source": (SINK.parent / "sink.py").read_bytes()})
            stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
            reader = wire.FrameReader(64 << 20)
            state = b'{"n":0}'
            await _pool_block(worker, actor, state, warm, [])
            await _bare_block(stream, reader, warm, [])
            for _ in range(blocks):
                await _bare_block(stream, reader, per_block, lat["bare"])
                await _pool_block(worker, actor, state, per_block, lat["pool"])
            await stream.aclose()
            await pool.close()
            nursery.cancel_scope.cancel()
    finally:
        peer.terminate()
        peer.wait(timeout=10)
    return lat


def _daemon_p50(n: int) -> float:
    lat: list[float] = []
    with Daemon() as d, d.client() as c:
        spawn(c, SINK)
        for _ in range(min(n, 300)):
            c.call("request", actor="sink", msg=MSG)
        for _ in range(n):
            t = time.perf_counter()
            c.call("request", actor="sink", msg=MSG)
            lat.append(time.perf_counter() - t)
    return percentile(lat, 50)


def run(quick: bool) -> list[Figure]:
    blocks, per_block, warm = (3, 100, 50) if quick else (10, 500, 300)
    log(f"#11: {blocks} x {per_block} worker run calls and bare hops, alternating; then the request path")
    lat = trio.run(_measure, blocks, per_block, warm)
    hop, bare = percentile(lat["pool"], 50), percentile(lat["bare"], 50)
    request = _daemon_p50(300 if quick else 3000)
    r = ratio(hop, bare)
    return [
        Figure("11a", 11, "worker hop: one request through a worker's run call, p50", hop, "s",
               bare, "bare process hop, same loop and framing", r, "(reported)", None,
               f"{len(lat['pool'])} calls each; p99 worker {percentile(lat['pool'], 99) * 1e6:.0f} us, "
               f"bare {percentile(lat['bare'], 99) * 1e6:.0f} us; the worker's own share (handler thread "
               f"hand-off, handler, result checks) {max(hop - bare, 0) * 1e6:.0f} us"),
        Figure("11b", 11, "worker hop's share of a request round trip (2a's path)", round(100 * hop / request, 1) if request else None,
               "%", None, "", None, "(reported)", None,
               f"hop p50 {hop * 1e6:.0f} us of a request p50 of {request * 1e6:.0f} us (theaterd, sink, same run)"),
    ]
