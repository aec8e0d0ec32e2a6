"""The interactive channel session (trio): stdin and the socket at once.

    session
    ├─ socket reader    prints channel messages as they arrive; notices the close
    ├─ input reader     one JSON message per line; /close, EOF or Ctrl-C end it
    │                   (piped: raw reads of fd 0; on a terminal: the line editor,
    │                   prompt_toolkit on a worker thread, see editor.py)
    ├─ printer          on a terminal only: writes each output line above the
    │                   prompt, in order (what it has not written when the session
    │                   ends is written after the nursery)
    └─ signal watcher   Ctrl-C closes the channel cleanly

After the input ends the session waits until every message it sent is
acknowledged, then prints what still arrives until the channel has been quiet
for ``linger`` seconds (default 1 s; at most 10 x linger in all), then closes
the channel.  If the actor closes the channel, the session ends at once.  Every
way of ending prints one status line saying why; the exit status is 0 (input
ended, /close, the actor closed), 2 (a piped line that is not JSON, unless
``skip_bad_lines``), 69 (the daemon went away) or 128 + the signal (130 for
Ctrl-C).
"""

from __future__ import annotations

import json
from contextlib import aclosing
import math
import os
import signal
import sys
from pathlib import Path
from typing import Any

import trio

from daemon import wire
from daemon.connection import NEED_DATA, Connection, ConnectionClosed, Role, State
from daemon.errors import BadInput, TheaterError, Unavailable

from . import output
from .client import CLIENT_NAME, failure


