"""The line editor of an interactive channel session: prompt_toolkit, on a thread.

The session runs on trio in the main thread; prompt_toolkit runs its own asyncio
loop.  Each line is read by :meth:`LineEditor.read_line` on a worker thread
(``trio.to_thread.run_sync``), so the two loops never share a thread.  What the
session prints while a prompt is up (messages from the actor, notes) goes
through :meth:`LineEditor.print_above`: prompt_toolkit's ``run_in_terminal`` on
the prompt's loop erases the prompt, writes, and redraws the line being typed
intact below.  It returns once the text is written, so the session's output
keeps its order; text that was still waiting when the prompt ended is written
by the prompt's thread as it ends, before :meth:`read_line` returns.

:meth:`cancel` ends a prompt from any thread (the actor closed the channel, the
daemon went away): the prompt returns ``None`` and restores the terminal, and no
later :meth:`read_line` starts a new one.

Imported only for an interactive session on a terminal.
"""

from __future__ import annotations

import os
import sys
import threading
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.application import run_in_terminal
from prompt_toolkit.history import FileHistory, InMemoryHistory


def history_path(home: Path, actor: str) -> Path:
    """Where the lines typed to ``actor`` are kept: one file per actor under the state dir."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in actor) or "_"
    return home / "history" / f"channel-{safe}"


class LineEditor:
    def __init__(self, prompt: str, history: Path | None) -> None:
        hist: Any = InMemoryHistory()
        if history is not None:
            try:
                history.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd = os.open(history, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
                os.close(fd)
                hist = FileHistory(str(history))
            except OSError:
                pass  # no history file is no reason to refuse a session
        self.prompt = prompt
        self.session: PromptSession[str] = PromptSession(history=hist)
        self._lock = threading.Lock()
        self._closed = False
        self._running = False
        self._loop: Any = None  # the running prompt's asyncio loop
        self._pending: list[_Text] = []  # handed to the prompt's loop, not yet written

    def print_above(self, text: str, err: bool = False) -> None:
        """Write ``text`` above the prompt (or plainly, with no prompt up); blocks until written."""
        item = _Text(text, err)
        with self._lock:
            loop = self._loop if self._running else None
            if loop is not None:
                self._pending.append(item)
        if loop is None:
            item.write()
            return

        def schedule() -> None:  # on the prompt's loop
            import asyncio

            async def write_above() -> None:
                await run_in_terminal(lambda: self._write(item), in_executor=False)

            asyncio.ensure_future(write_above())

        try:
            loop.call_soon_threadsafe(schedule)
        except RuntimeError:  # the loop has just closed: the prompt's thread writes it as it ends
            pass
        item.done.wait()

    def _write(self, item: _Text) -> None:
        with self._lock:
            if item not in self._pending:
                return
            self._pending.remove(item)
            item.write()

    def read_line(self) -> str | None:
        """One line (blocking; call it on a worker thread); None at Ctrl-D or after :meth:`cancel`.

        Ctrl-C raises KeyboardInterrupt."""
        with self._lock:
            if self._closed:
                return None
        try:
            return self.session.prompt(self.prompt, pre_run=self._started)
        except EOFError:
            return None
        finally:
            with self._lock:
                self._running = False
                self._loop = None
                for item in self._pending:  # still waiting when the prompt ended: in order, now
                    item.write()
                self._pending.clear()

    def _started(self) -> None:  # on prompt_toolkit's loop, once the prompt runs
        with self._lock:
            self._running = True
            self._loop = self.session.app.loop
            if self._closed:
                self.session.app.exit(exception=EOFError())

    def cancel(self) -> None:
        """End the prompt now (thread-safe) and refuse new ones."""
        with self._lock:
            self._closed = True
            if not self._running:
                return
            app = self.session.app
            loop = app.loop
        if loop is not None:
            def stop() -> None:
                if app.is_running and not app.is_done:
                    app.exit(exception=EOFError())

            try:
                loop.call_soon_threadsafe(stop)
            except RuntimeError:  # the prompt has just finished and closed its loop
                pass


class _Text:
    __slots__ = ("text", "err", "done")

    def __init__(self, text: str, err: bool) -> None:
        self.text = text
        self.err = err
        self.done = threading.Event()

    def write(self) -> None:
        stream = sys.stderr if self.err else sys.stdout
        try:
            stream.write(self.text)
            stream.flush()
        finally:
            self.done.set()
