"""The SQLite store: schema, the group-committing writer, content-addressed states, reads, bad files."""

from __future__ import annotations

import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from daemon import chain
from daemon.chain import FORMAT_VERSION, HASH_ALG, Head, StoredEvent, head_after, make_event
from daemon.store import DB_NAME, MAX_GROUP, Store, StoreError
from daemon.storeops import (
    SCHEMA_VERSION,
    DeadLetter,
    DeadLetterRetry,
    MailboxDelete,
    MailboxPut,
    MailboxSent,
    Op,
    PutActor,
    PutEvent,
    PutState,
    SetStatus,
    state_hash,
)

ACTOR = "00000000-0000-4000-8000-000000000001"
OTHER = "00000000-0000-4000-8000-000000000002"


def inline(fn: Callable[[], None]) -> None:
    """A ``wake`` that runs the callbacks right on the writer thread."""
    fn()


def build_chain(actor: str, n: int, *, ts0: int = 1_000_000_000, step: int = 1000,
                type_of: Callable[[int], str] | None = None) -> list[StoredEvent]:
    head = Head()
    events = []
    for i in range(1, n + 1):
        ev = make_event(actor, head, type_of(i) if type_of else "t/test", {"i": i}, f"payload {i}".encode(),
                        ts=ts0 + i * step)
        head = head_after(ev)
        events.append(ev)
    return events


def commit(store: Store, ops: list[Any], timeout: float = 10) -> BaseException | None:
    """Submit ``ops`` and block until the writer reports; return the batch's error."""
    done = threading.Event()
    errors: list[BaseException | None] = []

    def callback(w: Any) -> None:
        errors.append(w.error)
        done.set()

    store.submit(ops, store.waiter(callback))
    assert done.wait(timeout), "the writer did not report"
    return errors[0]


def db_rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path)
    s.start(inline)
    try:
        yield s
    finally:
        s.close()


# ----------------------------------------------------------------------
# opening


