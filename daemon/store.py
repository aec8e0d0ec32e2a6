"""The embedded database behind the chains (the only disk I/O in the daemon).

One SQLite file in WAL mode, ``<home>/theater.db``.  One write connection,
used by the writer thread only: it takes every batch that is waiting, applies
them all in one transaction (a *group*), commits once, then wakes every waiter
at once.  The event loop only ever queues, and never blocks on disk: it hands
batches over with :meth:`Store.submit` (fire and forget, still ordered; a
waiter says when the batch is stored).  Reads run on worker
threads, each with its own read connection; WAL lets them run beside the
writer.

Durability: ``normal`` uses ``synchronous=NORMAL``: a committed transaction
is in the WAL file before it is acknowledged, so it survives the daemon being
killed (SIGKILL) but maybe not a power cut.  ``full`` uses
``synchronous=FULL``: the WAL is fsynced before acknowledging, so it survives
power loss.  Group commit keeps ``full`` fast: one fsync per group.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import queue
from collections import deque
import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .chain import FORMAT_VERSION, HASH_ALG, Head
from .errors import DiskFull
from .storeops import MIGRATIONS, SCHEMA, SCHEMA_VERSION, Batched, Op, apply_op

log = logging.getLogger("theaterd.store")

DB_NAME: Final = "theater.db"
MAX_GROUP: Final = 4096  # batches per transaction
# The write connection never checkpoints (copying the WAL back into the database,
# with an fsync): the checkpointer thread does, on its own connection, after this
# many commits or batches, so that no acknowledgement waits for a checkpoint.
CHECKPOINT_EVERY: Final = 256
CHECKPOINT_BATCHES: Final = 1024

class StoreError(Exception):
    """The store cannot be opened or written; the message says what to do."""


#: how often a full store checks whether it can write again
FULL_PROBE_SECONDS: Final = 0.5
_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})


def is_disk_full(exc: BaseException) -> bool:
    """SQLITE_FULL, SQLITE_IOERR (how SQLite reports ENOSPC while writing the WAL), ENOSPC, EIO."""
    if isinstance(exc, OSError):
        return exc.errno in _FULL_ERRNOS
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        name = getattr(exc, "sqlite_errorname", "") or ""
        return ("full" in text or "disk i/o" in text or name.startswith(("SQLITE_FULL", "SQLITE_IOERR")))
    return False


def free_bytes(path: Path) -> int:
    try:
        info = os.statvfs(path)
    except OSError:
        return 0
    return int(info.f_bavail * info.f_frsize)


# ---------------------------------------------------------------------------
# Rows read back at start-up


@dataclass(frozen=True, slots=True)
class ActorRow:
    id: str
    name: str
    manifest: str
    status: str
    reason: str | None
    created_us: int
    state: bytes | None
    handled: int
    head: Head


@dataclass(frozen=True, slots=True)
class MailRow:
    id: int
    actor: str
    sender: str
    payload: bytes
    attempts: int = 0
    sent: int = 0  # sends of its handling already stored (MailboxSent)


@dataclass(frozen=True, slots=True)
class DeadLetterRow:
    id: int
    actor: str
    sender: str
    payload: bytes
    attempts: int
    reason: str
    ts: int
    sent: int = 0  # sends of its handling already stored (MailboxSent)


class _Waiter:
    """Completion of one committed batch, signalled from the writer thread."""

    __slots__ = ("callback", "error")

    def __init__(self, callback: Callable[["_Waiter"], None] | None) -> None:
        self.callback = callback
        self.error: BaseException | None = None


class Store:
    """Owns the database file, the writer thread and the read connections."""

    def __init__(self, home: Path, durability: str = "normal") -> None:
        if durability not in ("normal", "full"):
            raise StoreError(f"unknown durability {durability!r} (use normal or full)")
        self.path = home / DB_NAME
        self.durability = durability
        self._items: deque[tuple[list[Op], _Waiter | None]] = deque()
        # held while ``submit`` checks ``full``/``failure`` and queues, and while the writer sets
        # one and takes the whole queue: nothing queued after a failed group is ever committed
        self._gate = threading.Lock()
        self._lock = threading.Lock()  # the commit lock: its holder drains and commits
        # wakes the writer thread: one token per wake-up (a C queue: no Python-level condition
        # variable on the event loop's thread); ``_wake_due`` says a token is on its way
        self._wakeup: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._wake_due = False
        self._stopping = False
        self._db: sqlite3.Connection | None = None  # the write connection (used under the lock)
        self._thread: threading.Thread | None = None
        self._local = threading.local()
        self._wake: Callable[[Callable[[], None]], None] | None = None
        self.failure: BaseException | None = None
        self._closed = False
        self._commits = 0  # since the last checkpoint request
        self._batches = 0  # (how much they held)
        self._checkpoint_due = threading.Event()
        self._checkpointer: threading.Thread | None = None
        #: set while the file system is full: every write is refused until a probe succeeds
        #: and the owner calls :meth:`resume`
        self.full: DiskFull | None = None
        self._space_back = False  # a probe succeeded; waiting for :meth:`resume`
        #: called on the event loop: when the store becomes full, and when space is back
        self.on_full: Callable[[DiskFull], None] | None = None
        self.on_space: Callable[[], None] | None = None
        self.on_failure: Callable[[BaseException], None] | None = None  # a write failed, not for space
        # actor -> hash of the state row last committed for it: an unchanged state is not written again
        self._state_written: dict[str, bytes] = {}
        self._check_and_init()

    # -- opening --------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if self.durability == 'full' else 'NORMAL'}")
        return db

    def _check_and_init(self) -> None:
        fix = f"move {self.path} aside (or restore it from a backup) and start the daemon again"
        try:
            db = self._connect()
            try:
                existing = {
                    row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
                if existing and "meta" not in existing:
                    raise StoreError(f"{self.path} is not a theater store; {fix}")
                if "meta" in existing:
                    meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
                    version = meta.get("schema_version")
                    if version in MIGRATIONS:
                        try:
                            db.execute("BEGIN")
                            for statement in MIGRATIONS[version]:
                                db.execute(statement)
                            db.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                                       (str(SCHEMA_VERSION),))
                            db.execute("COMMIT")
                        except sqlite3.DatabaseError as exc:
                            # (never as a full disk to wait out: this theaterd cannot read the old format)
                            todo = "free some space and start again" if is_disk_full(exc) else fix
                            raise StoreError(f"cannot upgrade {self.path} from format {version} to"
                                             f" {SCHEMA_VERSION}: {exc}; {todo}") from None
                        version = str(SCHEMA_VERSION)
                    if version != str(SCHEMA_VERSION):
                        raise StoreError(
                            f"{self.path} has store format {version!r}, this theaterd reads"
                            f" format {SCHEMA_VERSION}; use a matching theaterd or {fix}"
                        )
                # a full integrity check reads the whole file (seconds on a large store); reading
                # the schema and meta above already fails on a damaged header or catalogue, and
                # `theaterctl chain verify` checks every event
                db.executescript(SCHEMA)
                db.execute("BEGIN")
                for key, value in (
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("chain_format", str(FORMAT_VERSION)),
                    ("hash_alg", HASH_ALG),
                ):
                    db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, value))
                db.execute("COMMIT")
            finally:
                db.close()
        except sqlite3.DatabaseError as exc:
            if is_disk_full(exc) and self.path.exists():
                # it opens, but cannot be written now: start refusing writes until space is back
                self.full = self._full_error()
                log.error("%s", self.full)
                return
            raise StoreError(f"{self.path} is corrupt or not a database ({exc}); {fix}") from None

    # -- writer ---------------------------------------------------------

    def start(self, wake: Callable[[Callable[[], None]], None]) -> None:
        """Start the writer; ``wake(fn)`` must run ``fn`` on the event loop (thread-safe)."""
        self._wake = wake
        self._db = self._connect()
        self._db.execute("PRAGMA wal_autocheckpoint=0")  # the checkpointer thread does it
        self._thread = threading.Thread(target=self._writer, name="theater-store-writer", daemon=True)
        self._thread.start()
        self._checkpointer = threading.Thread(target=self._checkpoint_loop, name="theater-store-checkpoint",
                                              daemon=True)
        self._checkpointer.start()

    def close(self) -> None:
        """Flush everything submitted so far and stop the writer; later submits fail."""
        self._closed = True
        if self._thread is not None:
            self._stopping = True
            self._wake_writer(force=True)
            self._thread.join()
            self._thread = None
        if self._checkpointer is not None:
            self._checkpoint_due.set()
            self._checkpointer.join()
            self._checkpointer = None
        with self._lock:
            self._commit_pending()
            if self._db is not None:
                try:
                    # never wait for readers here (shutdown would wait out the busy timeout):
                    # if one still holds a snapshot, the next open checkpoints
                    self._db.execute("PRAGMA busy_timeout=0")
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error:
                    pass
                self._db.close()
                self._db = None

    def _full_error(self) -> DiskFull:
        return DiskFull(f"disk full: cannot write {self.path} ({free_bytes(self.path.parent)} bytes free);"
                        " nothing is written until space is freed")

    def submit(self, ops: list[Op], waiter: _Waiter | None = None) -> None:
        """Queue ``ops`` to be committed together, after everything queued before.

        While the store is full, or after it failed, nothing is queued: ``waiter`` (if any)
        is failed at once, on the event loop, with :class:`DiskFull` or :class:`StoreError`.
        """
        if self._closed:
            raise StoreError("the store is closed")
        with self._gate:
            error: BaseException | None = None
            if self.failure is not None:
                error = StoreError(f"the store failed earlier: {self.failure}")
            elif self.full is not None:
                error = self._full_error()
            else:
                self._items.append((ops, waiter))
        if error is None:
            self._wake_writer()
        elif waiter is not None:
            waiter.error = error
            if self._wake is not None:
                self._wake(functools.partial(_fire, [waiter]))

    def _wake_writer(self, force: bool = False) -> None:
        if force or not self._wake_due:
            self._wake_due = True
            self._wakeup.put(None)

    def waiter(self, callback: Callable[[_Waiter], None]) -> _Waiter:
        return _Waiter(callback)

    def _writer(self) -> None:
        while True:
            try:
                self._wakeup.get(timeout=FULL_PROBE_SECONDS if self.full is not None else None)
            except queue.Empty:  # (full: time to probe again)
                pass
            self._wake_due = False
            with self._lock:
                if self.full is not None:
                    self._probe_space()
                else:
                    self._commit_pending()
            if self._stopping and not self._items:
                return

    def _probe_space(self) -> None:
        """While full: can a real write go through again?  (Call with the commit lock held.)"""
        db = self._db
        if db is None or self._space_back:
            return
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # give back what the WAL holds
        except sqlite3.Error:
            pass
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('space_probe', hex(randomblob(32768)))")
            db.execute("DELETE FROM meta WHERE key = 'space_probe'")
            db.execute("COMMIT")
        except sqlite3.Error:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            return
        self._space_back = True
        log.warning("the store can be written again (%d bytes free)", free_bytes(self.path.parent))
        if self._wake is not None and self.on_space is not None:
            self._wake(self.on_space)

    def resume(self) -> None:
        """Accept writes again (after the owner has put its memory back in line with the store)."""
        self.full = None
        self._space_back = False
        self._wake_writer(force=True)

    def _commit_pending(self) -> None:
        """Commit what is queued, in order, in groups (call with the commit lock held)."""
        db = self._db
        items = self._items
        left = len(items)
        while items and db is not None and left > 0:
            group: list[tuple[list[Op], _Waiter | None]] = []
            while items and len(group) < MAX_GROUP and left > 0:
                group.append(items.popleft())
                left -= 1
            error: BaseException | None = None
            known = self._state_written
            batch = Batched()
            batched = batch if all(batch.add(ops, known) for ops, _ in group) else None
            try:
                db.execute("BEGIN")
                if batched is not None:
                    batched.apply(db)
                else:
                    for ops, _ in group:
                        for op in ops:
                            apply_op(db, op)
                db.execute("COMMIT")
                if batched is not None:
                    known.update(batched.hashes)
                else:
                    known.clear()  # (cheaper than tracking what the ordered path wrote)
            except BaseException as exc:  # noqa: BLE001 - reported to every waiter
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
                # Nothing after a failed group may be committed (it may depend on it): every
                # batch queued behind it fails too.  A full disk stops writes until space is
                # back; any other failure means the store cannot be trusted to write any more,
                # and the daemon is told, to stop (what was acknowledged is all stored).
                with self._gate:
                    if is_disk_full(exc):
                        error = self.full = self._full_error()
                        what = str(error)
                        notice = None if self.on_full is None else functools.partial(self.on_full, error)
                    else:
                        error = self.failure = exc
                        what = f"the store failed: {exc}"
                        notice = None if self.on_failure is None else functools.partial(self.on_failure, exc)
                    group.extend(items)
                    items.clear()
                left = 0
                log.error("%s", what)
                if self._wake is not None and notice is not None:
                    self._wake(notice)
            waiters = [w for _, w in group if w is not None]
            if waiters and self._wake is not None:
                for w in waiters:
                    w.error = error
                self._wake(functools.partial(_fire, waiters))
            self._commits += 1
            self._batches += len(group)
            if self._commits >= CHECKPOINT_EVERY or self._batches >= CHECKPOINT_BATCHES:
                self._commits = self._batches = 0
                self._checkpoint_due.set()

    def _checkpoint_loop(self) -> None:
        """Copy committed WAL frames back into the database, off the commit path.

        PASSIVE never blocks the writer; when it catches up with the end of the
        WAL, the next commit starts the WAL file over from its beginning."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        try:
            while True:
                self._checkpoint_due.wait()
                self._checkpoint_due.clear()
                if self._stopping:
                    return
                try:
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
                except sqlite3.Error as exc:
                    log.warning("checkpoint failed (the next one retries): %s", exc)
        finally:
            db.close()

    # -- reads (call from worker threads) -------------------------------

    def _reader(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._local.db = db
        return db

    def load_actors(self) -> list[ActorRow]:
        db = self._reader()
        rows = db.execute(
            "SELECT a.id, a.name, a.manifest, a.status, a.reason, a.created_us, s.data, a.handled,"
            " (SELECT seq FROM events e WHERE e.actor = a.id ORDER BY seq DESC LIMIT 1),"
            " (SELECT hash FROM events e WHERE e.actor = a.id ORDER BY seq DESC LIMIT 1)"
            " FROM actors a LEFT JOIN states s ON s.hash = a.state_hash ORDER BY a.created_us"
        ).fetchall()
        return [
            ActorRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], Head(r[8] or 0, r[9])) for r in rows
        ]

    def mailbox_count(self, actor: str) -> int:
        row = self._reader().execute("SELECT count(*) FROM mailbox WHERE actor = ?", (actor,)).fetchone()
        return int(row[0])

    def load_mailbox(self) -> list[MailRow]:
        db = self._reader()
        return [MailRow(*r) for r in db.execute("SELECT id, actor, sender, payload, attempts, sent FROM mailbox ORDER BY id")]

    def dead_letters(self, actor: str | None = None) -> list[DeadLetterRow]:
        db = self._reader()
        sql = "SELECT id, actor, sender, payload, attempts, reason, ts, sent FROM dead_letters"
        rows = db.execute(sql + " WHERE actor = ? ORDER BY id" if actor else sql + " ORDER BY id",
                          (actor,) if actor else ())
        return [DeadLetterRow(*r) for r in rows]

    def max_mail_id(self) -> int:
        """The highest message id ever stored (dead letters keep theirs)."""
        row = self._reader().execute(
            "SELECT max(m) FROM (SELECT max(id) AS m FROM mailbox UNION ALL SELECT max(id) FROM dead_letters)"
        ).fetchone()
        return int(row[0] or 0)

    def events(
        self,
        actor: str,
        *,
        limit: int | None = None,
        type: str | None = None,
        since_us: int | None = None,
        after_seq: int = 0,
        upto: int | None = None,
        page: int | None = None,
        max_bytes: int | None = None,
    ) -> list[tuple[int, bytes, bytes]]:
        """Matching events as ``(seq, hash, record)``, oldest first.

        ``limit`` narrows the match to the newest N; ``page`` returns only the
        oldest N of what matches, and ``max_bytes`` stops once the records
        returned reach that size (at least one is returned), so a caller can
        page forward with ``after_seq``.
        """
        db = self._reader()
        where = ["actor = ?", "seq > ?"]
        params: list[Any] = [actor, after_seq]
        if upto is not None:
            where.append("seq <= ?")
            params.append(upto)
        if type is not None:
            where.append("type = ?")
            params.append(type)
        if since_us is not None:
            where.append("ts >= ?")
            params.append(since_us)
        cond = " AND ".join(where)
        if limit is not None:
            if limit <= 0:
                return []
            row = db.execute(
                f"SELECT seq FROM events WHERE {cond} ORDER BY seq DESC LIMIT 1 OFFSET ?", (*params, limit - 1)
            ).fetchone()
            if row is not None and row[0] - 1 > params[1]:
                # fold the window's start into the one lower bound, so the index range is used
                params[1] = row[0] - 1
        sql = f"SELECT seq, hash, record FROM events WHERE {cond} ORDER BY seq"
        if page is not None:
            sql += f" LIMIT {int(page)}"
        cursor = db.execute(sql, params)
        if max_bytes is None:
            return cursor.fetchall()
        rows: list[tuple[int, bytes, bytes]] = []
        size = 0
        for row in cursor:
            rows.append(row)
            size += len(row[2])
            if size >= max_bytes:
                break
        cursor.close()
        return rows

    def max_seq(self, actor: str) -> int:
        row = self._reader().execute("SELECT max(seq) FROM events WHERE actor = ?", (actor,)).fetchone()
        return int(row[0] or 0)

    def iter_events(self, actor: str, batch: int = 5000) -> Iterator[tuple[int, bytes, bytes]]:
        """Stream the whole chain in pages, oldest first, in bounded memory."""
        after = 0
        db = self._reader()
        while True:
            rows = db.execute(
                "SELECT seq, hash, record FROM events WHERE actor = ? AND seq > ? ORDER BY seq LIMIT ?",
                (actor, after, batch),
            ).fetchall()
            if not rows:
                return
            yield from rows
            after = rows[-1][0]

    def find_event(self, actor: str, ref: str) -> tuple[int, bytes, bytes] | None:
        db = self._reader()
        if ref.isascii() and ref.isdigit() and len(ref) <= 18:
            row = db.execute(
                "SELECT seq, hash, record FROM events WHERE actor = ? AND seq = ?", (actor, int(ref))
            ).fetchone()
            if row is not None:
                return tuple(row)
        ref = ref.lower()
        if len(ref) >= 4 and all(c in "0123456789abcdef" for c in ref):
            low = bytes.fromhex(ref + "0" * (len(ref) % 2))
            high_hex = ref + "f" * (64 - len(ref))
            rows = db.execute(
                "SELECT seq, hash, record FROM events WHERE actor = ? AND hash >= ? AND hash <= ? LIMIT 2",
                (actor, low, bytes.fromhex(high_hex)),
            ).fetchall()
            rows = [r for r in rows if r[1].hex().startswith(ref)]
            if len(rows) == 1:
                return tuple(rows[0])
        return None

    def state(self, hash: bytes) -> bytes | None:
        row = self._reader().execute("SELECT data FROM states WHERE hash = ?", (hash,)).fetchone()
        return None if row is None else bytes(row[0])


def _fire(waiters: list[_Waiter]) -> None:
    for w in waiters:
        if w.callback is not None:
            w.callback(w)
