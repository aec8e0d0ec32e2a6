"""A full disk: the failed group and everything after it are rolled back (on disk and in
memory), callers get exit 75, reads go on, and handling resumes by itself once space is back.

These tests mount a small tmpfs (the suite runs as root); where mounting is not permitted
they are skipped with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from daemon.chain import verify
from daemon.errors import Busy, DiskFull
from daemon.store import free_bytes
from tests.helpers_runtime import flush, hosted_runtime, wait_until, write_actor

COUNTING = '''
import json
from actors import message_server
def handle_send(state, params):
    s = json.loads(state or b'{"n": 0}')
    s["n"] += 1
    m = json.loads(params[0])
    if m.get("relay"):
        message_server.send(m["relay"], b"{}")
    return (json.dumps(s).encode(),)
def handle_request(state, params):
    return state, (state or b'{"n": 0}',)
'''


def _mount_tmpfs(size: str) -> Iterator[Path]:
    where = Path(tempfile.mkdtemp(prefix="th-full-", dir="/tmp"))
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        where.rmdir()
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)
        where.rmdir()


@pytest.fixture
def small_fs() -> Iterator[Path]:
    yield from _mount_tmpfs("3m")


def _fill(fs: Path, leave: int) -> Path:
    filler = fs / "filler"
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free_bytes(fs) - leave))
    return filler


async def test_a_full_disk_refuses_writes_then_resumes_with_nothing_lost_or_doubled(
        small_fs: Path, tmp_path: Path) -> None:
    home = small_fs / "home"
    async with hosted_runtime(home) as rt:
        actor = await rt.spawn(str(write_actor(tmp_path, "c", COUNTING)))
        await rt.spawn(str(write_actor(tmp_path, "d", COUNTING)))
        await flush(rt.store)
        filler = _fill(small_fs, 96 << 10)
        acked = 0
        refused: DiskFull | None = None
        with trio.fail_after(60):
            while refused is None:
                try:
                    # every other message makes c send to d inside its handler (an outbox send)
                    await rt.send(None, "c", json.dumps({"relay": "d" if acked % 2 else None, "pad": "x" * 2000})
                                  .encode())
                    acked += 1
                except DiskFull as exc:
                    refused = exc
        assert isinstance(refused, Busy) and refused.code == 75
        assert "disk full" in str(refused) and "bytes free" in str(refused)
        await wait_until(lambda: rt.suspended is not None, what="the runtime suspended")
        # reads go on; writes are refused with the same error
        assert {v["name"] for v in rt.list_view()} == {"c", "d"}
        with pytest.raises(DiskFull):
            await rt.request(None, "c", b"{}")
        with pytest.raises(DiskFull):
            await rt.send(None, "c", b"{}")
        # space comes back: no restart needed
        filler.unlink()
        await wait_until(lambda: rt.suspended is None, timeout=30, what="handling resumed")
        for _ in range(3):
            await rt.send(None, "c", b"{}")
            acked += 1
        await wait_until(lambda: json.loads(actor.state or b"{}").get("n") == acked, timeout=30,
                         what=f"all {acked} acknowledged sends handled")
        await flush(rt.store)
        for a in rt.actors.values():
            rows = rt.store.events(a.id)
            assert verify(rows, a.id).ok, a.name
        handled = [r for r in rt.store.events(actor.id) if b"message-server/handle-send" in r[2]]
        assert len(handled) == acked  # each acknowledged send handled exactly once
        assert json.loads(await rt.request(None, "c", b"{}")) == {"n": acked}
        relayed = sum(1 for i in range(acked - 3) if i % 2)
        d = rt.resolve("d")
        assert json.loads(d.state or b'{"n": 0}')["n"] == relayed  # outbox sends: once each


async def test_a_store_on_a_full_disk_still_opens_and_says_so(small_fs: Path, tmp_path: Path) -> None:
    home = small_fs / "home"
    async with hosted_runtime(home) as rt:
        await rt.spawn(str(write_actor(tmp_path, "c", COUNTING)))
        await rt.send(None, "c", b"{}")
        await wait_until(lambda: rt.resolve("c").handled == 1)
    filler = _fill(small_fs, 0)
    async with hosted_runtime(home) as rt:
        assert rt.resolve("c").state == b'{"n": 1}'  # reads work
        with pytest.raises(DiskFull):
            await rt.send(None, "c", b"{}")
        filler.unlink()
        with trio.fail_after(30):
            while True:
                try:
                    await rt.send(None, "c", b"{}")
                    break
                except DiskFull:
                    await trio.sleep(0.2)
        await wait_until(lambda: rt.resolve("c").handled == 2, what="handled after space came back")
    assert os.path.exists(home / "theater.db")
