"""The protocol's operations (docs/protocol.md, section 9), one method each.

:class:`Operations` is mixed into :class:`daemon.server.Connection`: an
``op_<name>`` method gets the call and its checked arguments; what it returns
is the reply, what it raises is the error (the connection turns it into an
error frame in one place).  Quick ops run in order on the connection's reader;
slow ones (spawn, stop, chain reads, channel opens) answer from a task of their
own through ``_spawn`` and return :data:`LATER`, as do ``send`` (answered once
stored) and ``request`` (answered when the actor replies, with no task waiting).
"""

from __future__ import annotations

import enum
import math
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import trio

from . import __version__, wire
from .chain import event_view, export_line
from .chainverify import verify_chain
from .channels import ClientEnd
from .errors import BadInput, NotFound, TheaterError
from .jsontext import check_json
from .runtime import PendingRequest, ReplySlot, Runtime
from .store import free_bytes
from .timers import Timer

if TYPE_CHECKING:
    from .server import Server

EXPORT_PAGE = 2000  # events per export page at most
CHAIN_PAGE = 1000  # events per chain page at most
PAGE_BYTES = 256 * 1024  # record bytes per page: keeps answers well under the frame cap


class Later(enum.Enum):
    LATER = "later"


LATER: Final = Later.LATER  # what an op returns when its answer is written later


async def _first(work: Awaitable[tuple[Any, Any]]) -> Any:
    return (await work)[0]


