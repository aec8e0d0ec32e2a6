"""The worker's side of the link: read calls, run handlers, make host calls.

One reader thread owns the socket's receiving side; every ``run`` call gets a
thread of its own from a pool (an actor's handler may block in a host call,
and the other actors of this worker must go on meanwhile).  The daemon never
sends a second ``run`` for an actor before the first has been answered, so
an actor's handlers run one at a time, in order.  Writes are serialised by a
lock, one whole frame at a time.
"""

from __future__ import annotations

import gc
import io
import os
import queue
import socket
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from actors import message_server as ms

from .. import wire
from ..errors import ErrorCode
from . import handlers

#: frames on the link may carry whole states: larger than a client's frames
LINK_MAX_FRAME = 64 << 20
#: handler threads: one per actor busy in a handler (most wait in host calls)
MAX_THREADS = 1024
#: bytes of one actor's printed output forwarded per write at most
MAX_LOG_CHUNK = 8192
#: the largest state or reply a handler may return
MAX_VALUE = 16 << 20


class Link:
    """The worker's end of the socketpair: framed calls both ways."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.reader = wire.FrameReader(LINK_MAX_FRAME)
        self._write_lock = threading.Lock()
        self._ids = iter(range(1, 1 << 62))
        self._ids_lock = threading.Lock()
        self._waiting: dict[int, queue.SimpleQueue[wire.Frame]] = {}

    def write(self, frame: wire.Frame, *more: wire.Frame) -> None:
        """Write whole frames, in one system call when there are several (one wake-up for the daemon)."""
        data = wire.encode(frame, LINK_MAX_FRAME)
        if more:
            data = b"".join([data, *(wire.encode(f, LINK_MAX_FRAME) for f in more)])
        with self._write_lock:
            self.sock.sendall(data)

    def write_encoded(self, data: bytes) -> None:
        """Write frames already encoded (whole ones, length prefixes included)."""
        with self._write_lock:
            self.sock.sendall(data)

    def call(self, op: str, args: dict[str, Any]) -> Any:
        """A call to the daemon from a handler thread; returns its result or raises."""
        with self._ids_lock:
            call_id = next(self._ids)
        box: queue.SimpleQueue[wire.Frame] = queue.SimpleQueue()
        self._waiting[call_id] = box
        try:
            self.write(wire.Call(call_id, op, args))
            answer = box.get()
        finally:
            self._waiting.pop(call_id, None)
        if isinstance(answer, wire.Error):
            raise ms.MessageServerError(answer.message)
        assert isinstance(answer, wire.Reply)
        return answer.result

    def answered(self, frame: wire.Reply | wire.Error) -> None:
        box = self._waiting.get(frame.id) if frame.id is not None else None
        if box is not None:
            box.put(frame)


class WorkerHost:
    """The message-server host of one actor's handler: every call goes to the daemon."""

    __slots__ = ("link", "actor_id")

    def __init__(self, link: Link, actor_id: str) -> None:
        self.link = link
        self.actor_id = actor_id

    def _call(self, op: str, **args: Any) -> Any:
        return self.link.call("host", {"actor": self.actor_id, "op": op, **args})

    def send(self, actor_id: str, msg: bytes, timeout: float | None) -> None:
        self._call("send", target=actor_id, msg=msg, timeout=timeout)

    def request(self, actor_id: str, msg: bytes, timeout: float | None) -> bytes:
        reply = self._call("request", target=actor_id, msg=msg, timeout=timeout)
        if not isinstance(reply, bytes):
            raise ms.MessageServerError("the daemon sent a reply that is not bytes")
        return reply

    def open_channel(self, actor_id: str, initial_msg: bytes, timeout: float | None) -> str:
        channel = self._call("open-channel", target=actor_id, msg=initial_msg, timeout=timeout)
        return str(channel)

    def send_on_channel(self, channel_id: str, msg: bytes) -> None:
        self._call("send-on-channel", channel=channel_id, msg=msg)

    def close_channel(self, channel_id: str) -> None:
        self._call("close-channel", channel=channel_id)


class _ActorOutput(io.TextIOBase):
    """``sys.stdout``/``sys.stderr`` of a worker: what a handler prints goes to the
    daemon, tagged with the actor whose handler runs on this thread."""

    def __init__(self, link: Link, stream: str, current: threading.local) -> None:
        self.link = link
        self.stream = stream
        self.current = current

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        actor = getattr(self.current, "actor", None) or ""
        data = text[:MAX_LOG_CHUNK]
        if data:
            try:
                self.link.write(wire.Push(0, "log", {"actor": actor, "stream": self.stream, "text": data}))
            except OSError:
                pass
        return len(text)


