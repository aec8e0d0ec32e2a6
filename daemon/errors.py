"""Stable error codes shared by the wire protocol, the daemon and the CLI.

One table: a wire error frame carries ``code``, and ``theaterctl`` exits with
the same number.  The numbers follow sysexits(3) where one fits, so that
scripts can tell "the actor said no" (1) from "the daemon is down" (69).

This module is pure: no I/O, no trio.
"""

from __future__ import annotations

import enum


class ErrorCode(enum.IntEnum):
    ACTOR_FAILED = 1  # the handler raised, the channel was rejected, the actor is failed
    BAD_INPUT = 2  # usage error or bad input (bad JSON, bad manifest, name in use)
    NOT_FOUND = 3  # unknown actor, channel or event
    TIMEOUT = 4  # a request or operation timed out
    UNAVAILABLE = 69  # daemon not running or unreachable (EX_UNAVAILABLE)
    INTERNAL = 70  # internal daemon error (EX_SOFTWARE)
    BUSY = 75  # temporary: mailbox full, too many connections (EX_TEMPFAIL)
    PROTOCOL = 76  # protocol error: malformed frame, wrong version (EX_PROTOCOL)


DESCRIPTIONS: dict[ErrorCode, str] = {
    ErrorCode.ACTOR_FAILED: "the actor failed or refused (handler raised, channel rejected)",
    ErrorCode.BAD_INPUT: "usage error or bad input",
    ErrorCode.NOT_FOUND: "unknown actor, channel or event",
    ErrorCode.TIMEOUT: "timeout",
    ErrorCode.UNAVAILABLE: "daemon not running or unreachable",
    ErrorCode.INTERNAL: "internal daemon error",
    ErrorCode.BUSY: "temporarily unavailable: mailbox full or daemon busy",
    ErrorCode.PROTOCOL: "protocol error",
}


class TheaterError(Exception):
    """Base of every error theater reports to a caller.

    ``str(err)`` is the one-line message shown to the user; ``err.code`` is
    the stable numeric code (and CLI exit code).
    """

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ActorFailed(TheaterError):
    code = ErrorCode.ACTOR_FAILED


class BadInput(TheaterError):
    code = ErrorCode.BAD_INPUT


class NotFound(TheaterError):
    code = ErrorCode.NOT_FOUND


class Timeout(TheaterError):
    code = ErrorCode.TIMEOUT


class Unavailable(TheaterError):
    code = ErrorCode.UNAVAILABLE


class InternalError(TheaterError):
    code = ErrorCode.INTERNAL


class Busy(TheaterError):
    code = ErrorCode.BUSY


class DiskFull(Busy):
    """The store's file system is full (or failing): nothing is written until space is back."""


class ProtocolError(TheaterError):
    code = ErrorCode.PROTOCOL


_BY_CODE: dict[int, type[TheaterError]] = {
    cls.code: cls
    for cls in (ActorFailed, BadInput, NotFound, Timeout, Unavailable, InternalError, Busy, ProtocolError)
}


def error_from_code(code: int, message: str) -> TheaterError:
    """Rebuild the domain exception for a wire error frame."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return TheaterError(message, ErrorCode.INTERNAL)
    return cls(message)
