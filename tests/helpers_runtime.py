"""Host a real Store + Runtime inside the test's own trio run (no daemon process, no socket).

    async with hosted_runtime(tmp_path / "home") as rt:
        await rt.spawn(str(write_actor(tmp_path, "log", SOURCE)))
        reply = await rt.request(None, "log", b"{}")

Test actors are small Python modules written into a temporary directory by
:func:`write_actor`, next to a generated ``manifest.toml``.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio

from daemon import chain
from daemon.runtime import Runtime, Settings
from daemon.store import Store

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "actors" / "examples"

#: a per-test deadlock guard: nothing in these tests should take this long
HOSTED_DEADLINE = 30.0


def example(name: str) -> str:
    return str(EXAMPLES / name / "manifest.toml")


def write_actor(root: Path, name: str, source: str, manifest_extra: str = "") -> Path:
    """Write ``<root>/actor-src/<name>/{<name>.py, manifest.toml}``; return the manifest path."""
    d = root / "actor-src" / name
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.py").write_text(textwrap.dedent(source))
    manifest = d / "manifest.toml"
    manifest.write_text(f'name = "{name}"\ncomponent = "{name}.py"\n' + textwrap.dedent(manifest_extra))
    return manifest


def default_settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {"default_timeout": 5.0, "stop_grace": 2.0}
    values.update(overrides)
    return Settings(**values)


@asynccontextmanager
async def hosted_runtime(
    home: Path,
    settings: Settings | None = None,
    *,
    durability: str = "normal",
    shutdown: bool = True,
) -> AsyncIterator[Runtime]:
    """A serving runtime; on exit ``shutdown()`` (unless ``shutdown=False``, which
    simulates a crash: the tasks are just cancelled), then the store is closed."""
    home.mkdir(parents=True, exist_ok=True)
    store = Store(home, durability)
    store.start(trio.lowlevel.current_trio_token().run_sync_soon)
    rt = Runtime(store, settings or default_settings())
    try:
        with trio.fail_after(HOSTED_DEADLINE):
            async with trio.open_nursery() as nursery:
                await nursery.start(rt.serve)
                try:
                    yield rt
                    if shutdown:
                        await rt.shutdown()
                finally:
                    nursery.cancel_scope.cancel()
    finally:
        store.close()


async def flush(store: Store, ops: list[Any] | None = None) -> None:
    """Submit ``ops`` (if any) and return once everything submitted so far is committed."""
    done = trio.Event()
    errors: list[BaseException] = []

    def wake(w: Any) -> None:
        if w.error is not None:
            errors.append(w.error)
        done.set()

    store.submit(ops or [], store.waiter(wake))
    await done.wait()
    assert not errors, errors


async def chain_events(rt: Runtime, ref: str) -> list[dict[str, Any]]:
    """The actor's stored chain as JSON views (with actor, alg and payload)."""
    await flush(rt.store)
    actor = rt.resolve(ref)
    return [chain.event_view(h, rec, full=True) for _, h, rec in rt.store.events(actor.id)]


def of_type(events: list[dict[str, Any]], type: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == type]


async def request_json(rt: Runtime, ref: str, msg: Any, timeout: float | None = None) -> Any:
    return json.loads(await rt.request(None, ref, json.dumps(msg).encode(), timeout))


async def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` (sync) until true; fail the test after ``timeout`` seconds."""
    with trio.move_on_after(timeout):
        while not predicate():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"timed out waiting for {what}")


def state_of(rt: Runtime, ref: str) -> Any:
    state = rt.resolve(ref).state
    return None if state is None else json.loads(state)
