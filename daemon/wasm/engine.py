"""One process-wide wasmtime Engine, the compilation caches and the epoch ticker.

The Engine has fuel metering and epoch interruption always on (so one
compilation serves every limit) and makes every linear memory through
:mod:`daemon.wasm.memory`.  Compiled components are cached in-process by
(path, mtime, size) and, with a ``cache_dir``, on disk by (input hash,
wasmtime version, engine configuration); serialized code is executed as is,
so the cache dir must be writable only by the trusted side.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import wasmtime
from wasmtime import component as wc

from . import core, memory
from .errors import ComponentError

EPOCH_TICK = 0.01  # seconds between engine epoch ticks while an actor has a time limit
UNLIMITED_FUEL = (1 << 63) - 1

_lock = threading.Lock()
_engine: wasmtime.Engine | None = None
_compiled: dict[tuple[str, int, int], Compiled] = {}


@dataclass
class Compiled:
    """A compiled component, and (worked out on first use) its core fast-path program."""

    component: wc.Component
    data: bytes | None  # the file, kept until the fast path has been decided
    program: core.CoreProgram | None = None

    def decide_fast_path(self, engine: wasmtime.Engine, exports: frozenset[str], cache_dir: Path | None) -> None:
        with _lock:
            if self.data is None:
                return
            data, self.data = self.data, None

        def compile_core(raw: bytes) -> wasmtime.Module:
            if cache_dir is not None:
                try:
                    return wasmtime.Module.deserialize(engine, _cache_file(raw, cache_dir).read_bytes())
                except (OSError, wasmtime.WasmtimeError):
                    pass
            module = wasmtime.Module(engine, raw)
            if cache_dir is not None:
                _write_cache(_cache_file(raw, cache_dir), bytes(module.serialize()))
            return module

        self.program = core.CoreProgram.find(data, engine, exports, compile_core)
_ticker: threading.Thread | None = None


def get_engine() -> wasmtime.Engine:
    global _engine
    with _lock:
        if _engine is None:
            config = wasmtime.Config()
            config.consume_fuel = True
            config.epoch_interruption = True
            config.memory_init_cow = False  # required with a host memory creator
            memory.install(config)  # linear memories whose refused growth we can see
            _engine = wasmtime.Engine(config)
        return _engine


def start_ticker(engine: wasmtime.Engine) -> None:
    """One daemon thread ticks the engine's epoch for every actor with a time limit."""
    global _ticker
    with _lock:
        if _ticker is not None:
            return

        def tick() -> None:
            while True:
                time.sleep(EPOCH_TICK)
                engine.increment_epoch()

        _ticker = threading.Thread(target=tick, name="wasm-epoch", daemon=True)
        _ticker.start()


def compile_component(path: Path, engine: wasmtime.Engine, cache_dir: Path | None) -> Compiled:
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    except OSError as exc:
        raise ComponentError(f"cannot read {path}: {exc.strerror}") from None
    with _lock:
        cached = _compiled.get(key)
    if cached is not None:
        return cached
    data = path.read_bytes()
    if data[:4] != b"\0asm":
        raise ComponentError(f"{path} is not a WebAssembly component: not a WebAssembly binary")
    if data[4:8] == b"\x01\0\0\0":
        raise ComponentError(f"{path} is not a WebAssembly component: it is a core module "
                             "(wrap it with `wasm-tools component new`)")
    component = _from_disk_cache(data, engine, cache_dir)
    if component is None:
        try:
            component = wc.Component(engine, data)
        except wasmtime.WasmtimeError as exc:
            raise ComponentError(f"{path} is not a WebAssembly component: {first_line(exc)}") from None
        _to_disk_cache(data, component, cache_dir)
    compiled = Compiled(component, data)
    with _lock:
        _compiled[key] = compiled
    return compiled


ENGINE_CONFIG_TAG = "fuel-epoch-hostmem-1"  # change when _get_engine's Config changes


def _cache_file(data: bytes, cache_dir: Path) -> Path:
    """Compiled code is only valid for the same wasmtime, engine configuration and input."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        wasmtime_version = version("wasmtime")
    except PackageNotFoundError:
        wasmtime_version = "unknown"
    digest = hashlib.sha256(data).hexdigest()
    return cache_dir / f"{digest}-wasmtime{wasmtime_version}-{ENGINE_CONFIG_TAG}.cwasm"


def _from_disk_cache(data: bytes, engine: wasmtime.Engine, cache_dir: Path | None) -> wc.Component | None:
    if cache_dir is None:
        return None
    try:
        blob = _cache_file(data, cache_dir).read_bytes()
        return wc.Component.deserialize(engine, blob)
    except (OSError, wasmtime.WasmtimeError):
        return None  # absent, unreadable or from another configuration: compile instead


def _to_disk_cache(data: bytes, component: wc.Component, cache_dir: Path | None) -> None:
    if cache_dir is not None:
        _write_cache(_cache_file(data, cache_dir), bytes(component.serialize()))


def _write_cache(target: Path, blob: bytes) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(blob)
        os.replace(tmp, target)
    except OSError:
        pass  # a read-only cache is only slower


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def forget_compiled() -> None:
    """Drop the in-process compilation cache (as a new process would start)."""
    with _lock:
        _compiled.clear()
