"""The daemon's end of one worker: the process's record, its link, and calls over it.

A :class:`Worker` is written to by one task at a time (``send`` holds a lock
only while a frame is partly written) and read by the pool's reader task, which
wakes the waiting :meth:`Worker.call` with the answer.  Everything a worker
sends is untrusted; :class:`OutputBudget` bounds what its printed output may
cost the daemon.
"""

from __future__ import annotations

import math
import socket
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from . import wire

#: the largest frame on a worker's link (a state or a reply may be large)
LINK_MAX_FRAME = 64 << 20

#: what a worker's output (its actors' prints and its own) may cost the daemon: bytes per
#: second on average, in bursts of up to LOG_BURST; beyond it, output is dropped and counted
LOG_RATE = 1 << 20
LOG_BURST = 4 << 20


@dataclass(slots=True)
class OutputBudget:
    """A token bucket for one worker's output (a worker printing in a loop must not keep the
    daemon busy, least of all a shared one whose own output goes to every actor it hosts)."""

    tokens: float = LOG_BURST
    stamp: float = 0.0
    dropped: int = 0  # bytes dropped since output last went through

    def take(self, size: int, now: float) -> tuple[bool, int]:
        """May ``size`` bytes go through now?  With it, how many were dropped before (to say so)."""
        self.tokens = min(LOG_BURST, self.tokens + (now - self.stamp) * LOG_RATE)
        self.stamp = now
        if self.tokens < size:
            self.dropped += size
            return False, 0
        self.tokens -= size
        dropped, self.dropped = self.dropped, 0
        return True, dropped


class WorkerDied(Exception):
    """The worker hosting the call is gone; ``str(err)`` says why (exit code or signal)."""


@dataclass(frozen=True, slots=True)
class Profile:
    """What a worker is confined to.  Actors share a worker only with equal profiles."""

    memory_limit: int | None = None
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()
    network: bool = False


@dataclass(eq=False, slots=True)
class _Pending:
    """One daemon -> worker call waiting for its answer (and, for ``run``, its pushes)."""

    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None
    error: BaseException | None = None
    pushes: Callable[[Any], None] | None = None  # takes each ``done`` push, for ``run``
    id: int = 0


@dataclass(eq=False)
class Worker:
    """One worker process and its link."""

    index: int
    profile: Profile
    dedicated: bool
    process: subprocess.Popen[bytes] | None = None
    stderr: trio.lowlevel.FdStream | None = None
    stream: trio.SocketStream | None = None
    pid: int = 0
    sandbox: str = "none"
    actors: set[str] = field(default_factory=set)
    dead: str | None = None
    kill_reason: str | None = None
    expected_end: bool = False  # retired or shut down on purpose: its end is no news
    culprit: str | None = None  # the actor whose handler made the daemon kill it, if any
    died: trio.Event = field(default_factory=trio.Event)
    ready: bool = False  # configured (confined): actors may be placed on it
    settled: trio.Event = field(default_factory=trio.Event)  # ready, or failed to start
    scratch: str = ""
    output: OutputBudget = field(default_factory=OutputBudget)
    _calls: dict[int, _Pending] = field(default_factory=dict)
    _next_id: int = 0
    _send_lock: trio.Lock = field(default_factory=trio.Lock)
    link: socket.socket | None = None  # the daemon's end of the socketpair (non-blocking), under ``stream``
    jammed: bool = False  # a send past its deadline left a frame half written: nothing more can be sent

    @property
    def alive(self) -> bool:
        return self.dead is None

    def label(self) -> str:
        return f"worker {self.index} (pid {self.pid})"

    async def send(self, frame: wire.Frame, deadline: float = math.inf) -> None:
        """Write one frame.  When no other write is under way it goes straight to the socket,
        without a scheduler round; only what the socket does not take at once waits, holding
        the send lock (taken before any yield, so no other frame can come between), until
        ``deadline`` at most: then :class:`trio.TooSlowError`, and if part of the frame was
        written the link is ``jammed`` (every later send fails with :class:`WorkerDied`)."""
        if self.stream is None or self.dead is not None:
            raise WorkerDied(self.dead or "the worker is not running")
        if self.jammed:
            raise WorkerDied("its link has a frame left half written")
        data = wire.encode(frame, LINK_MAX_FRAME)
        link = self.link
        if link is not None and not self._send_lock.locked():
            try:
                sent = link.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                raise WorkerDied(self.dead or "the link to the worker broke") from None
            if sent == len(data):
                return
            data = data[sent:]
            self._send_lock.acquire_nowait()
        else:
            with trio.fail_at(deadline):
                await self._send_lock.acquire()
        try:
            await self._send_rest(data, deadline)
        finally:
            self._send_lock.release()

    async def _send_rest(self, data: bytes, deadline: float) -> None:
        """Write ``data`` (with the send lock held), waiting for room as needed."""
        stream = self.stream
        if stream is None or self.jammed:  # it died (or jammed) while this call waited for the link
            raise WorkerDied(self.dead or "the worker is not running")
        try:
            with trio.fail_at(deadline):
                await stream.send_all(data)
        except trio.TooSlowError:
            self.jammed = True  # (part of the frame may be written: nothing else can follow it)
            raise
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            raise WorkerDied(self.dead or "the link to the worker broke") from None

    async def call(self, op: str, args: dict[str, Any], pushes: Any = None) -> Any:
        """Call the worker and wait for its answer; raises :class:`WorkerDied` or the
        worker's error (as a :class:`TheaterError`)."""
        pending = await self.start_call(op, args, pushes)
        try:
            await pending.done.wait()
        finally:
            self.forget(pending)
        return self.answer(pending)

    async def start_call(self, op: str, args: dict[str, Any], pushes: Any = None,
                         deadline: float = math.inf) -> _Pending:
        """Send a call; its ``done`` event is set when the answer (or the worker's end) comes.
        The caller waits as it likes, then calls :meth:`forget` and :meth:`answer`.  A call
        the link does not take by ``deadline`` raises :class:`trio.TooSlowError`."""
        self._next_id += 1
        pending = _Pending(pushes=pushes, id=self._next_id)
        self._calls[pending.id] = pending
        try:
            await self.send(wire.Call(pending.id, op, args), deadline)
        except BaseException:
            self.forget(pending)
            raise
        return pending

    def forget(self, pending: _Pending) -> None:
        """No more pushes or answer for this call (it was answered, or its caller gave up)."""
        self._calls.pop(pending.id, None)

    @staticmethod
    def answer(pending: _Pending) -> Any:
        """The answer of a finished call, or its error raised."""
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _fail_calls(self, reason: str) -> None:
        for pending in list(self._calls.values()):
            if not pending.done.is_set():
                pending.error = WorkerDied(reason)
                pending.done.set()
        self._calls.clear()