class ChannelSession:
    def __init__(self, socket_path: Path, actor: str, initial: bytes, timeout: float | None,
                 linger: float = 1.0, pretty: bool = False, skip_bad_lines: bool = False,
                 interactive: bool = False, home: Path | None = None) -> None:
        self.socket_path = socket_path
        self.actor = actor
        self.initial = initial
        self.timeout = timeout
        self.linger = linger
        self.pretty = pretty
        self.skip_bad_lines = skip_bad_lines
        self.interactive = interactive
        self.home = home
        self.editor: Any = None  # the LineEditor of an interactive session
        self.printer: Any = None  # interactive: where output lines queue for the printer task
        self._printed: Any = None
        self.end_reason = ""  # why this side closed the channel, for the status line
        self.signal: int | None = None  # the signal that ended the session
        self.bad_line: str | None = None  # the error for a piped line that was not JSON
        self.conn = Connection(Role.CLIENT, CLIENT_NAME)
        self.stream: trio.SocketStream | None = None
        self.channel_id = ""
        self.target_name = actor
        self.pending: set[int] = set()
        self.acked = trio.Event()
        self.closed_by_peer = False
        self.last_message = 0.0
        self.replies: dict[int, trio.Event] = {}
        self.open_id = 0  # the channel-open call's id
        self.opened = False
        self.interrupted = False  # Ctrl-C before the channel was open
        self.lost = False  # the daemon went away during the session

    # -- low level ------------------------------------------------------------

    async def _connect(self) -> None:
        try:
            self.stream = await trio.open_unix_socket(os.fspath(self.socket_path))
        except FileNotFoundError:
            raise Unavailable(f"theaterd is not running (no socket at {self.socket_path}); start it with: theaterctl daemon start") from None
        except ConnectionRefusedError:
            raise Unavailable(f"theaterd is not running (stale socket {self.socket_path})") from None
        except OSError as exc:
            raise Unavailable(f"cannot connect to {self.socket_path}: {exc.strerror or exc}") from None
        from .client import check_daemon_uid

        check_daemon_uid(self.stream.socket, self.socket_path)  # type: ignore[arg-type]
        await self.stream.send_all(self.conn.send(wire.Hello(wire.PROTOCOL_VERSION, CLIENT_NAME)))
        frame = await self._read()
        if isinstance(frame, wire.Error):
            raise failure(frame)  # (anything but a welcome or an error was a RemoteProtocolError)

    def _call(self, op: str, args: dict[str, Any]) -> tuple[int, bytes]:
        """One call's id and bytes: the id is known (to wait for the answer) before the bytes go out."""
        if self.conn.state is State.CLOSED:  # the daemon's connection-level error came first
            raise trio.BrokenResourceError("the daemon closed the connection")
        return self.conn.call(op, args)

    async def _write(self, data: bytes) -> None:
        assert self.stream is not None
        await self.stream.send_all(data)

    async def _read(self) -> wire.Frame:
        """The next frame; the end of the stream (even in the middle of a frame) is :class:`Unavailable`."""
        assert self.stream is not None
        while True:
            event = self.conn.next_event()
            if event is NEED_DATA:
                data = await self.stream.receive_some(65536)
                if not data and self.conn.buffered:
                    raise Unavailable("the daemon closed the connection")
                self.conn.receive_data(data)
            elif isinstance(event, ConnectionClosed):
                raise Unavailable("the daemon closed the connection")
            else:
                return event

    @property
    def shown_id(self) -> str:
        """The channel id as the status lines show it: short (ch_ + 8 hex digits) on a terminal."""
        return output.short_id(self.channel_id, short=output.is_tty(sys.stderr))

    # -- the session ------------------------------------------------------------

    async def run(self) -> None:
        # signals are watched from the very start: Ctrl-C while opening aborts cleanly
        try:
            with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
                async with trio.open_nursery() as nursery:
                    self.nursery = nursery
                    nursery.start_soon(self._signals, signals)
                    early = await self._open()
                    self.opened = True
                    output.note(f"channel {self.shown_id} open to {self.target_name}; "
                                "one JSON message per line, Ctrl-D to end")
                    nursery.start_soon(self._socket_reader, early)
                    nursery.start_soon(self._input_interactive if self.interactive else self._input)
        finally:
            self._drain_printer()

    def _stop(self) -> None:
        """End the session: the line editor's prompt first (it holds the terminal), then every task."""
        if self.editor is not None:
            self.editor.cancel()
        self.nursery.cancel_scope.cancel()

    async def _open(self) -> list[wire.Frame]:
        await self._connect()
        args: dict[str, Any] = {"actor": self.actor, "msg": self.initial}
        if self.timeout is not None:
            args["timeout"] = self.timeout
        self.open_id, data = self._call("channel-open", args)
        await self._write(data)
        early: list[wire.Frame] = []
        while True:
            frame = await self._read()
            if isinstance(frame, wire.Reply) and frame.id == self.open_id:
                self.channel_id = frame.result["channel"]
                self.target_name = frame.result.get("name", self.actor)
                return early
            if isinstance(frame, wire.Error) and frame.id in (self.open_id, None):
                raise failure(frame)
            early.append(frame)

    async def _signals(self, signals: Any) -> None:
        async for signum in signals:
            self.signal = signum
            if signum == signal.SIGINT:
                _end_echoed_line()
            if not self.opened:
                self.interrupted = True
                self._stop()
                return
            self.end_reason = "interrupted" if signum == signal.SIGINT else f"signal {signal.Signals(signum).name}"
            await self._finish(linger=False)
            return

    async def _socket_reader(self, early: list[wire.Frame]) -> None:
        for frame in early:
            self._on_frame(frame)
        while True:
            try:
                frame = await self._read()
            except Unavailable:
                if not self.closed_by_peer:
                    self.lost = True
                    self.closed_by_peer = True
                self._stop()
                return
            if self._on_frame(frame):
                self._stop()
                return

    def _on_frame(self, frame: wire.Frame) -> bool:
        """Handle one frame; True when the session is over."""
        if isinstance(frame, wire.Push) and frame.id == self.open_id:
            if frame.event == "channel-message":
                self.last_message = trio.current_time()
                self._print(frame.data.get("msg", b""))
            elif frame.event == "channel-closed":
                self.closed_by_peer = True
                self._out(f"channel {self.shown_id} closed: {frame.data.get('reason') or 'by ' + self.target_name}",
                          err=True)
                return True
        elif isinstance(frame, (wire.Reply, wire.Error)) and frame.id in self.pending:
            self.pending.discard(frame.id)
            if isinstance(frame, wire.Error):
                self._out(f"not delivered: {frame.message}", err=True)
            if not self.pending:
                self.acked.set()
            event = self.replies.pop(frame.id, None)
            if event is not None:
                event.set()
        elif isinstance(frame, wire.Error) and frame.id is None:
            self._out(f"{output.PROG}: error: {output.one_line(frame.message)}", err=True)
            self.closed_by_peer = True
            return True
        return False

    def _print(self, msg: bytes) -> None:
        try:
            value = json.loads(msg)
        except (ValueError, UnicodeDecodeError):
            self._out(bytes(msg).decode("utf-8", "replace"))
            return
        if self.pretty:
            self._out(json.dumps(value, indent=2, ensure_ascii=False))
        else:
            self._out(json.dumps(value, separators=(",", ":"), ensure_ascii=False))

    def _out(self, line: str, err: bool = False) -> None:
        """One line of output, in order: written now, or (a prompt may be up) queued for the printer."""
        if self.printer is None:
            stream = sys.stderr if err else sys.stdout
            stream.write(line + "\n")
            stream.flush()
        else:
            self.printer.send_nowait((line + "\n", err))

    async def _print_above(self, receive: Any) -> None:
        """The interactive session's printer: each line above the prompt, one after the other."""
        async for text, err in receive:
            # shielded: a line taken from the queue is always written (print_above returns once the
            # prompt is gone at the latest, and every way of ending the session ends the prompt first)
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self.editor.print_above, text, err)

    def _drain_printer(self) -> None:
        """After the session's tasks: what the printer had not written yet, in order."""
        if self.printer is None or self._printed is None:
            return
        while True:
            try:
                text, err = self._printed.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            stream = sys.stderr if err else sys.stdout
            stream.write(text)
            stream.flush()
        self.printer = None

    async def _lines(self) -> Any:
        """Lines from fd 0, read raw on a thread: an abandoned ``os.read`` holds no Python
        lock, so the process can exit while it is still blocked (the actor closed first)."""
        buffer = b""
        while True:
            chunk = await trio.to_thread.run_sync(os.read, 0, 65536, abandon_on_cancel=True)
            if not chunk:
                if buffer:
                    yield buffer
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                yield line

    async def _input(self) -> None:
        async with aclosing(self._lines()) as lines:
            await self._send_lines(lines)
        await self._finish(linger=True)

    async def _send_lines(self, lines: Any) -> None:
        self.end_reason = "end of input"
        number = 0
        async for line in lines:
            number += 1
            text = line.decode("utf-8", "replace").strip()
            if not text:
                continue
            if text == "/close":
                self.end_reason = "/close"
                return
            try:
                json.loads(text)
            except ValueError as exc:
                if self.skip_bad_lines:
                    output.note(f"not JSON, not sent ({exc}): {text[:60]}")
                    continue
                self.end_reason = f"line {number} is not JSON"
                self.bad_line = (f"line {number} is not JSON ({exc}): {text[:60]}; it and the lines after it"
                                 " were not sent (--skip-bad-lines skips such lines)")
                return
            await self._send(text)

    async def _send(self, text: str) -> None:
        call_id, data = self._call("channel-send", {"channel": self.channel_id, "msg": text.encode()})
        self.pending.add(call_id)
        self.acked = trio.Event()
        await self._write(data)

    async def _input_interactive(self) -> None:
        """Lines from the line editor; the actor's messages are printed above the prompt."""
        from .editor import LineEditor, history_path

        history = history_path(self.home, self.target_name) if self.home is not None else None
        self.editor = LineEditor(f"{self.target_name}> ", history)
        self.printer, self._printed = trio.open_memory_channel[tuple[str, bool]](math.inf)
        self.nursery.start_soon(self._print_above, self._printed)
        self.end_reason = "end of input"
        while True:
            try:
                line = await trio.to_thread.run_sync(self.editor.read_line)
            except KeyboardInterrupt:
                self.signal = signal.SIGINT
                self.end_reason = "interrupted"
                await self._finish(linger=False)
                return
            if line is None:
                break
            text = line.strip()
            if not text:
                continue
            if text == "/close":
                self.end_reason = "/close"
                break
            try:
                json.loads(text)
            except ValueError as exc:
                self._out(f"not JSON, not sent ({exc}); type a JSON message, /close or Ctrl-D", err=True)
                continue
            await self._send(text)
        await self._finish(linger=True)

    async def _finish(self, linger: bool) -> None:
        if linger:
            with trio.move_on_after(max(self.linger * 10, 1)):
                if self.pending:
                    await self.acked.wait()
                self.last_message = max(self.last_message, trio.current_time())
                while trio.current_time() - self.last_message < self.linger:
                    await trio.sleep(self.last_message + self.linger - trio.current_time())
        if not self.closed_by_peer:
            done = trio.Event()
            with trio.move_on_after(5):
                try:
                    call_id, data = self._call("channel-close", {"channel": self.channel_id})
                    self.pending.add(call_id)
                    self.replies[call_id] = done
                    await self._write(data)
                    await done.wait()
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    pass
            self._out(f"channel {self.shown_id} closed ({self.end_reason or 'by this side'})", err=True)
        self._stop()


