"""Channel registry and lifecycle.

A channel joins an *opener* (an actor, or a terminal client's :class:`ClientEnd`)
and a *target* actor.  Lifecycle: ``opening`` (the target's
``handle_channel_open`` is deciding) -> ``open`` (accepted) -> ``closed``.
A rejected or abandoned open goes straight to ``closed``.

Invariants:

* Ids are ``ch_`` + 32 hex digits from ``secrets`` (128 random bits).
* Only the two ends may send on or close a channel.  A closed channel's id is
  remembered (bounded) so that "closed" and "unknown" stay different errors.
* When one end closes, the other end is notified exactly once: an actor gets
  a ``channel-close`` envelope in its mailbox, a client a ``channel-closed``
  push.  Disconnecting clients, stopping actors and shutdown all go through
  :meth:`ChannelRegistry._close`, which is the only place that notifies.
* Messages to an actor end travel through its mailbox, so they keep their
  order and are handled one at a time like everything else.  Messages to a
  client end that the target sends while the open is still being decided are
  held back until the opener has its reply (:meth:`release`).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

import trio

from .actor import CH_CLOSE, CH_MESSAGE, CH_OPEN, RUNNING, Actor, Envelope, ReplySlot
from .chain import EXTERNAL
from .errors import ActorFailed, BadInput, NotFound, TheaterError, Timeout

if TYPE_CHECKING:
    from .messaging import Messaging

OPENING = "opening"
OPEN = "open"
CLOSED = "closed"
REMEMBER_CLOSED = 100_000


class ClientEnd:
    """A terminal client's end of one channel; ``push`` writes to its connection."""

    __slots__ = ("push", "id", "channel_id")

    def __init__(self, push: Callable[[str, dict[str, Any]], None]) -> None:
        self.push = push
        self.id = EXTERNAL
        self.channel_id: str | None = None  # set once the open succeeded


End = Union["Actor", ClientEnd]


@dataclass(eq=False, slots=True)
class Channel:
    id: str
    opener: Any  # End
    target: Any  # Actor
    state: str = OPENING
    created: float = field(default_factory=time.time)
    from_opener: int = 0
    from_target: int = 0
    held: list[tuple[str, dict[str, Any]]] | None = None
    slot: Any = None  # the opener's ReplySlot while opening

    def other(self, end: Any) -> Any:
        return self.target if end is self.opener else self.opener

    def has(self, end: Any) -> bool:
        return end is self.opener or end is self.target


def _end_id(end: Any) -> str:
    return end.id


def _end_name(end: Any) -> str:
    return getattr(end, "name", EXTERNAL)


