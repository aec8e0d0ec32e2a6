"""daemon.chainverify: a stored chain verified in ranges, by child processes when long."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from daemon import chainverify
from daemon.chain import Head, head_after, make_event
from daemon.store import DB_NAME, PutEvent, Store

ACTOR = "0b7f5e2e-6d3c-4a59-9d7e-3f1c2b8a9e10"
N = 300


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    store = Store(tmp_path)
    store.start(lambda fn: fn())
    head = Head()
    ops: list[Any] = []
    for i in range(N):
        ev = make_event(ACTOR, head, "message-server/handle-send", {"n": i, "outcome": "ok"}, b'{"i": %d}' % i)
        head = head_after(ev)
        ops.append(PutEvent(ev))
    store.submit(ops)
    store.close()
    return tmp_path / DB_NAME


@pytest.fixture
def parallel(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Split even short chains; record the ranges the parent process checks itself."""
    monkeypatch.setattr(chainverify, "MIN_PARALLEL", 0)
    here: list[tuple[int, int]] = []
    check = chainverify.check_range

    def spy(db: sqlite3.Connection, actor: str, after: int, upto: int, start: bytes | None) -> Any:
        here.append((after, upto))
        return check(db, actor, after, upto, start)

    monkeypatch.setattr(chainverify, "check_range", spy)
    return here


def _sql(path: Path, statement: str, *args: Any) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute(statement, args)
    db.close()


def _head_hash(path: Path, seq: int) -> bytes:
    db = sqlite3.connect(path)
    row = db.execute("SELECT hash FROM events WHERE actor = ? AND seq = ?", (ACTOR, seq)).fetchone()
    db.close()
    return bytes(row[0])


def test_one_process_checks_the_whole_chain(store_path: Path) -> None:
    verdict = chainverify.verify_chain(store_path, ACTOR, N, processes=1)
    assert verdict.ok and verdict.checked == N
    assert verdict.head == Head(N, _head_hash(store_path, N))


def test_children_check_the_later_ranges(store_path: Path, parallel: list[tuple[int, int]]) -> None:
    verdict = chainverify.verify_chain(store_path, ACTOR, N, processes=3)
    assert verdict.ok and verdict.checked == N
    assert verdict.head == Head(N, _head_hash(store_path, N))
    assert parallel == [(0, 100)]  # ranges (100, 200] and (200, 300] were checked by the children


@pytest.mark.parametrize("seq", [1, 99, 100, 101, 150, 200, 201, 300])
def test_a_changed_record_is_found_in_any_range(store_path: Path, parallel: list[tuple[int, int]], seq: int) -> None:
    _sql(store_path, "UPDATE events SET record = CAST(record || x'00' AS BLOB) WHERE actor = ? AND seq = ?", ACTOR, seq)
    verdict = chainverify.verify_chain(store_path, ACTOR, N, processes=3)
    assert not verdict.ok
    assert verdict.broken_seq == seq and verdict.checked == seq - 1
    assert verdict.reason == "hash does not match the stored record"


def test_a_changed_stored_hash_at_a_cut_is_found(store_path: Path, parallel: list[tuple[int, int]]) -> None:
    # the range after the cut trusts the stored hash of event 100; the range before checks it
    _sql(store_path, "UPDATE events SET hash = zeroblob(32) WHERE actor = ? AND seq = 100", ACTOR)
    verdict = chainverify.verify_chain(store_path, ACTOR, N, processes=3)
    assert not verdict.ok and verdict.broken_seq == 100 and verdict.checked == 99


@pytest.mark.parametrize("seq", [50, 100, 101, 300])
def test_a_missing_event_is_found(store_path: Path, parallel: list[tuple[int, int]], seq: int) -> None:
    _sql(store_path, "DELETE FROM events WHERE actor = ? AND seq = ?", ACTOR, seq)
    verdict = chainverify.verify_chain(store_path, ACTOR, N, processes=3)
    assert not verdict.ok and verdict.checked == seq - 1
    assert verdict.reason == f"expected seq {seq}"
    # found at the next row, or at the end of a range that lacks its last rows
    assert verdict.broken_seq == (seq if seq % 100 == 0 else seq + 1)


def test_a_child_that_fails_is_replaced_by_checking_here(
        store_path: Path, parallel: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chainverify, "_start_child", lambda *args: None)
    verdict = chainverify.verify_chain(store_path, ACTOR, N, processes=3)
    assert verdict.ok and verdict.checked == N
    assert parallel == [(0, 100), (100, 200), (200, 300)]


def test_a_child_answering_nonsense_is_not_believed(
        store_path: Path, parallel: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch) -> None:
    class Liar:
        returncode = 0

        def communicate(self) -> tuple[str, str]:
            return '{"checked": 100, "seq": 0, "hash": null, "broken_seq": null, "reason": ""}', ""

    monkeypatch.setattr(chainverify, "_start_child", lambda *args: Liar())
    _sql(store_path, "UPDATE events SET record = CAST(record || x'00' AS BLOB) WHERE actor = ? AND seq = 250", ACTOR)
    verdict = chainverify.verify_chain(store_path, ACTOR, N, processes=3)
    assert not verdict.ok and verdict.broken_seq == 250


def test_an_empty_chain_is_intact(tmp_path: Path) -> None:
    Store(tmp_path).close()
    verdict = chainverify.verify_chain(tmp_path / DB_NAME, ACTOR, 0)
    assert verdict.ok and verdict.checked == 0 and verdict.head == Head()
