"""What the store writes: its schema (and the migrations from older formats), the write
operations (:data:`Op`), and how a group of them is applied in one transaction.

The writer thread applies each group either with one ``executemany`` per table
(:class:`Batched`, for the groups that handling and sending messages make) or
one operation at a time, in order (:func:`apply_op`).  Nothing here does I/O by
itself: the caller owns the connection and the transaction.
"""

from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass
from typing import Any, Final

from .chain import StoredEvent

SCHEMA_VERSION: Final = 3
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS actors (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    manifest TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    created_us INTEGER NOT NULL,
    state_hash BLOB,
    handled INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    actor TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash BLOB NOT NULL,
    type TEXT NOT NULL,
    ts INTEGER NOT NULL,
    record BLOB NOT NULL,
    PRIMARY KEY (actor, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS events_by_hash ON events (actor, hash);
CREATE TABLE IF NOT EXISTS states (hash BLOB PRIMARY KEY, data BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mailbox (
    id INTEGER PRIMARY KEY,
    actor TEXT NOT NULL,
    sender TEXT NOT NULL,
    payload BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    sent INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS mailbox_by_actor ON mailbox (actor, id);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY,
    actor TEXT NOT NULL,
    sender TEXT NOT NULL,
    payload BLOB NOT NULL,
    attempts INTEGER NOT NULL,
    reason TEXT NOT NULL,
    ts INTEGER NOT NULL,
    sent INTEGER NOT NULL DEFAULT 0
);
"""

# what each older format needs to become the current one
# (tables that did not exist yet are made by SCHEMA afterwards)
_MAILBOX_SENT = "ALTER TABLE mailbox ADD COLUMN sent INTEGER NOT NULL DEFAULT 0"
MIGRATIONS: dict[str, list[str]] = {
    "1": ["ALTER TABLE mailbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0", _MAILBOX_SENT],
    "2": [_MAILBOX_SENT, "ALTER TABLE dead_letters ADD COLUMN sent INTEGER NOT NULL DEFAULT 0"],
}


def state_hash(state: bytes | None) -> bytes | None:
    return None if state is None else hashlib.sha256(state).digest()


# ---------------------------------------------------------------------------
# Write operations (applied by the writer thread, in order)


@dataclass(frozen=True, slots=True)
class PutEvent:
    event: StoredEvent


@dataclass(frozen=True, slots=True)
class PutState:
    """Record the actor's current state (content-addressed)."""

    actor: str
    hash: bytes | None
    data: bytes | None
    handled: int


@dataclass(frozen=True, slots=True)
class PutActor:
    id: str
    name: str
    manifest: str
    status: str
    created_us: int
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class SetStatus:
    actor: str
    status: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class MailboxPut:
    id: int
    actor: str
    sender: str
    payload: bytes


@dataclass(frozen=True, slots=True)
class MailboxDelete:
    id: int


@dataclass(frozen=True, slots=True)
class MailboxSent:
    """The handling of stored message ``id`` has stored its first ``sent`` sends so far
    (at a ``request`` or channel call, before the handling itself is stored): a retry of
    the handling skips that many, so none is sent twice."""

    id: int
    sent: int


@dataclass(frozen=True, slots=True)
class MailboxAttempt:
    """A stored message crashed its actor ``attempts`` times so far."""

    id: int
    attempts: int


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Move a stored message to the dead letters: it will not be delivered again."""

    id: int
    reason: str
    attempts: int
    ts: int


@dataclass(frozen=True, slots=True)
class DeadLetterRetry:
    """Put a dead letter back into its actor's mailbox as message ``mail_id``."""

    id: int
    mail_id: int


@dataclass(frozen=True, slots=True)
class DeadLetterDrop:
    id: int


@dataclass(frozen=True, slots=True)
class RemoveActor:
    """Forget an actor (``rm``): status ``removed``, its stored mail gone; ``purge`` also
    deletes its row, its chain and its dead letters."""

    actor: str
    purge: bool = False


@dataclass(frozen=True, slots=True)
class MailboxClear:
    """Every stored message still waiting for ``actor`` (stopped: they will never be handled)."""

    actor: str


Op = (PutEvent | PutState | PutActor | SetStatus | MailboxPut | MailboxDelete | MailboxClear | MailboxAttempt
      | MailboxSent | DeadLetter | DeadLetterRetry | DeadLetterDrop | RemoveActor)


_INSERT_EVENT: Final = "INSERT INTO events (actor, seq, hash, type, ts, record) VALUES (?, ?, ?, ?, ?, ?)"
_INSERT_STATE: Final = "INSERT OR IGNORE INTO states (hash, data) VALUES (?, ?)"
_UPDATE_ACTOR_STATE: Final = "UPDATE actors SET state_hash = ?, handled = ? WHERE id = ?"
_INSERT_MAIL: Final = "INSERT INTO mailbox (id, actor, sender, payload) VALUES (?, ?, ?, ?)"
_DELETE_MAIL: Final = "DELETE FROM mailbox WHERE id = ?"
_MAIL_SENT: Final = "UPDATE mailbox SET sent = ? WHERE id = ?"


class Batched:
    """The statements of one group of message operations, one ``executemany`` each.

    Only for groups made of events, states and mailbox rows (what handling and sending
    messages write).  Those commute across tables; within a table the order is kept, a
    message's row is inserted before it is deleted (it was stored before it could be
    handled), and only the last state of each actor is written to ``actors``.  A state
    row already written for the actor (its state did not change) is not written again."""

    __slots__ = ("events", "states", "actors", "puts", "sent", "deletes", "hashes")

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.states: list[tuple[bytes, bytes | None]] = []
        self.actors: dict[str, tuple[bytes | None, int, str]] = {}
        self.puts: list[tuple[int, str, str, bytes]] = []
        self.sent: list[tuple[int, int]] = []
        self.deletes: list[tuple[int]] = []
        self.hashes: dict[str, bytes] = {}  # actor -> state hash written in this group

    def add(self, ops: list[Op], known: dict[str, bytes]) -> bool:
        """Take ``ops``; False when one of them needs the ordered path."""
        for op in ops:
            if isinstance(op, PutEvent):
                e = op.event
                self.events.append((e.actor, e.seq, e.hash, e.type, e.ts, e.record))
            elif isinstance(op, PutState):
                actor, h = op.actor, op.hash
                if h is not None and self.hashes.get(actor, known.get(actor)) != h:
                    self.states.append((h, op.data))
                    self.hashes[actor] = h
                self.actors[actor] = (h, op.handled, actor)
            elif isinstance(op, MailboxDelete):
                self.deletes.append((op.id,))
            elif isinstance(op, MailboxPut):
                self.puts.append((op.id, op.actor, op.sender, op.payload))
            elif isinstance(op, MailboxSent):
                self.sent.append((op.sent, op.id))
            else:
                return False
        return True

    def apply(self, db: sqlite3.Connection) -> None:
        if self.events:
            db.executemany(_INSERT_EVENT, self.events)
        if self.states:
            db.executemany(_INSERT_STATE, self.states)
        if self.puts:
            db.executemany(_INSERT_MAIL, self.puts)
        if self.sent:
            db.executemany(_MAIL_SENT, self.sent)
        if self.deletes:
            db.executemany(_DELETE_MAIL, self.deletes)
        if self.actors:
            db.executemany(_UPDATE_ACTOR_STATE, self.actors.values())


def apply_op(db: sqlite3.Connection, op: Op) -> None:
    """Apply one operation (the ordered path, for groups :class:`Batched` does not take)."""
    if isinstance(op, PutEvent):
        e = op.event
        db.execute(_INSERT_EVENT, (e.actor, e.seq, e.hash, e.type, e.ts, e.record))
    elif isinstance(op, MailboxPut):
        db.execute(_INSERT_MAIL, (op.id, op.actor, op.sender, op.payload))
    elif isinstance(op, MailboxDelete):
        db.execute(_DELETE_MAIL, (op.id,))
    elif isinstance(op, MailboxClear):
        db.execute("DELETE FROM mailbox WHERE actor = ?", (op.actor,))
    elif isinstance(op, PutState):
        if op.hash is not None:
            db.execute(_INSERT_STATE, (op.hash, op.data))
        db.execute(_UPDATE_ACTOR_STATE, (op.hash, op.handled, op.actor))
    elif isinstance(op, PutActor):
        db.execute(
            "INSERT OR REPLACE INTO actors (id, name, manifest, status, reason, created_us)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (op.id, op.name, op.manifest, op.status, op.reason, op.created_us),
        )
    elif isinstance(op, SetStatus):
        db.execute("UPDATE actors SET status = ?, reason = ? WHERE id = ?", (op.status, op.reason, op.actor))
    elif isinstance(op, MailboxAttempt):
        db.execute("UPDATE mailbox SET attempts = ? WHERE id = ?", (op.attempts, op.id))
    elif isinstance(op, MailboxSent):
        db.execute(_MAIL_SENT, (op.sent, op.id))
    elif isinstance(op, DeadLetter):
        db.execute(
            "INSERT INTO dead_letters (id, actor, sender, payload, attempts, reason, ts, sent)"
            " SELECT id, actor, sender, payload, ?, ?, ?, sent FROM mailbox WHERE id = ?",
            (op.attempts, op.reason, op.ts, op.id),
        )
        db.execute("DELETE FROM mailbox WHERE id = ?", (op.id,))
    elif isinstance(op, DeadLetterRetry):
        db.execute(
            "INSERT INTO mailbox (id, actor, sender, payload, attempts, sent)"
            " SELECT ?, actor, sender, payload, 0, sent FROM dead_letters WHERE id = ?",
            (op.mail_id, op.id),
        )
        db.execute("DELETE FROM dead_letters WHERE id = ?", (op.id,))
    elif isinstance(op, DeadLetterDrop):
        db.execute("DELETE FROM dead_letters WHERE id = ?", (op.id,))
    elif isinstance(op, RemoveActor):
        db.execute("DELETE FROM mailbox WHERE actor = ?", (op.actor,))
        if op.purge:
            db.execute("DELETE FROM events WHERE actor = ?", (op.actor,))
            db.execute("DELETE FROM dead_letters WHERE actor = ?", (op.actor,))
            db.execute("DELETE FROM actors WHERE id = ?", (op.actor,))
        else:
            db.execute("UPDATE actors SET status = 'removed' WHERE id = ?", (op.actor,))
    else:  # pragma: no cover - exhaustive
        raise TypeError(op)