class ChannelRegistry:
    def __init__(self, runtime: Messaging) -> None:
        self.runtime = runtime
        self.channels: dict[str, Channel] = {}
        self.closed: OrderedDict[str, None] = OrderedDict()

    # -- lookup ---------------------------------------------------------

    def get(self, channel_id: str) -> Channel:
        ch = self.channels.get(channel_id)
        if ch is None:
            if channel_id in self.closed:
                raise ActorFailed(f"channel {channel_id} is closed")
            raise NotFound(f"unknown channel {channel_id}")
        return ch

    def _participant(self, end: Any, channel_id: str) -> Channel:
        ch = self.get(channel_id)
        if not ch.has(end):
            raise BadInput(f"channel {channel_id} does not belong to {_end_name(end)}")
        return ch

    def count_for(self, actor: Actor) -> int:
        return sum(1 for ch in self.channels.values() if ch.has(actor))

    def for_actor(self, actor: Actor) -> list[Channel]:
        return [ch for ch in self.channels.values() if ch.has(actor)]

    # -- open -----------------------------------------------------------

    async def open_from_actor(self, opener: Actor, ref: str, msg: bytes, timeout: float | None) -> str:
        rt = self.runtime
        data: dict[str, Any] = {"peer": ref, "size": len(msg)}
        try:
            ch = await self._open(opener, ref, msg, timeout, data)
        except TheaterError as exc:
            data.update(outcome="timeout" if isinstance(exc, Timeout) else "rejected"
                        if "rejected" in str(exc) else "error", error=str(exc))
            rt.emit(opener, "message-server/open-channel", data, msg)
            raise
        data.update(outcome="accepted", channel=ch.id)
        rt.emit(opener, "message-server/open-channel", data, msg)
        return ch.id

    async def open_from_client(self, end: ClientEnd, ref: str, msg: bytes, timeout: float | None) -> Channel:
        """Open for a terminal; call :meth:`release` once the opener has the reply."""
        return await self._open(end, ref, msg, timeout, {})

    async def _open(self, opener: Any, ref: str, msg: bytes, timeout: float | None,
                    data: dict[str, Any]) -> Channel:
        rt = self.runtime
        target = rt.live(ref)
        data["peer"], data["peer_name"] = target.id, target.name
        is_actor = not isinstance(opener, ClientEnd)
        if is_actor:
            rt.check_cycle(opener, target)
        limit = rt.timeout(timeout)
        deadline = trio.current_time() + limit
        ch = Channel("ch_" + secrets.token_hex(16), opener, target)
        ch.held = None if is_actor else []
        ch.slot = ReplySlot()
        self.channels[ch.id] = ch
        if is_actor:
            rt.waiting_on[opener] = target
        try:
            await rt.enqueue(target, Envelope(CH_OPEN, opener.id, msg, ch.slot, channel=ch), limit)
            try:
                accept = await ch.slot.wait(max(deadline - trio.current_time(), 0), "")
            except Timeout:
                raise Timeout(f"opening a channel to {target.name} timed out after {limit:g} s") from None
        except BaseException:
            if ch.state == OPENING:
                ch.slot.abandoned = True
            if ch.state == OPEN:
                await self._close(ch, closer=opener, reason="the opener gave up")
            else:
                self._forget(ch)
            raise
        finally:
            if is_actor:
                rt.waiting_on.pop(opener, None)
        if not accept.accepted:
            reason = (accept.message or b"").decode("utf-8", "replace").strip()
            raise ActorFailed(f"channel rejected by {target.name}" + (f": {reason}" if reason else ""))
        return ch

    def opened(self, ch: Channel, accept: Any, error: str | None) -> None:
        """Called by the runtime right after the target's ``handle_channel_open``."""
        accepted = error is None and accept is not None and accept.accepted
        if accepted and not ch.slot.abandoned:
            ch.state = OPEN
            return
        self._forget(ch)
        if accepted:  # the target thinks it is open, but the opener gave up: tell it, once
            self._notify_close(ch, ch.target, "the opener gave up waiting")

    def decided(self, channel: Channel, reply: ReplySlot | None, accept: Any, error: str | None) -> None:
        """The target decided on a channel open: tell the opener (a client once the
        target's event is stored, an actor at once)."""
        if channel.state == CLOSED:  # closed while the target was deciding
            if reply is not None:
                reply.fail(ActorFailed(f"channel {channel.id} was closed while it was being opened"))
            accepted = error is None and accept is not None and accept.accepted
            if accepted and channel.slot is not None and channel.slot.abandoned:
                # the opener gave up (nobody was told then); the target thinks it is open: tell it, once
                self._notify_close(channel, channel.target, "the opener gave up waiting")
            return
        self.opened(channel, accept, error)
        if reply is not None:
            if error is not None:
                reply.fail(ActorFailed(error))
            else:
                reply.set(accept)

    def release(self, ch: Channel) -> None:
        """The client opener has its reply: deliver what the target sent meanwhile."""
        held, ch.held = ch.held or [], None
        if isinstance(ch.opener, ClientEnd):
            for event, payload in held:
                ch.opener.push(event, payload)

    def _forget(self, ch: Channel) -> None:
        ch.state = CLOSED
        if self.channels.pop(ch.id, None) is not None:
            self.closed[ch.id] = None
            while len(self.closed) > REMEMBER_CLOSED:
                self.closed.popitem(last=False)

    # -- send -----------------------------------------------------------

    async def send(self, sender: Any, channel_id: str, msg: bytes) -> None:
        rt = self.runtime
        is_actor = not isinstance(sender, ClientEnd)
        data: dict[str, Any] = {"channel": channel_id, "size": len(msg)}
        try:
            ch = self._participant(sender, channel_id)
            await self._deliver(ch, sender, msg)
        except TheaterError as exc:
            if is_actor:
                data.update(outcome="error", error=str(exc))
                rt.emit(sender, "message-server/send-on-channel", data, msg)
            raise
        if is_actor:
            other = ch.other(sender)
            data.update(peer=_end_id(other), outcome="ok")
            rt.emit(sender, "message-server/send-on-channel", data, msg)

    async def _deliver(self, ch: Channel, sender: Any, msg: bytes) -> None:
        other = ch.other(sender)
        if sender is ch.opener:
            ch.from_opener += 1
        else:
            ch.from_target += 1
        if isinstance(other, ClientEnd):
            event = ("channel-message", {"channel": ch.id, "msg": msg})
            if ch.held is not None:
                ch.held.append(event)
            else:
                other.push(*event)
            return
        await self.runtime.enqueue(other, Envelope(CH_MESSAGE, _end_id(sender), msg, channel=ch),
                                   self.runtime.settings.default_timeout)

    # -- close ----------------------------------------------------------

    async def close(self, closer: Any, channel_id: str) -> None:
        rt = self.runtime
        ch = self._participant(closer, channel_id)
        await self._close(ch, closer=closer, reason=f"closed by {_end_name(closer)}")
        if not isinstance(closer, ClientEnd):
            rt.emit(closer, "message-server/close-channel",
                    {"channel": ch.id, "peer": _end_id(ch.other(closer)), "outcome": "ok"})

    async def _close(self, ch: Channel, closer: Any, reason: str) -> None:
        """Close ``ch`` and notify every end except ``closer`` exactly once."""
        if ch.state == CLOSED:
            return
        ch.state = CLOSED
        self._forget(ch)
        for end in (ch.opener, ch.target):
            if end is closer:
                continue
            self._notify_close(ch, end, reason)

    def _notify_close(self, ch: Channel, end: Any, reason: str) -> None:
        if isinstance(end, ClientEnd):
            self.release(ch)
            end.push("channel-closed", {"channel": ch.id, "reason": reason})
            return
        if end.status != RUNNING or end.mailbox_tx is None:
            return
        closer = ch.other(end)
        env = Envelope(CH_CLOSE, _end_id(closer), b"", channel=ch)
        try:
            end.mailbox_tx.send_nowait(env)
        except trio.WouldBlock:
            # exactly-once even under backpressure: deliver when there is room
            self.runtime.start_soon(self._late_close, end, env)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def _late_close(self, end: Actor, env: Any) -> None:
        try:
            await end.mailbox_tx.send(env)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    async def close_for_client(self, ends: list[ClientEnd], reason: str = "the client disconnected") -> None:
        owned = set(ends)
        for ch in [c for c in self.channels.values() if c.opener in owned]:
            await self._close(ch, closer=ch.opener, reason=reason)

    async def close_for_actor(self, actor: Actor, reason: str) -> None:
        for ch in self.for_actor(actor):
            await self._close(ch, closer=actor, reason=reason)

    async def close_everything(self, reason: str) -> None:
        for ch in list(self.channels.values()):
            await self._close(ch, closer=None, reason=reason)

    # -- views ----------------------------------------------------------

    def views(self) -> list[dict[str, Any]]:
        now = time.time()
        out = []
        for ch in self.channels.values():
            if ch.state != OPEN:
                continue
            out.append({
                "id": ch.id,
                "opener": _end_id(ch.opener),
                "opener_name": _end_name(ch.opener),
                "target": ch.target.id,
                "target_name": ch.target.name,
                "from_opener": ch.from_opener,
                "from_target": ch.from_target,
                "age": round(now - ch.created, 3),
            })
        return out
