"""The event types a chain holds (docs/protocol.md §11.4), for checking ``--type`` and completing it.

Kept here, not imported from the daemon, so that a one-shot command stays cheap.
"""

from __future__ import annotations

EVENT_TYPES: tuple[str, ...] = (
    "runtime/spawn",
    "runtime/stop",
    "runtime/crash",
    "runtime/restart",
    "runtime/dead-letter",
    "runtime/dead-letter-retry",
    "message-server/handle-send",
    "message-server/handle-request",
    "message-server/handle-channel-open",
    "message-server/handle-channel-message",
    "message-server/handle-channel-close",
    "message-server/send",
    "message-server/request",
    "message-server/open-channel",
    "message-server/send-on-channel",
    "message-server/close-channel",
)


def event_type(text: str) -> str:
    """A known event type, also by its short form (``handle-send``); raises ``click.BadParameter``."""
    if text in EVENT_TYPES:
        return text
    matches = [t for t in EVENT_TYPES if t.split("/", 1)[1] == text]
    if len(matches) == 1:
        return matches[0]
    import click

    raise click.BadParameter(f"unknown event type {text!r}; the types are: {', '.join(EVENT_TYPES)}",
                             param_hint="'--type'")
