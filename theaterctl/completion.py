"""Dynamic shell completion: actor names and channel ids, asked of a running theaterd.

Used as ``shell_complete=`` callbacks on click parameters.  The completion
scripts in ``completions/`` call ``theaterctl`` with
``_THEATERCTL_COMPLETE=<shell>_complete``; click then calls these functions.

They must never get in the way of the user's typing, so they:

* only *connect* to an already running daemon (never start one),
* give up quickly (1 s to connect, 1 s per answer),
* return ``[]`` on any failure, printing nothing.

The socket is the one the command line would use: the group's ``--socket``
option (which click has already parsed, with ``$THEATER_SOCKET`` as its
fallback), else the default from :func:`daemon.paths.default_socket`.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from click.shell_completion import CompletionItem

TIMEOUT = 1.0  # seconds: connect and each answer; completion gives up silently after it

# Commands that also work on stopped actors (their chains and last state are kept).
_READS_STOPPED = {"state", "inspect"}
_READS_STOPPED_GROUPS = {"chain"}
# Commands that message the actor: only a running one can take them (not a failed or stopping one).
_NEEDS_RUNNING = {"send", "request", "channel"}


def _socket_path(ctx: click.Context | None) -> str:
    """The --socket given on the command line or via $THEATER_SOCKET, else the default path."""
    from daemon.paths import SOCKET_ENV, default_socket

    node = ctx
    while node is not None:
        value = node.meta.get("theater.socket_path") or node.params.get("socket")  # after or before the command
        if value:
            return str(value)
        node = node.parent
    env = os.environ.get(SOCKET_ENV)
    if env:
        return env
    return default_socket()


def _ask(ctx: click.Context | None, op: str, **args: Any) -> Any:
    """One call to a running daemon; raises on any failure (the callers swallow it)."""
    from .client import Client

    with Client.connect(_socket_path(ctx), timeout=TIMEOUT) as client:
        return client.call_with_deadline(op, TIMEOUT, **args)


def _include_stopped(ctx: click.Context | None) -> bool:
    if ctx is None or ctx.command is None:
        return False
    if ctx.command.name in _READS_STOPPED:
        return True
    parent = ctx.parent
    return bool(parent is not None and parent.command is not None and parent.command.name in _READS_STOPPED_GROUPS)


def complete_actor(ctx: click.Context, param: click.Parameter | None, incomplete: str) -> list[CompletionItem]:
    """Names of the daemon's actors starting with ``incomplete`` (ids too, once something is typed)."""
    try:
        actors = _ask(ctx, "list", all=True if _include_stopped(ctx) else None)
        if ctx is not None and ctx.command is not None and ctx.command.name in _NEEDS_RUNNING:
            actors = [a for a in actors if a.get("status") == "running"]
        from click.shell_completion import CompletionItem

        items: list[CompletionItem] = []
        seen: set[str] = set()
        for actor in actors:
            name = str(actor.get("name") or "")
            if name and name.startswith(incomplete) and name not in seen:
                seen.add(name)
                items.append(CompletionItem(name, help=str(actor.get("status") or "") or None))
        if incomplete:
            for actor in actors:
                ident = str(actor.get("id") or "")
                if ident and ident.startswith(incomplete) and ident not in seen:
                    seen.add(ident)
                    items.append(CompletionItem(ident, help=str(actor.get("name") or "") or None))
        return items
    except Exception:
        return []


def complete_channel(ctx: click.Context, param: click.Parameter | None, incomplete: str) -> list[CompletionItem]:
    """Ids of the daemon's open channels starting with ``incomplete``."""
    try:
        channels = _ask(ctx, "channels")
        from click.shell_completion import CompletionItem

        items: list[CompletionItem] = []
        for channel in channels:
            ident = str(channel.get("id") or "")
            if ident and ident.startswith(incomplete):
                opener, target = channel.get("opener_name"), channel.get("target_name")
                items.append(CompletionItem(ident, help=f"{opener} -> {target}" if opener and target else None))
        return items
    except Exception:
        return []


def complete_event_type(ctx: click.Context, param: click.Parameter | None, incomplete: str) -> list[CompletionItem]:
    """The chain's event types (no daemon needed), also by their short form ('handle-send')."""
    from click.shell_completion import CompletionItem

    from .events import EVENT_TYPES

    return [CompletionItem(t) for t in EVENT_TYPES if t.startswith(incomplete) or t.split("/", 1)[1].startswith(incomplete)]


# -- the scripts -----------------------------------------------------------------------

PROG_NAME = "theaterctl"
COMPLETE_VAR = "_THEATERCTL_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


def _fish_class() -> type:
    from click.shell_completion import FishComplete

    class Fish(FishComplete):
        """click's fish script splits 'plain,VALUE<TAB>HELP' at every comma, cutting the
        description at its first comma; split only at the first one."""

        source_template = FishComplete.source_template.replace('(string split "," $completion)',
                                                               '(string split -m 1 "," -- $completion)')

    return Fish


def register_shells() -> None:
    """Use our fish class for ``_THEATERCTL_COMPLETE=fish_source`` (and ``fish_complete``)."""
    from click.shell_completion import add_completion_class

    add_completion_class(_fish_class(), "fish")


def source(shell: str) -> str:
    """The completion script for ``shell``, as ``_THEATERCTL_COMPLETE=<shell>_source theaterctl`` prints it."""
    from click.shell_completion import BashComplete, ShellComplete, ZshComplete

    from .cli import cli

    classes: dict[str, type[ShellComplete]] = {"bash": BashComplete, "zsh": ZshComplete, "fish": _fish_class()}
    comp = classes[shell](cli, {}, PROG_NAME, COMPLETE_VAR)
    if isinstance(comp, BashComplete):
        # BashComplete.source() first runs `bash --version` only to warn about
        # bash < 4.4 on stderr; the script itself does not depend on it.
        return ShellComplete.source(comp)
    return comp.source()


__all__ = ["complete_actor", "complete_channel", "complete_event_type", "register_shells", "source"]
