"""The line editor of an interactive channel session: prompt_toolkit, on a thread.

The session runs on trio in the main thread; prompt_toolkit runs its own asyncio
loop.  Each line is read by :meth:`LineEditor.read_line` on a worker thread
(``trio.to_thread.run_sync``), so the two loops never share a thread.  While the
session runs, ``sys.stdout`` and ``sys.stderr`` are prompt_toolkit's
``patch_stdout`` proxy: what the session prints (messages from the actor, notes)
is drawn *above* the line being typed, which is redrawn intact below it.

:meth:`cancel` ends a prompt from any thread (the actor closed the channel, the
daemon went away): the prompt returns ``None`` and restores the terminal, and no
later :meth:`read_line` starts a new one.

Imported only for an interactive session on a terminal.
"""

from __future__ import annotations

import os
import threading
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory, InMemoryHistory
from prompt_toolkit.patch_stdout import patch_stdout


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

    def stdout_patched(self) -> AbstractContextManager[None]:
        """While active, prints go above the prompt (``raw``: text is written as is)."""
        return patch_stdout(raw=True)

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

    def _started(self) -> None:  # on prompt_toolkit's loop, once the prompt runs
        with self._lock:
            self._running = True
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