def test_schema_is_created(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.close()  # never started: nothing to flush
    path = tmp_path / DB_NAME
    assert s.path == path and path.is_file()
    tables = {r[0] for r in db_rows(path, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"meta", "actors", "events", "states", "mailbox"} <= tables
    meta = dict(db_rows(path, "SELECT key, value FROM meta"))
    assert meta == {"schema_version": str(SCHEMA_VERSION), "chain_format": str(FORMAT_VERSION), "hash_alg": HASH_ALG}
    assert db_rows(path, "PRAGMA journal_mode") == [("wal",)]
    # opening again is fine and changes nothing
    Store(tmp_path, "full").close()
    assert dict(db_rows(path, "SELECT key, value FROM meta")) == meta


def test_unknown_durability(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unknown durability 'sometimes'"):
        Store(tmp_path, "sometimes")


def test_garbage_file_is_reported_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    path.write_bytes(b"this is not a database, just some garbage bytes\n" * 200)
    with pytest.raises(StoreError) as info:
        Store(tmp_path)
    message = str(info.value)
    assert str(path) in message
    assert "corrupt or not a database" in message
    assert "move" in message and "aside" in message  # says what to do


def test_damaged_pages_are_reported_with_the_file_name(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.start(inline)
    for i in range(20):
        assert commit(s, [PutEvent(ev) for ev in build_chain(f"actor-{i}", 20)]) is None
    s.close()
    path = tmp_path / DB_NAME
    assert not (tmp_path / f"{DB_NAME}-wal").exists() or (tmp_path / f"{DB_NAME}-wal").stat().st_size == 0
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 4 * page
    for offset in range(2 * page, len(data), page):  # keep the header page, wreck the rest
        data[offset:offset + 512] = b"\xa5" * 512
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError) as info:
        Store(tmp_path)
    assert str(path) in str(info.value)
    assert "corrupt" in str(info.value)


def test_a_database_of_something_else(tmp_path: Path) -> None:
    path = tmp_path / DB_NAME
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE recipes (name TEXT)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="is not a theater store") as info:
        Store(tmp_path)
    assert str(path) in str(info.value)


def test_a_different_schema_version_is_refused(tmp_path: Path) -> None:
    Store(tmp_path).close()
    path = tmp_path / DB_NAME
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.commit()
    db.close()
    with pytest.raises(StoreError) as info:
        Store(tmp_path)
    message = str(info.value)
    assert str(path) in message
    assert f"has store format '99', this theaterd reads format {SCHEMA_VERSION}" in message
    # and the file was left alone
    assert dict(db_rows(path, "SELECT key, value FROM meta"))["schema_version"] == "99"


def test_a_format_1_store_is_migrated_and_keeps_its_mailbox(tmp_path: Path) -> None:
    Store(tmp_path).close()
    path = tmp_path / DB_NAME
    db = sqlite3.connect(path)
    db.executescript(
        "DROP TABLE mailbox; DROP TABLE dead_letters;"
        "CREATE TABLE mailbox (id INTEGER PRIMARY KEY, actor TEXT NOT NULL, sender TEXT NOT NULL, payload BLOB NOT NULL);"
        "INSERT INTO mailbox VALUES (7, 'a', 'external', x'7b7d');"
        "UPDATE meta SET value = '1' WHERE key = 'schema_version';"
    )
    db.commit()
    db.close()
    store = Store(tmp_path)
    try:
        (row,) = store.load_mailbox()
        assert (row.id, row.actor, row.payload, row.attempts, row.sent) == (7, "a", b"{}", 0, 0)
        assert store.dead_letters() == []
    finally:
        store.close()
    assert dict(db_rows(path, "SELECT key, value FROM meta"))["schema_version"] == str(SCHEMA_VERSION)


def test_a_format_2_store_is_migrated_and_keeps_its_mailbox_and_dead_letters(tmp_path: Path) -> None:
    Store(tmp_path).close()
    path = tmp_path / DB_NAME
    db = sqlite3.connect(path)
    db.executescript(
        "DROP TABLE mailbox; DROP TABLE dead_letters;"
        "CREATE TABLE mailbox (id INTEGER PRIMARY KEY, actor TEXT NOT NULL, sender TEXT NOT NULL,"
        " payload BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE dead_letters (id INTEGER PRIMARY KEY, actor TEXT NOT NULL, sender TEXT NOT NULL,"
        " payload BLOB NOT NULL, attempts INTEGER NOT NULL, reason TEXT NOT NULL, ts INTEGER NOT NULL);"
        "INSERT INTO mailbox VALUES (7, 'a', 'external', x'7b7d', 2);"
        "INSERT INTO dead_letters VALUES (5, 'a', 'external', x'5b5d', 3, 'crashed', 1);"
        "UPDATE meta SET value = '2' WHERE key = 'schema_version';"
    )
    db.commit()
    db.close()
    store = Store(tmp_path)
    try:
        (row,) = store.load_mailbox()
        assert (row.id, row.attempts, row.sent) == (7, 2, 0)
        assert [(d.id, d.payload, d.attempts) for d in store.dead_letters()] == [(5, b"[]", 3)]
    finally:
        store.close()
    assert dict(db_rows(path, "SELECT key, value FROM meta"))["schema_version"] == str(SCHEMA_VERSION)


def test_a_store_that_cannot_be_upgraded_is_refused_with_one_line(tmp_path: Path) -> None:
    """An upgrade that fails (here: a column it adds is there already; a full disk is the
    likely case) is a StoreError to start with, never a store opened in its old format."""
    Store(tmp_path).close()
    path = tmp_path / DB_NAME
    db = sqlite3.connect(path)
    db.executescript("UPDATE meta SET value = '2' WHERE key = 'schema_version';")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match=r"cannot upgrade .* from format 2 to 3: duplicate column name: sent"):
        Store(tmp_path)
    assert dict(db_rows(path, "SELECT key, value FROM meta"))["schema_version"] == "2"  # rolled back


def test_the_sends_a_handling_stored_move_with_its_message_to_the_dead_letters_and_back(tmp_path: Path) -> None:
    store = Store(tmp_path)
    try:
        store.start(inline)
        assert commit(store, [MailboxPut(3, "a", "external", b"{}")]) is None
        assert commit(store, [MailboxSent(3, 2)]) is None
        assert store.load_mailbox()[0].sent == 2
        assert commit(store, [DeadLetter(3, "crashed", 3, 1)]) is None
        assert store.load_mailbox() == []
        assert commit(store, [DeadLetterRetry(3, 9)]) is None
        (row,) = store.load_mailbox()
        assert (row.id, row.sent, row.attempts) == (9, 2, 0)
    finally:
        store.close()


# ----------------------------------------------------------------------
# the writer


def test_group_commit_takes_every_waiting_batch_in_one_transaction(tmp_path: Path) -> None:
    s = Store(tmp_path)
    events = build_chain(ACTOR, 1000)
    fired: list[int] = []
    for i, ev in enumerate(events):  # queued before the writer starts: all waiting at once
        s.submit([PutEvent(ev)], s.waiter(functools.partial(_fired, fired, i)))
    wakes: list[int] = []

    def wake(fn: Callable[[], None]) -> None:
        wakes.append(1)
        fn()

    s.start(wake)
    s.close()
    assert len(wakes) == 1  # one group, one commit, one wake-up for all 1000 waiters
    assert fired == list(range(1000))  # in submission order
    assert db_rows(s.path, "SELECT count(*) FROM events") == [(1000,)]


def test_a_group_holds_at_most_max_group_batches(tmp_path: Path) -> None:
    s = Store(tmp_path)
    events = build_chain(ACTOR, MAX_GROUP + 10)
    sizes: list[int] = []
    current: list[int] = []
    for ev in events:
        s.submit([PutEvent(ev)], s.waiter(lambda w: current.append(1)))

    def wake(fn: Callable[[], None]) -> None:
        before = len(current)
        fn()
        sizes.append(len(current) - before)

    s.start(wake)
    s.close()
    assert sizes == [MAX_GROUP, 10]
    assert db_rows(s.path, "SELECT count(*), max(seq) FROM events") == [(MAX_GROUP + 10, MAX_GROUP + 10)]


def test_close_flushes_batches_without_waiters(tmp_path: Path) -> None:
    s = Store(tmp_path)
    s.start(inline)
    events = build_chain(ACTOR, 300)
    for ev in events:
        s.submit([PutEvent(ev)])
    s.close()
    s.close()  # a second close is harmless
    rows = db_rows(s.path, "SELECT seq, hash FROM events WHERE actor = ? ORDER BY seq", (ACTOR,))
    assert rows == [(ev.seq, ev.hash) for ev in events]


def test_waiters_fire_only_after_the_commit(store: Store) -> None:
    seen: list[int] = []
    done = threading.Event()

    def callback(w: Any) -> None:
        assert w.error is None
        # a separate connection sees the rows: the transaction is committed
        seen.append(db_rows(store.path, "SELECT count(*) FROM events")[0][0])
        done.set()

    events = build_chain(ACTOR, 50)
    store.submit([PutEvent(ev) for ev in events[:25]])
    store.submit([PutEvent(ev) for ev in events[25:]], store.waiter(callback))
    assert done.wait(10)
    assert seen == [50]


async def test_waiters_wake_the_trio_loop(tmp_path: Path) -> None:
    s = Store(tmp_path, "full")
    s.start(trio.lowlevel.current_trio_token().run_sync_soon)
    try:
        done = trio.Event()
        on_loop: list[bool] = []

        def callback(w: Any) -> None:
            on_loop.append(w.error is None and trio.lowlevel.current_trio_token() is not None)
            done.set()

        s.submit([PutEvent(ev) for ev in build_chain(ACTOR, 5)], s.waiter(callback))
        with trio.fail_after(10):
            await done.wait()
        assert on_loop == [True]
        assert await trio.to_thread.run_sync(s.max_seq, ACTOR) == 5
    finally:
        s.close()


def test_a_failing_batch_fails_its_group_and_the_store(tmp_path: Path) -> None:
    s = Store(tmp_path)
    first = build_chain(ACTOR, 2)
    other = build_chain(OTHER, 1)
    errors: list[Any] = []
    s.submit([PutEvent(other[0])], s.waiter(lambda w: errors.append(w.error)))
    s.submit([PutEvent(first[0]), PutEvent(first[0])], s.waiter(lambda w: errors.append(w.error)))  # duplicate key
    s.start(inline)
    try:
        deadline = time.monotonic() + 10
        while len(errors) < 2:
            assert time.monotonic() < deadline, "the writer did not report"
            time.sleep(0.01)
        assert all(isinstance(e, sqlite3.IntegrityError) for e in errors)
        assert isinstance(s.failure, sqlite3.IntegrityError)
        # from now on nothing is queued: a waiter hears at once, and no caller gets an exception
        late: list[Any] = []
        s.submit([PutEvent(first[1])], s.waiter(lambda w: late.append(w.error)))
        assert len(late) == 1 and isinstance(late[0], StoreError) and "the store failed earlier" in str(late[0])
    finally:
        s.close()
    assert db_rows(s.path, "SELECT count(*) FROM events") == [(0,)]  # the whole group was rolled back


def test_nothing_queued_behind_a_failing_group_is_committed(tmp_path: Path) -> None:
    s = Store(tmp_path)
    events = build_chain(ACTOR, 2)
    other = build_chain(OTHER, 1)
    errors: list[Any] = []
    failures: list[BaseException] = []
    s.on_failure = failures.append
    s.submit([PutEvent(events[0]), PutEvent(events[0])], s.waiter(lambda w: errors.append(w.error)))
    for _ in range(MAX_GROUP):  # fills the first group; what follows is a group of its own
        s.submit([])
    s.submit([PutEvent(other[0])], s.waiter(lambda w: errors.append(w.error)))
    s.start(inline)
    s.close()
    assert len(errors) == 2 and all(isinstance(e, sqlite3.IntegrityError) for e in errors), errors
    assert db_rows(s.path, "SELECT count(*) FROM events") == [(0,)]
    assert len(failures) == 1 and isinstance(failures[0], sqlite3.IntegrityError)


def test_a_failing_group_does_not_undo_earlier_groups(store: Store) -> None:
    events = build_chain(ACTOR, 3)
    assert commit(store, [PutEvent(events[0])]) is None
    error = commit(store, [PutEvent(events[1]), PutEvent(events[0])])
    assert isinstance(error, sqlite3.IntegrityError)
    assert store.max_seq(ACTOR) == 1


# ----------------------------------------------------------------------
# actors, states, mailbox


def test_states_are_content_addressed(store: Store) -> None:
    data = b'{"count": 1}'
    h = state_hash(data)
    other = b'{"count": 2}'
    h2 = state_hash(other)
    assert h is not None and h2 is not None and len(h) == 32
    assert commit(store, [
        PutActor(ACTOR, "one", "/m.toml", "running", 1),
        PutActor(OTHER, "two", "/m.toml", "running", 2),
        PutState(ACTOR, h, data, 1),
        PutState(OTHER, h, data, 1),
    ]) is None
    assert commit(store, [PutState(ACTOR, h2, other, 2), PutState(ACTOR, h, data, 3)]) is None
    rows = db_rows(store.path, "SELECT hash, data FROM states ORDER BY data")
    assert rows == [(h, data), (h2, other)]  # the identical state is stored once
    assert store.state(h) == data
    assert store.state(state_hash(b"never stored")) is None  # type: ignore[arg-type]
    actors = {r.id: r for r in store.load_actors()}
    assert actors[ACTOR].state == data and actors[ACTOR].handled == 3
    assert actors[OTHER].state == data and actors[OTHER].handled == 1
    # a None state is allowed and stores nothing
    assert commit(store, [PutState(OTHER, None, None, 2)]) is None
    assert {r.id: r for r in store.load_actors()}[OTHER].state is None
    assert db_rows(store.path, "SELECT count(*) FROM states") == [(2,)]


def test_load_actors_reports_status_state_and_chain_head(store: Store) -> None:
    events = build_chain(ACTOR, 4)
    assert commit(store, [
        PutActor(OTHER, "later", "/b.toml", "running", 20),
        PutActor(ACTOR, "first", "/a.toml", "running", 10),
        *[PutEvent(ev) for ev in events],
        PutState(ACTOR, state_hash(b"{}"), b"{}", 3),
        SetStatus(OTHER, "failed", "it broke"),
    ]) is None
    rows = store.load_actors()
    assert [r.id for r in rows] == [ACTOR, OTHER]  # by creation time
    first, later = rows
    assert (first.name, first.manifest, first.status, first.reason) == ("first", "/a.toml", "running", None)
    assert first.head == Head(4, events[-1].hash)
    assert first.state == b"{}" and first.handled == 3
    assert (later.status, later.reason, later.head, later.state, later.handled) == ("failed", "it broke", Head(), None, 0)


def test_mailbox_rows(store: Store) -> None:
    assert store.load_mailbox() == []
    assert commit(store, [
        MailboxPut(5, ACTOR, "external", b"five"),
        MailboxPut(3, OTHER, ACTOR, b"three"),
        MailboxPut(9, ACTOR, OTHER, b"nine"),
    ]) is None
    assert [(m.id, m.actor, m.sender, m.payload) for m in store.load_mailbox()] == [
        (3, OTHER, ACTOR, b"three"), (5, ACTOR, "external", b"five"), (9, ACTOR, OTHER, b"nine"),
    ]
    assert commit(store, [MailboxDelete(5), MailboxDelete(9)]) is None
    assert [m.id for m in store.load_mailbox()] == [3]


# ----------------------------------------------------------------------
# reading the chain


@pytest.fixture
def chain_store(store: Store) -> tuple[Store, list[StoredEvent]]:
    events = build_chain(ACTOR, 10, type_of=lambda i: "t/even" if i % 2 == 0 else "t/odd")
    assert commit(store, [PutEvent(ev) for ev in events] + [PutEvent(ev) for ev in build_chain(OTHER, 3)]) is None
    return store, events


def _fired(fired: list[int], i: int, waiter: Any) -> None:
    if waiter.error is None:
        fired.append(i)


def _seqs(rows: list[tuple[int, bytes, bytes]]) -> list[int]:
    return [r[0] for r in rows]


def test_events_returns_seq_hash_and_exact_record(chain_store: tuple[Store, list[StoredEvent]]) -> None:
    store, events = chain_store
    rows = store.events(ACTOR)
    assert rows == [(ev.seq, ev.hash, ev.record) for ev in events]
    assert store.events("nobody") == []
    assert store.max_seq(ACTOR) == 10 and store.max_seq(OTHER) == 3 and store.max_seq("nobody") == 0


def test_events_filters(chain_store: tuple[Store, list[StoredEvent]]) -> None:
    store, events = chain_store
    assert _seqs(store.events(ACTOR, limit=3)) == [8, 9, 10]
    assert _seqs(store.events(ACTOR, limit=50)) == list(range(1, 11))
    assert store.events(ACTOR, limit=0) == []
    assert _seqs(store.events(ACTOR, type="t/even")) == [2, 4, 6, 8, 10]
    assert _seqs(store.events(ACTOR, type="t/odd", limit=2)) == [7, 9]
    assert store.events(ACTOR, type="t/none") == []
    assert _seqs(store.events(ACTOR, since_us=events[5].ts)) == [6, 7, 8, 9, 10]
    assert _seqs(store.events(ACTOR, since_us=events[5].ts, type="t/odd")) == [7, 9]
    assert _seqs(store.events(ACTOR, after_seq=7)) == [8, 9, 10]
    assert _seqs(store.events(ACTOR, upto=3)) == [1, 2, 3]
    assert _seqs(store.events(ACTOR, after_seq=2, upto=5)) == [3, 4, 5]
    assert _seqs(store.events(ACTOR, limit=2, upto=5)) == [4, 5]


def test_events_paging(chain_store: tuple[Store, list[StoredEvent]]) -> None:
    store, events = chain_store
    assert _seqs(store.events(ACTOR, page=4)) == [1, 2, 3, 4]
    assert _seqs(store.events(ACTOR, page=4, after_seq=4)) == [5, 6, 7, 8]
    assert _seqs(store.events(ACTOR, page=4, after_seq=8)) == [9, 10]
    assert _seqs(store.events(ACTOR, page=2, type="t/even", after_seq=4)) == [6, 8]
    # max_bytes: stop once the returned records reach that size; at least one is returned
    sizes = [len(ev.record) for ev in events]
    assert _seqs(store.events(ACTOR, max_bytes=1)) == [1]
    assert _seqs(store.events(ACTOR, max_bytes=0)) == [1]
    assert _seqs(store.events(ACTOR, max_bytes=sizes[0] + sizes[1])) == [1, 2]
    assert _seqs(store.events(ACTOR, max_bytes=sizes[0] + sizes[1] + 1)) == [1, 2, 3]
    assert _seqs(store.events(ACTOR, max_bytes=10**9)) == list(range(1, 11))
    assert _seqs(store.events(ACTOR, max_bytes=1, after_seq=6)) == [7]
    # walking the whole chain page by page
    walked: list[int] = []
    after = 0
    while True:
        rows = store.events(ACTOR, after_seq=after, page=3, max_bytes=sizes[0] * 2)
        if not rows:
            break
        walked += _seqs(rows)
        after = rows[-1][0]
    assert walked == list(range(1, 11))


def test_iter_events_streams_the_whole_chain(chain_store: tuple[Store, list[StoredEvent]]) -> None:
    store, events = chain_store
    assert list(store.iter_events(ACTOR, batch=3)) == [(ev.seq, ev.hash, ev.record) for ev in events]
    verdict = chain.verify(store.iter_events(ACTOR, batch=4), actor=ACTOR)
    assert verdict.ok and verdict.checked == 10 and verdict.head == Head(10, events[-1].hash)
    assert list(store.iter_events("nobody")) == []


def test_find_event_by_seq_and_hash_prefix(chain_store: tuple[Store, list[StoredEvent]]) -> None:
    store, events = chain_store
    # an event whose hash does not start with 3 digits (those would be read as a seq number)
    target = next(ev for ev in events if not ev.hash.hex()[:3].isdigit())
    assert store.find_event(ACTOR, "3") == (3, events[2].hash, events[2].record)
    full = target.hash.hex()
    found = (target.seq, target.hash, target.record)
    assert store.find_event(ACTOR, full) == found
    assert store.find_event(ACTOR, full[:8]) == found
    assert store.find_event(ACTOR, full[:5]) == found  # odd length
    assert store.find_event(ACTOR, full[:12].upper()) == found
    assert store.find_event(ACTOR, full[:3]) is None  # too short to be a prefix
    assert store.find_event(ACTOR, "zzzzzzzz") is None
    assert store.find_event(ACTOR, "ab-cd") is None
    assert store.find_event(ACTOR, "") is None
    assert store.find_event(OTHER, full) is None  # another actor's chain
    assert store.find_event("nobody", "1") is None


@pytest.mark.parametrize("ref", ["\u00b2", "\u0661", "\u0661\u0662\u0663\u0664", "\uff11"])
def test_find_event_with_non_ascii_digits_is_none(chain_store: tuple[Store, list[StoredEvent]], ref: str) -> None:
    # "²".isdigit() is True but int("²") raises; "١" (Arabic-Indic one) would parse as 1
    store, _events = chain_store
    assert ref.isdigit()
    assert store.find_event(ACTOR, ref) is None


def test_find_event_ambiguous_prefix_is_none(store: Store) -> None:
    events = build_chain(ACTOR, 2000)
    by_prefix: dict[str, list[StoredEvent]] = {}
    for ev in events:
        by_prefix.setdefault(ev.hash.hex()[:4], []).append(ev)
    # 2000 hashes over 65536 prefixes: some share one (an all-digit prefix would be read as a seq)
    shared = next(p for p, evs in by_prefix.items() if len(evs) > 1 and not p.isdigit())
    unique = next(p for p, evs in by_prefix.items() if len(evs) == 1 and not p.isdigit())
    assert commit(store, [PutEvent(ev) for ev in events]) is None
    assert store.find_event(ACTOR, shared) is None
    one = by_prefix[unique][0]
    assert store.find_event(ACTOR, unique) == (one.seq, one.hash, one.record)
    a, b = by_prefix[shared][:2]
    assert store.find_event(ACTOR, a.hash.hex()) == (a.seq, a.hash, a.record)
    assert store.find_event(ACTOR, b.hash.hex()) == (b.seq, b.hash, b.record)


class _Wake:
    """A ``wake`` recording which path each completion took (held with the thread, or now)."""

    def __init__(self) -> None:
        self.held: list[Callable[[], None]] = []
        self.now_calls: list[Callable[[], None]] = []

    def __call__(self, fn: Callable[[], None]) -> None:
        self.held.append(fn)
        fn()

    def now(self, fn: Callable[[], None]) -> None:
        self.now_calls.append(fn)
        fn()


def test_close_does_not_wait_for_a_reader_holding_a_snapshot(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.start(inline)
    assert commit(store, [PutEvent(ev) for ev in build_chain(ACTOR, 3)]) is None
    reader = sqlite3.connect(store.path, isolation_level=None)
    reader.execute("BEGIN")
    assert reader.execute("SELECT count(*) FROM events").fetchone() == (3,)  # holds a snapshot
    try:
        started = time.monotonic()
        store.close()
        assert time.monotonic() - started < 5  # not the 30 s busy timeout
    finally:
        reader.execute("COMMIT")
        reader.close()
    assert db_rows(tmp_path / DB_NAME, "SELECT count(*) FROM events") == [(3,)]


def test_a_submit_after_close_fails_instead_of_being_lost(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.start(inline)
    store.close()
    with pytest.raises(StoreError, match="the store is closed"):
        store.submit([PutEvent(build_chain(ACTOR, 1)[0])])


def test_a_group_of_message_operations_is_stored_as_if_applied_in_order(tmp_path: Path) -> None:
    """Handling and sending messages go in one executemany per statement: the result is the same as
    applying the operations one by one (a row put and deleted in one group is gone, the actor keeps its
    last state, an unchanged state adds no row)."""
    store = Store(tmp_path)
    store.start(inline)
    try:
        assert commit(store, [PutActor(ACTOR, "a", "m.toml", "running", 1), PutActor(OTHER, "b", "m.toml", "running", 1)]) is None
        events = build_chain(ACTOR, 4)
        s1, s2 = b'{"n":1}', b'{"n":2}'
        held: list[Any] = []
        with store._lock:  # hold the writer: the next submits form one group
            group: tuple[list[Op], ...] = (
                [PutEvent(events[0]), PutState(ACTOR, state_hash(s1), s1, 1), MailboxPut(7, OTHER, ACTOR, b"x")],
                [PutEvent(events[1]), PutState(ACTOR, state_hash(s1), s1, 2), MailboxPut(8, OTHER, ACTOR, b"y")],
                [MailboxDelete(7), PutState(OTHER, None, None, 1)],
                [PutEvent(events[2]), PutState(ACTOR, state_hash(s2), s2, 3)],
            )
            for ops in group:
                store.submit(ops, store.waiter(held.append))
        deadline = time.monotonic() + 10
        while len(held) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [w.error for w in held] == [None] * 4
        # the same state again, in a later group: no new row, the count moves on
        assert commit(store, [PutEvent(events[3]), PutState(ACTOR, state_hash(s2), s2, 4)]) is None
    finally:
        store.close()
    path = tmp_path / DB_NAME
    assert [r[0] for r in db_rows(path, "SELECT seq FROM events WHERE actor = ? ORDER BY seq", (ACTOR,))] == [1, 2, 3, 4]
    assert db_rows(path, "SELECT id, actor, payload FROM mailbox") == [(8, OTHER, b"y")]
    assert db_rows(path, "SELECT id, state_hash, handled FROM actors ORDER BY name") == [
        (ACTOR, state_hash(s2), 4), (OTHER, None, 1)]
    assert sorted(r[0] for r in db_rows(path, "SELECT data FROM states")) == [s1, s2]