class Worker:
    """Actor modules hosted by this process, and the calls that run them."""

    def __init__(self, link: Link) -> None:
        self.link = link
        self.modules: dict[str, tuple[Any, str]] = {}  # actor id -> (module, path)
        self.pool = ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="handler")
        self.current = threading.local()
        self.sandbox = "none"

    def serve(self) -> None:
        """Read frames until the daemon closes the link, then exit."""
        sock = self.link.sock
        while True:
            try:
                data = sock.recv(1 << 20)
            except OSError:
                data = b""
            if not data:
                os._exit(0)  # the daemon went away: nothing here may outlive it
            self.link.reader.feed(data)
            for frame in self.link.reader.frames():
                self._dispatch(frame)

    def _dispatch(self, frame: wire.Frame) -> None:
        if isinstance(frame, (wire.Reply, wire.Error)):
            self.link.answered(frame)
        elif isinstance(frame, wire.Call):
            if frame.op == "run":
                self.pool.submit(self._guarded, frame, self._run)
            elif frame.op == "configure":
                self._guarded(frame, self._configure)  # before anything else: on this thread
            else:
                self.pool.submit(self._guarded, frame, self._simple)

    def _guarded(self, call: wire.Call, fn: Any) -> None:
        last: list[bytes] = []  # a ``run``'s last push, encoded: written together with the reply
        answer: wire.Frame
        try:
            result = fn(call, last) if call.op == "run" else fn(call)
        except _Refused as exc:
            answer = wire.Error(call.id, int(exc.code), str(exc))
        except BaseException as exc:  # noqa: BLE001 - reported to the daemon, never raised here
            answer = wire.Error(call.id, int(ErrorCode.ACTOR_FAILED), handlers.describe(exc))
        else:
            answer = wire.Reply(call.id, result)
        self.link.write_encoded(b"".join([*last, wire.encode(answer, LINK_MAX_FRAME)]))

    def _configure(self, call: wire.Call) -> dict[str, Any]:
        from .confine import confine

        self.sandbox = confine(call.args)
        return {"pid": os.getpid(), "sandbox": self.sandbox}

    def _simple(self, call: wire.Call) -> Any:
        args = call.args
        if call.op == "load":
            actor, path, source = args["actor"], args["path"], args["source"]
            self.current.actor = actor
            try:
                if args.get("kind") == "wasm":
                    module = handlers.load_component_actor(path, source, args)
                else:
                    module = handlers.load_module(actor, path, source)
            except BaseException as exc:  # noqa: BLE001 - actor code may raise anything
                if type(exc).__name__ == "ComponentError":  # not a usable component: bad input
                    raise _Refused(ErrorCode.BAD_INPUT, str(exc)) from None
                raise _Refused(ErrorCode.ACTOR_FAILED, f"cannot load {path}: {handlers.describe(exc)}") from None
            finally:
                self.current.actor = None
            self.modules[actor] = (module, path)
            return {"handlers": handlers.handlers_of(module)}
        if call.op == "unload":
            self.modules.pop(args["actor"], None)
            # a module and its functions hold each other (__globals__): only the cyclic
            # collector frees them, and what they held, now rather than some day
            gc.collect()
            return {}
        raise _Refused(ErrorCode.PROTOCOL, f"unknown worker operation {call.op!r}")

    def _run(self, call: wire.Call, last: list[bytes]) -> dict[str, Any]:
        """Handle a batch of one actor's messages in order; one ``done`` push each.

        Each push is written as soon as its handler returns, but the batch's last one,
        which goes into ``last`` for the caller to write with the reply: one write and
        one wake-up of the daemon for both (no handler runs between them)."""
        args = call.args
        actor = args["actor"]
        hosted = self.modules.get(actor)
        if hosted is None:
            raise _Refused(ErrorCode.NOT_FOUND, f"actor {actor} is not loaded in this worker")
        module, path = hosted
        state = args.get("state")
        host = WorkerHost(self.link, actor)
        self.current.actor = actor
        count = 0
        items = args["items"]
        final = len(items) - 1
        try:
            for index, item in enumerate(items):
                channel = item.get("channel")
                info = ms.ChannelInfo(channel[0], channel[1]) if channel else None
                params = item.get("params")
                ms._bind_host(host, info)
                try:
                    result = handlers.call_handler(module, path, item["fn"], state,
                                                   None if params is None else tuple(params))
                finally:
                    ms._bind_host(None)
                result = _bounded(result, item["fn"])
                try:  # encoded once: what the link cannot carry becomes an error here
                    push = wire.encode(wire.Push(call.id, "done", result), LINK_MAX_FRAME)
                except wire.LocalProtocolError as exc:  # a value the link cannot carry
                    result = {"outcome": "error", "error": f"{item['fn']} returned a result the daemon cannot take: {exc}"}
                    push = wire.encode(wire.Push(call.id, "done", result), LINK_MAX_FRAME)
                if result["outcome"] == "ok":
                    state = result["state"]
                count += 1
                if index == final or result["outcome"] == "crash":
                    last.append(push)
                    break  # (a crash: the daemon applies the restart policy before anything else)
                self.link.write_encoded(push)
        finally:
            self.current.actor = None
        return {"count": count}


def _bounded(result: dict[str, Any], fn: str) -> dict[str, Any]:
    """A handler's result, or an error when a state or reply is larger than allowed."""
    for key, noun in (("state", "a state"), ("value", "a reply")):
        value = result.get(key)
        if isinstance(value, bytes) and len(value) > MAX_VALUE:
            return {"outcome": "error",
                    "error": f"{fn} returned {noun} of {len(value)} bytes; the largest allowed is {MAX_VALUE >> 20} MiB"}
    return result


class _Refused(Exception):
    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def main(fd: int) -> None:
    threading.stack_size(4 << 20)  # handler threads: bounded address space under RLIMIT_AS
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    link = Link(sock)
    worker = Worker(link)
    sys.stdout = _ActorOutput(link, "stdout", worker.current)
    sys.stderr = _ActorOutput(link, "stderr", worker.current)
    link.write(wire.Hello(wire.PROTOCOL_VERSION, f"theater-worker {os.getpid()}"))
    worker.serve()