class Operations:
    """The ``op_<name>`` methods of a daemon connection, and what they use of it."""

    server: Server
    runtime: Runtime
    client_ends: set[ClientEnd]
    waiting: dict[ReplySlot, Timer]
    in_flight: int
    follows: int
    closing: bool

    if TYPE_CHECKING:  # provided by daemon.server.Connection
        def write(self, frame: wire.Frame) -> None: ...

        def _fail(self, call: wire.Call, exc: BaseException) -> None: ...

        def _spawn(self, call: wire.Call, work: Callable[[], Awaitable[Any]]) -> Later: ...

        async def _room(self) -> None: ...

    # quick, ordered ------------------------------------------------------

    async def op_status(self, call: wire.Call, args: dict[str, Any]) -> Any:
        rt = self.runtime
        return {
            "pid": os.getpid(),
            "version": __version__,
            "uptime": round(time.time() - rt.started_at, 3),
            "socket": self.server.socket_path,
            "home": self.server.home,
            "actors": sum(1 for a in rt.actors.values() if a.status == "running"),
            "connections": self.server.connections,
            "durability": rt.store.durability,
            "store": "ok" if rt.suspended is None else str(rt.suspended),
            "store_free": free_bytes(rt.store.path.parent),
            "workers": rt.pool.views(),
            "sandbox": rt.pool.sandbox_summary(),
            "calls_in_flight": self.server.calls_in_flight,
            "calls_in_flight_peak": self.server.calls_in_flight_peak,
        }

    async def op_shutdown(self, call: wire.Call, args: dict[str, Any]) -> Any:
        self.server.on_shutdown()  # (sets an event: the reply still goes out first)
        return None

    async def op_list(self, call: wire.Call, args: dict[str, Any]) -> Any:
        return self.runtime.list_view(bool(args.get("all")))

    async def op_channels(self, call: wire.Call, args: dict[str, Any]) -> Any:
        return self.runtime.channels.views()

    async def op_send(self, call: wire.Call, args: dict[str, Any]) -> Any:
        check_json(args["msg"])

        def finished(error: TheaterError | None) -> None:  # once the message is stored
            if error is not None:
                self._fail(call, error)
            else:
                self.write(wire.Reply(call.id, None))

        await self.runtime.send_start(None, args["actor"], args["msg"], args.get("timeout"), finished)
        return LATER

    async def op_request(self, call: wire.Call, args: dict[str, Any]) -> Any:
        check_json(args["msg"])
        pending = await self.runtime.request_start(None, args["actor"], args["msg"], args.get("timeout"))
        self._await_reply(call, pending)
        return LATER

    def _await_reply(self, call: wire.Call, pending: PendingRequest) -> None:
        """Write the reply (or the timeout) when it comes, with no task waiting for it."""
        slot = pending.slot
        timers = self.runtime.timers

        def answered(slot: ReplySlot) -> None:
            timers.cancel(self.waiting.pop(slot))
            self.in_flight -= 1
            if slot.error is not None:
                self._fail(call, slot.error)
            else:
                self.write(wire.Reply(call.id, slot.value))

        def timed_out() -> None:
            del self.waiting[slot]
            slot.callback = None
            slot.abandoned = True  # the handler records its late reply as discarded
            self.in_flight -= 1
            self._fail(call, pending.timed_out())

        self.in_flight += 1
        self.waiting[slot] = timers.at(pending.deadline, timed_out)
        slot.callback = answered
        if slot.event.is_set():
            answered(slot)

    async def op_channel_send(self, call: wire.Call, args: dict[str, Any]) -> Any:
        check_json(args["msg"])
        end = self._end_for(args["channel"])
        return await self.runtime.channels.send(end, args["channel"], args["msg"])

    async def op_channel_close(self, call: wire.Call, args: dict[str, Any]) -> Any:
        end = self._end_for(args["channel"])
        return await self.runtime.channels.close(end, args["channel"])

    def _prune_ends(self) -> None:
        """Forget ends whose channels have closed (a long session may open many)."""
        channels = self.runtime.channels.channels
        self.client_ends = {e for e in self.client_ends if e.channel_id is None or e.channel_id in channels}

    def _end_for(self, channel_id: str) -> Any:
        ch = self.runtime.channels.channels.get(channel_id)
        if ch is not None and ch.opener in self.client_ends:
            return ch.opener
        return ClientEnd(lambda event, data: None)  # not an end of that channel

    # slow, concurrent ----------------------------------------------------

    async def op_spawn(self, call: wire.Call, args: dict[str, Any]) -> Any:
        async def work() -> Any:
            actor = await self.runtime.spawn(args["manifest"], args.get("name"), args.get("state"))
            return {"id": actor.id, "name": actor.name}

        return self._spawn(call, work)

    async def op_stop(self, call: wire.Call, args: dict[str, Any]) -> Any:
        async def work() -> Any:
            actor = await self.runtime.stop(args["actor"])
            return {"id": actor.id, "name": actor.name, "status": actor.status, "dropped": actor.dropped}

        return self._spawn(call, work)

    async def op_restart(self, call: wire.Call, args: dict[str, Any]) -> Any:
        async def work() -> Any:
            actor = await self.runtime.restart(args["actor"])
            return {"id": actor.id, "name": actor.name, "status": actor.status}

        return self._spawn(call, work)

    async def op_remove(self, call: wire.Call, args: dict[str, Any]) -> Any:
        async def work() -> Any:
            purge = bool(args.get("purge"))
            actor = await self.runtime.remove(args["actor"], purge)
            return {"id": actor.id, "name": actor.name, "purged": purge}

        return self._spawn(call, work)

    async def op_prune(self, call: wire.Call, args: dict[str, Any]) -> Any:
        async def work() -> Any:
            purge = bool(args.get("purge"))
            gone = await self.runtime.prune(purge)
            return {"removed": [{"id": a.id, "name": a.name} for a in gone], "purged": purge}

        return self._spawn(call, work)

    async def op_dead_letters(self, call: wire.Call, args: dict[str, Any]) -> Any:
        async def work() -> Any:
            return await self.runtime.dead_letters(args.get("actor"))

        return self._spawn(call, work)

    async def op_dead_letter_retry(self, call: wire.Call, args: dict[str, Any]) -> Any:
        async def work() -> Any:
            return await self.runtime.retry_dead_letter(args["id"])

        return self._spawn(call, work)

    async def op_dead_letter_drop(self, call: wire.Call, args: dict[str, Any]) -> Any:
        async def work() -> Any:
            return await self.runtime.drop_dead_letter(args["id"])

        return self._spawn(call, work)

    async def op_logs(self, call: wire.Call, args: dict[str, Any]) -> Any:
        lines = args.get("lines")
        ref = args.get("actor")
        budget = self.server.settings.max_frame // 2  # the answer must fit in one frame
        if ref is None:
            kept, omitted = _newest_within(_daemon_log(self.server.home, lines), budget)
            return {"actor": None, "lines": kept, "omitted": omitted}
        actor = self.runtime.resolve(ref)
        every = list(actor.log)
        if lines is not None:
            every = every[-lines:] if lines > 0 else []
        kept, omitted = _newest_within(every, budget)
        return {"actor": actor.id, "name": actor.name, "lines": kept, "omitted": omitted}

    async def op_state(self, call: wire.Call, args: dict[str, Any]) -> Any:
        actor = self.runtime.resolve(args["actor"])
        return {"id": actor.id, "name": actor.name, "state": actor.state}

    async def op_inspect(self, call: wire.Call, args: dict[str, Any]) -> Any:
        async def work() -> Any:
            rt = self.runtime
            actor = rt.resolve(args["actor"])
            view = rt.actor_view(actor)
            view["kind"] = actor.manifest.kind
            view["state"] = actor.state
            view["channels"] = [c for c in rt.channels.views() if actor.id in (c["opener"], c["target"])]
            rows = await trio.to_thread.run_sync(lambda: rt.store.events(actor.id, limit=5 if args.get("events") is None else args["events"]))
            view["events"] = [event_view(h, rec) for _, h, rec in rows]
            return view

        return self._spawn(call, work)

    async def op_chain(self, call: wire.Call, args: dict[str, Any]) -> Any:
        rt = self.runtime
        actor = rt.resolve(args["actor"])
        limit = args.get("limit")
        if limit is not None and limit < 0:
            raise BadInput("limit must not be negative")
        page_size = args.get("page")
        if page_size is None:
            page_size = CHAIN_PAGE
        if page_size < 1:
            raise BadInput("page must be positive")
        page_size = min(page_size, CHAIN_PAGE)
        since = args.get("since")
        if since is not None and not (math.isfinite(since) and abs(since) < 1e12):
            raise BadInput("since must be a number of seconds since the epoch")
        since_us = int(since * 1_000_000) if since is not None else None
        etype = args.get("type")

        def read(after: int, lim: int | None) -> tuple[list[dict[str, Any]], int]:
            top = rt.store.max_seq(actor.id)
            rows = rt.store.events(actor.id, limit=lim, type=etype, since_us=since_us, after_seq=after, upto=top,
                                   page=page_size, max_bytes=PAGE_BYTES)
            return [event_view(h, rec) for _, h, rec in rows], top

        if not args.get("follow"):
            after = args.get("after") or 0
            return self._spawn(call, lambda: _first(trio.to_thread.run_sync(read, after, limit)))

        async def follow() -> Later:  # replies with the first page, then pushes; ends with the connection
            self.follows += 1
            try:
                events, top = await trio.to_thread.run_sync(read, args.get("after") or 0, limit)
                self.write(wire.Reply(call.id, events))
                # continue after what the first page showed (it may not reach the end)
                last = events[-1]["seq"] if events else top
                while not self.closing:
                    await trio.sleep(0.1)
                    if actor.head.seq <= last:
                        continue
                    while True:
                        new, top = await trio.to_thread.run_sync(read, last, None)
                        for ev in new:
                            await self._room()  # a backlog must not trip the slow-reader cut-off
                            self.write(wire.Push(call.id, "chain-event", ev))
                        if not new:
                            last = max(last, top)  # events skipped by a --type filter count as seen
                            break
                        last = new[-1]["seq"]
            finally:
                self.follows -= 1
            return LATER

        return self._spawn(call, follow)

    async def op_event(self, call: wire.Call, args: dict[str, Any]) -> Any:
        async def work() -> Any:
            actor = self.runtime.resolve(args["actor"])
            row = await trio.to_thread.run_sync(self.runtime.store.find_event, actor.id, args["ref"])
            if row is None:
                raise NotFound(f"actor {actor.name} has no event {args['ref']!r}")
            _, h, rec = row
            return event_view(h, rec, full=True)

        return self._spawn(call, work)

    async def op_verify(self, call: wire.Call, args: dict[str, Any]) -> Any:
        async def work() -> Any:
            actor = self.runtime.resolve(args["actor"])
            store = self.runtime.store

            def run() -> dict[str, Any]:
                v = verify_chain(store.path, actor.id, store.max_seq(actor.id))
                return {"actor": actor.id, "name": actor.name, "ok": v.ok, "checked": v.checked,
                        "broken_seq": v.broken_seq, "reason": v.reason,
                        "head": v.head.hash.hex() if v.head.hash else None}

            return await trio.to_thread.run_sync(run)

        return self._spawn(call, work)

    async def op_export(self, call: wire.Call, args: dict[str, Any]) -> Any:
        actor = self.runtime.resolve(args["actor"])
        store = self.runtime.store
        after = args.get("after") or 0

        def run() -> dict[str, Any]:
            top = store.max_seq(actor.id)
            rows = store.events(actor.id, after_seq=after, page=EXPORT_PAGE, max_bytes=PAGE_BYTES // 3)
            more = bool(rows) and rows[-1][0] < top
            return {"lines": [export_line(h, rec) for _, h, rec in rows], "last": rows[-1][0] if rows else after,
                    "more": more}

        return self._spawn(call, lambda: trio.to_thread.run_sync(run))

    async def op_channel_open(self, call: wire.Call, args: dict[str, Any]) -> Any:
        check_json(args["msg"])
        end = ClientEnd(lambda event, data: self.write(wire.Push(call.id, event, data)))

        async def work() -> Later:
            self._prune_ends()
            self.client_ends.add(end)
            try:
                ch = await self.runtime.channels.open_from_client(end, args["actor"], args["msg"], args.get("timeout"))
            except BaseException:
                self.client_ends.discard(end)
                raise
            end.channel_id = ch.id
            # the reply goes out before the first push of the channel: release() lets those go
            self.write(wire.Reply(call.id, {"channel": ch.id, "actor": ch.target.id, "name": ch.target.name}))
            self.runtime.channels.release(ch)
            return LATER

        return self._spawn(call, work)


def _newest_within(lines: list[str], budget: int) -> tuple[list[str], int]:
    """The newest of ``lines`` whose UTF-8 text fits in ``budget`` bytes, and how many older ones
    were left out."""
    size = 0
    for i in range(len(lines) - 1, -1, -1):
        size += len(lines[i].encode("utf-8", "replace")) + 8  # (the CBOR header of each line)
        if size > budget:
            return lines[i + 1:], i + 1
    return lines, 0


def _daemon_log(home: str, lines: int | None) -> list[str]:
    """The last ``lines`` lines of the daemon's log file (where ``daemon start`` puts it)."""
    path = os.path.join(home, "theaterd.log") if home else ""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - (1 << 20)))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    kept = text.splitlines()
    count = 200 if lines is None else lines
    return kept[-count:] if count > 0 else []
