"""Worker processes: start, configure, place actors on, watch, kill and replace.

Theory of operation
-------------------
Actor code never runs in the daemon.  A worker is ``python -m daemon.worker``
started from a fresh interpreter with one end of a socketpair (its *link*)
and nothing else inherited; its first act is to confine itself (Landlock,
``no_new_privs``, ``RLIMIT_AS``) as the daemon's ``configure`` call says.

* *Shared* workers (``theaterd --workers N``) host any number of actors with
  the default limits, least loaded first; a *dedicated* worker hosts one actor
  (manifest ``isolation = "dedicated"``, or limits or sandbox rules of its own)
  and ends with it.
* Every link is read by one task.  Answers to the daemon's calls wake their
  caller; a ``host`` call from a handler is handed to :attr:`WorkerPool.on_host`
  in a task of its own; printed output goes to :attr:`WorkerPool.on_log`.
* A worker is *dead* once its process has exited or its link broke (whichever
  is seen first); then every call waiting on it raises :class:`WorkerDied`
  with the reason, its actors are unplaced, and a shared worker is replaced.
  The daemon treats everything a worker sends as untrusted input.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from . import wire, workerproc
from .errors import ErrorCode, TheaterError, error_from_code
from .workerlink import LINK_MAX_FRAME, LOG_RATE, Profile, Worker, WorkerDied

log = logging.getLogger("theaterd.workers")

HostHandler = Callable[[Worker, dict[str, Any]], Awaitable[Any]]
LogHandler = Callable[[Worker, str, str, str], None]

#: longest line of a worker's standard error kept
MAX_LINE = 2000
_RECEIVE_SIZE = 1 << 20
#: how long a new worker may take to start and confine itself
START_TIMEOUT = 30.0


def default_worker_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


class WorkerPool:
    """The daemon's workers.  ``await nursery.start(pool.run)`` before placing actors."""

    def __init__(self, shared: int, on_host: HostHandler, on_log: LogHandler, *,
                 default_profile: Profile | None = None, scratch_root: str | None = None) -> None:
        self.shared_count = max(1, shared)
        self.on_host = on_host
        self.on_log = on_log
        self.default_profile = default_profile or Profile()
        self.workers: list[Worker] = []  # alive or starting
        self._index = 0
        self._nursery: trio.Nursery | None = None
        self._scratch_root = scratch_root
        self.started = 0  # worker processes started so far (for views and tests)
        #: called (on the event loop) the moment a worker is known dead, before its callers wake
        self.on_death: Callable[[Worker], None] | None = None
        self._closing = False  # shutting down: no replacements

    # -- lifecycle ------------------------------------------------------

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        """Start the shared workers, then keep watching them until cancelled."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                async with trio.open_nursery() as starting:
                    for _ in range(self.shared_count):
                        starting.start_soon(self.start_worker, self.default_profile, False)
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._closing = True
            ending = list(self.workers)
            for worker in ending:  # nothing of ours outlives the pool
                self.kill(worker, "the daemon is shutting down", expected=True)
            for worker in ending:  # (and leaves no zombie behind)
                if worker.process is not None:
                    try:
                        worker.process.wait(timeout=2)
                    except subprocess.TimeoutExpired:
                        pass

    def views(self) -> list[dict[str, Any]]:
        return [{"pid": w.pid, "index": w.index, "dedicated": w.dedicated, "actors": len(w.actors),
                 "sandbox": w.sandbox} for w in self.workers if w.pid]

    def sandbox_summary(self) -> str:
        kinds = sorted({w.sandbox for w in self.workers if w.pid})
        return kinds[0] if len(kinds) == 1 else ("; ".join(kinds) or "none (no worker running)")

    def pids(self) -> set[int]:
        return {w.pid for w in self.workers if w.pid}

    def is_worker_process(self, pid: int) -> bool:
        """True for a worker or any process descended from one (read from /proc)."""
        pids = self.pids()
        seen = 0
        while pid > 1 and seen < 64:
            if pid in pids:
                return True
            try:
                with open(f"/proc/{pid}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                return False
            # the command name may hold spaces and parentheses: the ppid follows the last ')'
            fields = stat[stat.rfind(b")") + 2:].split()
            pid = int(fields[1]) if len(fields) > 1 else 0
            seen += 1
        return False

    async def start_worker(self, profile: Profile, dedicated: bool) -> Worker:
        assert self._nursery is not None, "the pool is not running"
        self._index += 1
        worker = Worker(self._index, profile, dedicated)
        self.workers.append(worker)
        try:
            await self._launch(worker)
        except BaseException:
            with trio.CancelScope(shield=True):
                await self._abandon(worker)
            self._forget(worker, "the worker failed to start")
            raise
        finally:
            worker.settled.set()
        worker.ready = True
        return worker

    async def _abandon(self, worker: Worker) -> None:
        """A start that failed or was cancelled: nothing of it may outlive it (the process
        is killed and reaped, the link closed)."""
        worker.expected_end = True
        if worker.process is not None and worker.process.returncode is None:
            try:
                os.killpg(worker.pid, signal.SIGKILL)
            except OSError:
                pass
            with trio.move_on_after(5):
                await workerproc.exited(worker.process)
        worker.link = None
        if worker.stream is not None:
            stream, worker.stream = worker.stream, None
            try:
                stream.socket.close()
            except OSError:
                pass

    async def _launch(self, worker: Worker) -> None:
        assert self._nursery is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        worker.scratch = tempfile.mkdtemp(prefix=f"theater-worker-{worker.index}-", dir=self._scratch_root)
        try:
            worker.process = workerproc.start(theirs.fileno(), worker.scratch)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        worker.pid = worker.process.pid
        assert worker.process.stderr is not None
        worker.stderr = trio.lowlevel.FdStream(os.dup(worker.process.stderr.fileno()))
        worker.process.stderr.close()
        self.started += 1
        self._nursery.start_soon(self._read_stderr, worker)
        worker.stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        worker.link = ours
        reader = wire.FrameReader(LINK_MAX_FRAME)
        self._nursery.start_soon(self._watch, worker)
        with trio.fail_after(START_TIMEOUT):
            hello = await self._first_frame(worker, reader)
            if not isinstance(hello, wire.Hello):
                raise WorkerDied("the worker did not introduce itself")
            self._nursery.start_soon(self._read, worker, reader)
            profile = worker.profile
            answer = await worker.call("configure", {
                "memory_limit": profile.memory_limit,
                "read": list(profile.read),
                "write": [*profile.write, worker.scratch],
                "network": profile.network,
                "scratch_bytes": workerproc.SCRATCH_BYTES if workerproc.private_mounts() else None,
            })
        worker.sandbox = str(answer.get("sandbox", "none")) if isinstance(answer, dict) else "none"
        log.info("started %s (%s)", worker.label(), worker.sandbox)

    async def _read_stderr(self, worker: Worker) -> None:
        """What the worker writes to its standard error (the interpreter's own reports, or
        actor code writing to fd 2): handed on line by line, bounded, as the worker's output.
        It never reaches the daemon's log as it is: a worker must not forge log lines."""
        stream = worker.stderr
        assert stream is not None
        pending = b""
        try:
            while True:
                data = await stream.receive_some(1 << 16)
                if not data:
                    break
                pending += data
                *lines, pending = pending.split(b"\n")
                if len(pending) > MAX_LINE:
                    lines.append(pending)
                    pending = b""
                for line in lines:
                    self._output(worker, "", "stderr", line[:MAX_LINE].decode("utf-8", "replace"))
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            await stream.aclose()

    async def _first_frame(self, worker: Worker, reader: wire.FrameReader) -> wire.Frame:
        while True:
            frame = reader.next_frame()
            if frame is not None:
                return frame
            stream = worker.stream
            if stream is None:
                raise WorkerDied(worker.dead or "the worker exited at start")
            try:
                data = await stream.receive_some(1 << 16)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                await worker.died.wait()
                raise WorkerDied(worker.dead or "the worker exited at start")
            reader.feed(data)

    async def _watch(self, worker: Worker) -> None:
        """Wait for the process to exit; then the worker is dead (if the link was not first)."""
        process = worker.process
        assert process is not None
        code = await workerproc.exited(process)
        self._mark_dead(worker, worker.kill_reason or workerproc.exit_reason(code))

    async def _read(self, worker: Worker, reader: wire.FrameReader) -> None:
        assert worker.stream is not None and self._nursery is not None
        # after a short read the link is most likely drained (the worker is busy with the
        # call): wait for it to become readable, rather than read, fail and then wait
        drained = False
        try:
            while True:
                for frame in reader.frames():
                    self._dispatch(worker, frame)
                link = worker.link
                if link is None:
                    break
                if drained:
                    await trio.lowlevel.wait_readable(link)
                else:
                    await trio.lowlevel.checkpoint()
                try:
                    data = link.recv(_RECEIVE_SIZE)
                except BlockingIOError:
                    drained = True
                    continue
                except OSError:  # closed or reset: like the end of the link
                    break
                if not data:
                    break
                drained = len(data) < _RECEIVE_SIZE
                reader.feed(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        except (wire.RemoteProtocolError, _BadFrame) as exc:
            self.kill(worker, f"the worker broke the link protocol: {exc}")
            return
        if worker.alive:
            # the link is gone: the process is gone or going; its exit code says why
            with trio.move_on_after(2):
                await worker.died.wait()
            if worker.alive:
                self.kill(worker, "the worker closed its link")

    def _dispatch(self, worker: Worker, frame: wire.Frame) -> None:
        if isinstance(frame, wire.Reply):
            pending = worker._calls.get(frame.id)
            if pending is not None:
                pending.result = frame.result
                pending.done.set()
        elif isinstance(frame, wire.Error):
            pending = worker._calls.get(frame.id) if frame.id is not None else None
            if pending is not None:
                pending.error = error_from_code(frame.code, frame.message)
                pending.done.set()
        elif isinstance(frame, wire.Push):
            if frame.event == "log":
                data = frame.data
                actor, stream, text = data.get("actor"), data.get("stream"), data.get("text")
                if isinstance(actor, str) and isinstance(stream, str) and isinstance(text, str):
                    self._output(worker, actor, stream, text)
                return
            pending = worker._calls.get(frame.id)
            if pending is None or pending.pushes is None or frame.event != "done":
                raise _BadFrame(f"unexpected push {frame.event!r}")
            try:
                pending.pushes(frame.data)
            except Exception as exc:  # noqa: BLE001 - a result the daemon cannot use
                raise _BadFrame(f"bad result: {exc}") from None
        elif isinstance(frame, wire.Call):
            if frame.op != "host":
                raise _BadFrame(f"unknown operation {frame.op!r}")
            assert self._nursery is not None
            self._nursery.start_soon(self._host_call, worker, frame)
        else:
            raise _BadFrame(f"unexpected {type(frame).__name__} frame")

    def _output(self, worker: Worker, actor: str, stream: str, text: str) -> None:
        """Hand a worker's output on, within its :class:`OutputBudget`."""
        allowed, dropped = worker.output.take(len(text), time.monotonic())
        if dropped:
            self.on_log(worker, actor, "stderr", f"[theaterd: {dropped} bytes of output dropped: more than "
                                                 f"{LOG_RATE >> 20} MiB/s]\n")
        if allowed:
            self.on_log(worker, actor, stream, text)

    async def _host_call(self, worker: Worker, call: wire.Call) -> None:
        try:
            result = await self.on_host(worker, call.args)
            answer: wire.Frame = wire.Reply(call.id, result)
        except TheaterError as exc:
            answer = wire.Error(call.id, int(exc.code), str(exc))
        except trio.Cancelled:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug here must not take the daemon down
            log.exception("host call failed")
            answer = wire.Error(call.id, int(ErrorCode.INTERNAL), f"internal error: {exc}")
        try:
            await worker.send(answer)
        except WorkerDied:
            pass

    def _mark_dead(self, worker: Worker, reason: str) -> None:
        if worker.dead is not None:
            return
        worker.dead = reason
        if self.on_death is not None:
            self.on_death(worker)  # (before any waiting call hears of it)
        if worker.expected_end:
            log.debug("%s ended: %s", worker.label(), reason)
        else:
            log.warning("%s died: %s", worker.label(), reason)
        worker._fail_calls(reason)
        worker.link = None
        if worker.stream is not None:
            stream, worker.stream = worker.stream, None
            try:
                stream.socket.close()
            except OSError:
                pass
        worker.died.set()
        self._forget(worker, reason)
        self._replace(worker)

    def _forget(self, worker: Worker, reason: str) -> None:
        if worker in self.workers:
            self.workers.remove(worker)
        if worker.scratch:
            workerproc.remove_tree(worker.scratch)

    def kill(self, worker: Worker, reason: str, *, expected: bool = False, culprit: str | None = None) -> None:
        """SIGKILL the worker; its callers get :class:`WorkerDied` with ``reason``.

        ``expected``: an end on purpose (shutdown, its last actor gone), logged quietly.
        ``culprit``: the actor whose handler is the reason (the others are not to blame)."""
        if worker.dead is not None:
            return
        worker.expected_end = worker.expected_end or expected
        if worker.kill_reason is None:
            worker.culprit = culprit
        worker.kill_reason = worker.kill_reason or reason
        if worker.process is not None and worker.process.returncode is None:
            try:
                os.killpg(worker.pid, signal.SIGKILL)
            except OSError:
                try:
                    worker.process.kill()
                except OSError:
                    pass
        else:
            self._mark_dead(worker, reason)

    async def close(self) -> None:
        """Stop every worker (daemon shutdown)."""
        self._closing = True
        for worker in list(self.workers):
            self.kill(worker, "the daemon is shutting down", expected=True)
        for worker in list(self.workers):
            with trio.move_on_after(5):
                await worker.died.wait()

    # -- placement ------------------------------------------------------

    async def place(self, profile: Profile, dedicated: bool) -> Worker:
        """A worker for a new actor: its own when dedicated; else the least loaded shared
        one of its profile that is ready.  Actors with the daemon's default profile share
        ``--workers`` workers; each other profile gets shared workers of its own.

        Only a configured worker takes actors (no actor code before the sandbox is in
        place).  While a shared worker's replacement starts, the actors of the dead one
        wait for it (one replacement, however many actors ask), unless another shared
        worker is ready."""
        if dedicated:
            return await self.start_worker(profile, True)
        count = self.shared_count if profile == self.default_profile else 1
        while True:
            shared = [w for w in self.workers if not w.dedicated and w.alive and w.profile == profile]
            ready = [w for w in shared if w.ready and w.stream is not None]
            if len(shared) < count:
                # none of this profile yet, or a shared worker died and no replacement is on its way
                worker = await self.start_worker(profile, False)
                if worker.alive:
                    return worker
                continue
            if ready:
                return min(ready, key=lambda w: len(w.actors))
            starting = next(w for w in shared if not w.ready)
            await starting.settled.wait()

    def _replace(self, worker: Worker) -> None:
        """Start the replacement of a shared worker that died, before any of its actors asks."""
        if worker.dedicated or worker.expected_end or self._nursery is None or not worker.ready or self._closing:
            return
        if worker.profile != self.default_profile:
            return  # (started when one of its actors next needs it)
        if sum(1 for w in self.workers if not w.dedicated and w.alive and w.profile == self.default_profile) \
                >= self.shared_count:
            return
        self._nursery.start_soon(self._start_replacement)

    async def _start_replacement(self) -> None:
        if self._closing or sum(1 for w in self.workers if not w.dedicated and w.alive
                                and w.profile == self.default_profile) >= self.shared_count:
            return  # an actor's placement started one first
        try:
            await self.start_worker(self.default_profile, False)
        except (WorkerDied, OSError, trio.TooSlowError) as exc:
            log.warning("could not start a replacement worker (the next placement tries again): %s", exc)


class _BadFrame(Exception):
    pass


def finite_or_none(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0:
        return float(value)
    return None
