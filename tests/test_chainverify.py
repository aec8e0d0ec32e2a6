"""daemon.chainverify: a stored chain verified in ranges, by child processes when long."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import pytest

from daemon import chainverify
from daemon.chain import Head, head_after, make_event
from daemon.store import DB_NAME, Store
from daemon.storeops import PutEvent

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


class Liar:
    """A child process that exits 0 and prints ``answer`` (filled in with the range it was given)."""

    returncode = 0

    def __init__(self, answer: str, after: int, upto: int) -> None:
        self.answer = answer.replace("AFTER1", str(after + 1)).replace("UPTO", str(upto))

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        return self.answer, ""

    def poll(self) -> int:
        return 0


@pytest.mark.parametrize("answer", [
    '{"checked": 100, "seq": 0, "hash": null, "broken_seq": null, "reason": ""}',  # ok, but reached nothing
    '{"checked": 1, "seq": AFTER1, "hash": "00", "broken_seq": null, "reason": ""}',  # ok, but stopped short
    '{"checked": 7, "seq": UPTO, "hash": "00", "broken_seq": null, "reason": ""}',  # counts do not add up
    '{"checked": 0, "seq": 0, "hash": null, "broken_seq": 1, "reason": "x"}',  # broken outside its range
    '{"checked": 1}',
    "not json",
])
def test_a_child_answering_nonsense_is_not_believed(
        store_path: Path, parallel: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch, answer: str) -> None:
    monkeypatch.setattr(chainverify, "_start_child",
                        lambda path, actor, after, upto, start: Liar(answer, after, upto))
    _sql(store_path, "UPDATE events SET record = CAST(record || x'00' AS BLOB) WHERE actor = ? AND seq = 250", ACTOR)
    verdict = chainverify.verify_chain(store_path, ACTOR, N, processes=3)
    assert not verdict.ok and verdict.broken_seq == 250 and verdict.checked == 249
    assert parallel == [(0, 100), (100, 200), (200, 300)]  # every range checked here instead


@pytest.mark.parametrize("name", ["with#hash", "with?query", "pct%41", "sp ace"])
def test_a_store_path_with_uri_characters(tmp_path: Path, parallel: list[tuple[int, int]], name: str) -> None:
    home = tmp_path / name
    home.mkdir()
    store = Store(home)
    store.start(lambda fn: fn())
    head = Head()
    ops: list[Any] = []
    for i in range(30):
        ev = make_event(ACTOR, head, "t", {"n": i})
        head = head_after(ev)
        ops.append(PutEvent(ev))
    store.submit(ops)
    store.close()
    verdict = chainverify.verify_chain(home / DB_NAME, ACTOR, 30, processes=2)
    assert verdict.ok and verdict.checked == 30
    assert parallel == [(0, 15)]  # the child read the second half through the same path
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no stray database file


def test_an_empty_chain_is_intact(tmp_path: Path) -> None:
    Store(tmp_path).close()
    verdict = chainverify.verify_chain(tmp_path / DB_NAME, ACTOR, 0)
    assert verdict.ok and verdict.checked == 0 and verdict.head == Head()


def test_a_child_that_hangs_is_given_up_on(
        store_path: Path, parallel: list[tuple[int, int]], monkeypatch: pytest.MonkeyPatch) -> None:
    killed: list[bool] = []

    class Hung:
        returncode: int | None = None

        def communicate(self, timeout: float | None = None) -> tuple[str, str]:
            assert timeout is not None and timeout >= 60
            raise subprocess.TimeoutExpired("child", timeout)

        def kill(self) -> None:
            killed.append(True)

        def wait(self) -> int:
            self.returncode = -9
            return -9

        def poll(self) -> int | None:
            return self.returncode

    monkeypatch.setattr(chainverify, "_start_child", lambda *args: Hung())
    verdict = chainverify.verify_chain(store_path, ACTOR, N, processes=3)
    assert verdict.ok and verdict.checked == N
    assert killed == [True, True] and parallel == [(0, 100), (100, 200), (200, 300)]