def _end_echoed_line() -> None:
    """The terminal echoed ^C without a newline: end that line before the status."""
    try:
        if os.isatty(2):
            os.write(2, b"\n")
    except OSError:
        pass


def run_session(socket_path: Path, actor: str, initial: bytes, timeout: float | None, linger: float,
                pretty: bool = False, skip_bad_lines: bool = False, interactive: bool = False,
                home: Path | None = None) -> int:
    """Run a session; returns the exit status (0, or 128 + the signal that ended it), or raises
    :class:`TheaterError` (its exit code) or ``KeyboardInterrupt`` (Ctrl-C before the channel opened)."""
    if not math.isfinite(linger) or linger < 0:
        raise TheaterError("linger must be a non-negative number")
    session = ChannelSession(socket_path, actor, initial, timeout, linger, pretty=pretty,
                             skip_bad_lines=skip_bad_lines, interactive=interactive, home=home)
    try:
        trio.run(session.run)
    except BaseExceptionGroup as group:  # translate the nursery's errors at this one boundary
        theater = group.subgroup(lambda e: isinstance(e, TheaterError))
        if theater is not None:
            raise _first_leaf(theater) from None
        raise
    if session.interrupted:
        raise KeyboardInterrupt
    if session.lost:
        raise Unavailable(f"the daemon went away; channel {session.shown_id} is gone")
    if session.bad_line is not None:
        raise BadInput(session.bad_line)
    if session.signal is not None:
        return 128 + int(session.signal)
    return 0


def _first_leaf(group: BaseException) -> BaseException:
    while isinstance(group, BaseExceptionGroup):
        group = group.exceptions[0]
    return group
