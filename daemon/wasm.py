"""WebAssembly component actors, loaded to look exactly like a Python actor module.

    actor = load_component(Path("actors/examples/wasm-counter/counter.wasm"),
                           fuel=10_000_000, memory_limit=64 << 20, timeout=5.0, wasi=WasiGrants())
    (state,) = actor.init(None)
    state, (reply,) = actor.handle_request(state, (b'{"type": "get"}',))

Theory of operation.

* A component implements the world ``message-server-actor`` of
  ``wit/message-server.wit``: it may export ``theater:simple/actor`` (``init``)
  and ``theater:simple/message-server-client`` (the five handlers; any subset
  is accepted) and may import ``theater:simple/message-server-host``.
  A :class:`ComponentActor` has an attribute for each handler the component
  exports, with the Python actors' signature and return shape, so the daemon
  (``getattr(module, "handle_request", None)``) and ``actors.testing`` use it
  unchanged.  ``init(state)`` passes ``message_server.current_actor()`` (or
  ``""`` with no host bound) as the WIT ``init``'s actor id.
* Compilation is per file and cached in-process by (path, mtime, size); with a
  ``cache_dir`` the compiled code is also kept on disk, keyed by the file's
  hash and wasmtime's version.  One process-wide :class:`wasmtime.Engine`
  serves every actor (fuel metering and epoch interruption are always on, so
  one compilation serves every limit).
* Each ComponentActor owns one Store and one instance.  A trap poisons a
  Store, so after a trap the actor drops it and instantiates afresh before
  its next call; nothing is lost because the state is a parameter of every
  call.  Linear memory does not outlive a trap.
* Host imports call the thread-bound host of :mod:`actors.message_server`.  A
  :class:`~actors.message_server.MessageServerError` becomes the WIT
  ``err`` value; any other exception traps the guest and is re-raised to
  the caller of the handler unchanged (so the daemon's own control-flow
  exceptions keep working).
* Values cross in bulk (:mod:`daemon.wasmabi`), not through wasmtime-py's
  per-byte generic conversion.

Thread safety: an Engine and a compiled Component may be shared by threads;
a Store may not.  A ComponentActor serialises its calls with a lock (the
daemon runs one handler per actor at a time anyway).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime import component as wc

from actors import message_server as ms

from . import wasmabi as abi
from . import wasmcore
from . import wasmmem

__all__ = [
    "ComponentActor",
    "ComponentError",
    "ComponentFailed",
    "ComponentTrap",
    "HANDLERS",
    "WasiGrants",
    "load_component",
]

PACKAGE = "theater:simple"
HOST_INTERFACE = f"{PACKAGE}/message-server-host"
TYPES_INTERFACE = f"{PACKAGE}/types"
CLIENT_INTERFACE = f"{PACKAGE}/message-server-client"
ACTOR_INTERFACE = f"{PACKAGE}/actor"

_JSON = "list<u8>"
_STATE = f"option<{_JSON}>"
_ACCEPT = f"record {{ accepted: bool, message: option<{_JSON}> }}"

# attribute name -> (exported interface, WIT function name, its signature as WIT text)
HANDLERS: dict[str, tuple[str, str, str]] = {
    "init": (ACTOR_INTERFACE, "init",
             f"func(state: {_STATE}, params: tuple<string>) -> result<tuple<{_STATE}>, string>"),
    "handle_send": (CLIENT_INTERFACE, "handle-send",
                    f"func(state: {_STATE}, params: tuple<{_JSON}>) -> result<tuple<{_STATE}>, string>"),
    "handle_request": (CLIENT_INTERFACE, "handle-request",
                       f"func(state: {_STATE}, params: tuple<{_JSON}>) "
                       f"-> result<tuple<{_STATE}, tuple<{_JSON}>>, string>"),
    "handle_channel_open": (CLIENT_INTERFACE, "handle-channel-open",
                            f"func(state: {_STATE}, params: tuple<{_JSON}>) "
                            f"-> result<tuple<{_STATE}, tuple<{_ACCEPT}>>, string>"),
    "handle_channel_message": (CLIENT_INTERFACE, "handle-channel-message",
                               f"func(state: {_STATE}, params: tuple<string, {_JSON}>) "
                               f"-> result<tuple<{_STATE}>, string>"),
    "handle_channel_close": (CLIENT_INTERFACE, "handle-channel-close",
                             f"func(state: {_STATE}, params: tuple<string>) -> result<tuple<{_STATE}>, string>"),
}

# host function -> its signature as WIT text
HOST_SIGNATURES: dict[str, str] = {
    "send": f"func(actor-id: string, msg: {_JSON}) -> result<_, string>",
    "request": f"func(actor-id: string, msg: {_JSON}) -> result<{_JSON}, string>",
    "open-channel": f"func(actor-id: string, initial-msg: {_JSON}) -> result<string, string>",
    "send-on-channel": f"func(channel-id: string, msg: {_JSON}) -> result<_, string>",
    "close-channel": "func(channel-id: string) -> result<_, string>",
}

EPOCH_TICK = 0.01  # seconds between engine epoch ticks while an actor has a time limit
UNLIMITED_FUEL = (1 << 63) - 1


class ComponentError(Exception):
    """The file cannot be used as a component actor (not a component, unmet import, no handlers)."""


class ComponentTrap(Exception):
    """A handler trapped (fuel, memory, time limit, or a fault); the actor's instance is rebuilt."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class WasiGrants:
    """What of WASI a component may use; nothing by default.

    Any grant links wasmtime's WASI preview 2 with no preopened directory,
    no environment, no arguments and no network (wasmtime denies every
    socket address by default), so the file system and the network stay out
    of reach.  stdout/stderr are forwarded to Python's ``sys.stdout`` /
    ``sys.stderr`` when granted and discarded otherwise.  wasmtime-py links
    WASI as one block, so with any grant the clocks and random are
    reachable too; ``clock`` and ``random`` are the grants that ask for just that.
    """

    stdout: bool = False
    stderr: bool = False
    clock: bool = False
    random: bool = False

    @property
    def any(self) -> bool:
        return self.stdout or self.stderr or self.clock or self.random


# ---- engine and compilation cache --------------------------------------------

_lock = threading.Lock()
_engine: wasmtime.Engine | None = None
_compiled: dict[tuple[str, int, int], _Compiled] = {}
_core_linkers: dict[int, wasmtime.Linker] = {}


@dataclass
class _Compiled:
    """A compiled component, and (worked out on first use) its core fast-path program."""

    component: wc.Component
    data: bytes | None  # the file, kept until the fast path has been decided
    program: wasmcore.CoreProgram | None = None

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

        self.program = wasmcore.CoreProgram.find(data, engine, exports, compile_core)
_linkers: dict[bool, wc.Linker] = {}
_ticker: threading.Thread | None = None


def _get_engine() -> wasmtime.Engine:
    global _engine
    with _lock:
        if _engine is None:
            config = wasmtime.Config()
            config.consume_fuel = True
            config.epoch_interruption = True
            config.memory_init_cow = False  # required with a host memory creator
            wasmmem.install(config)  # linear memories whose refused growth we can see
            _engine = wasmtime.Engine(config)
        return _engine


def _start_ticker(engine: wasmtime.Engine) -> None:
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


def _compile(path: Path, engine: wasmtime.Engine, cache_dir: Path | None) -> _Compiled:
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
            raise ComponentError(f"{path} is not a WebAssembly component: {_first_line(exc)}") from None
        _to_disk_cache(data, component, cache_dir)
    compiled = _Compiled(component, data)
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


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---- host imports --------------------------------------------------------------

_HostFn = Callable[[Any, Any], None]  # (args array, result slot) -> None
_host_fns: dict[int, _HostFn] = {}
_pending = threading.local()  # a non-message-server exception raised by a host function


def _ok(slot: Any, fill: Any = None, value: Any = None) -> None:
    abi.lower_result(slot, True, fill, value)


def _err(slot: Any, message: str) -> None:
    abi.lower_result(slot, False, abi.lower_string, message or "failed")


def _host_send(args: Any, slot: Any) -> None:
    try:
        ms.send(abi.lift_string(args[0]), abi.lift_bytes(args[1]))
    except ms.MessageServerError as exc:
        return _err(slot, str(exc))
    _ok(slot)


def _host_request(args: Any, slot: Any) -> None:
    try:
        reply = ms.request(abi.lift_string(args[0]), abi.lift_bytes(args[1]))
    except ms.MessageServerError as exc:
        return _err(slot, str(exc))
    _ok(slot, abi.lower_bytes, reply)


def _host_open_channel(args: Any, slot: Any) -> None:
    try:
        channel_id = ms.open_channel(abi.lift_string(args[0]), abi.lift_bytes(args[1]))
    except ms.MessageServerError as exc:
        return _err(slot, str(exc))
    _ok(slot, abi.lower_string, channel_id)


def _host_send_on_channel(args: Any, slot: Any) -> None:
    try:
        ms.send_on_channel(abi.lift_string(args[0]), abi.lift_bytes(args[1]))
    except ms.MessageServerError as exc:
        return _err(slot, str(exc))
    _ok(slot)


def _host_close_channel(args: Any, slot: Any) -> None:
    try:
        ms.close_channel(abi.lift_string(args[0]))
    except ms.MessageServerError as exc:
        return _err(slot, str(exc))
    _ok(slot)


HOST_FUNCTIONS: dict[str, _HostFn] = {
    "send": _host_send,
    "request": _host_request,
    "open-channel": _host_open_channel,
    "send-on-channel": _host_send_on_channel,
    "close-channel": _host_close_channel,
}


@ffi.wasmtime_component_func_callback_t
def _host_entry(data: int | None, context: Any, ty: Any, args: Any, nargs: int, results: Any, nresults: int) -> int:
    """Every host import enters here; ``data`` says which one."""
    try:
        _host_fns[data or 0](args, results[0])
        # Time spent in the host (a request waiting for its reply) is not the guest's.
        _extend_deadline(context)
        return 0
    except BaseException as exc:  # noqa: BLE001 - re-raised by the caller of the handler
        _pending.exc = exc
        err = ffi.wasmtime_error_new(f"host function failed: {_first_line(exc)}".encode())
        return ctypes.cast(err, ctypes.c_void_p).value or 0


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _host_finalize(data: int | None) -> None:
    """Host functions live as long as the process; nothing to free."""


def _extend_deadline(context: Any) -> None:
    limit = getattr(_pending, "deadline", None)
    if limit is not None:
        remaining, started = limit
        used = time.monotonic() - started
        ffi.wasmtime_context_set_epoch_deadline(context, max(1, int((remaining - used) / EPOCH_TICK) + 1))


def _get_linker(engine: wasmtime.Engine, wasi: bool) -> wc.Linker:
    with _lock:
        linker = _linkers.get(wasi)
        if linker is not None:
            return linker
        linker = wc.Linker(engine)
        if wasi:
            linker.add_wasip2()
        with linker.root() as root:
            with root.add_instance(TYPES_INTERFACE):
                pass
            with root.add_instance(HOST_INTERFACE) as host:
                for name, fn in HOST_FUNCTIONS.items():
                    index = len(_host_fns) + 1
                    _host_fns[index] = fn
                    encoded = name.encode()
                    error = ffi.wasmtime_component_linker_instance_add_func(
                        host.ptr(), ctypes.create_string_buffer(encoded), len(encoded),
                        _host_entry, index, _host_finalize)
                    if error:
                        raise wasmtime.WasmtimeError._from_ptr(error)
        _linkers[wasi] = linker
        return linker


def _core_host_return(exc: BaseException | None, context: Any) -> int:
    """After a core-level host call: extend the deadline, or turn an exception into a trap."""
    if exc is None:
        _extend_deadline(context)
        return 0
    _pending.exc = exc
    text = f"host function failed: {_first_line(exc)}".encode()
    return ctypes.cast(ffi.wasmtime_trap_new(text, len(text)), ctypes.c_void_p).value or 0


def _get_core_linker(engine: wasmtime.Engine) -> wasmtime.Linker:
    with _lock:
        linker = _core_linkers.get(id(engine))
        if linker is None:
            linker = wasmtime.Linker(engine)
            wasmcore.define_host(linker, _core_host_return)
            _core_linkers[id(engine)] = linker
        return linker


# ---- the actor -----------------------------------------------------------------

def load_component(path: Path, *, fuel: int | None, memory_limit: int, timeout: float | None,
                   wasi: WasiGrants = WasiGrants(), cache_dir: Path | None = None,
                   fast: bool = True) -> ComponentActor:
    """Compile (once per file) and instantiate a component actor; raises ComponentError.

    ``fuel``: instructions' worth per handler call (None: unlimited); ``memory_limit``:
    bytes per linear memory; ``timeout``: seconds of guest execution per call (None:
    unlimited); ``wasi``: what of WASI it may use; ``cache_dir``: where to keep compiled
    code across processes; ``fast``: call single-module components at the core level
    (daemon.wasmcore) when they qualify.
    """
    path = Path(path)
    if fuel is not None and fuel <= 0:
        raise ValueError("fuel must be positive (or None for no fuel limit)")
    if memory_limit <= 0:
        raise ValueError("memory_limit must be a positive number of bytes")
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be positive (or None for no time limit)")
    engine = _get_engine()
    compiled = _compile(path, engine, cache_dir)
    _check_imports(path, compiled.component, engine, wasi)
    exports = _check_exports(path, compiled.component, engine)
    compiled.decide_fast_path(engine, exports, cache_dir)
    linker = None if fast and compiled.program is not None else _get_linker(engine, wasi.any)
    if timeout is not None:
        _start_ticker(engine)
    return ComponentActor(path, engine, compiled, linker, exports, fuel=fuel, memory_limit=memory_limit,
                          timeout=timeout, wasi=wasi)


def _check_imports(path: Path, component: wc.Component, engine: wasmtime.Engine, wasi: WasiGrants) -> None:
    """Every import must be one the host provides, with the contract's types (checked here,
    because host functions are typed only when called)."""
    for name, extern in component.type.imports(engine).items():
        if name == TYPES_INTERFACE:
            continue
        if name == HOST_INTERFACE:
            for fname, fty in _functions(extern, engine).items():
                want = HOST_SIGNATURES.get(fname)
                if want is None:
                    raise ComponentError(f"{path} imports {HOST_INTERFACE}#{fname}, which the host does not provide")
                got = abi.describe_func(fty)
                if got != want:
                    raise ComponentError(f"{path} imports {HOST_INTERFACE}#{fname} as {got}, "
                                         f"but the host provides {want}")
            continue
        if name.startswith("wasi:"):
            if wasi.any:
                continue
            raise ComponentError(f"{path} imports {name}, which needs a WASI grant (none given)")
        raise ComponentError(f"{path} imports {name}, which the host does not provide "
                             f"(it provides {HOST_INTERFACE} and, with a grant, WASI)")


def _check_exports(path: Path, component: wc.Component, engine: wasmtime.Engine) -> frozenset[str]:
    """The handler attributes the component exports, each with the contract's signature."""
    exports = component.type.exports(engine)
    found = set()
    for attr, (interface, fname, want) in HANDLERS.items():
        extern = exports.get(interface)
        fty = _functions(extern, engine).get(fname) if extern is not None else None
        if fty is None:
            continue
        got = abi.describe_func(fty)
        if got != want:
            raise ComponentError(f"{path} exports {interface}#{fname} as {got}, expected {want}")
        found.add(attr)
    if not found - {"init"}:
        raise ComponentError(f"{path} exports no handler interface (expected {CLIENT_INTERFACE})")
    return frozenset(found)


def _functions(extern: Any, engine: wasmtime.Engine) -> dict[str, Any]:
    ty = extern.ty
    if not isinstance(ty, wc.ComponentInstanceType):
        return {}
    return {name: item.ty for name, item in ty.exports(engine).items() if isinstance(item.ty, wc.FuncType)}


class ComponentActor:
    """One instance of a component, with the handler attributes of a Python actor module."""

    init: Callable[[bytes | None], tuple[bytes | None]]
    handle_send: Callable[[bytes | None, tuple[bytes]], tuple[bytes | None]]
    handle_request: Callable[[bytes | None, tuple[bytes]], tuple[bytes | None, tuple[bytes]]]
    handle_channel_open: Callable[[bytes | None, tuple[bytes]], tuple[bytes | None, tuple[ms.ChannelAccept]]]
    handle_channel_message: Callable[[bytes | None, tuple[str, bytes]], tuple[bytes | None]]
    handle_channel_close: Callable[[bytes | None, tuple[str]], tuple[bytes | None]]

    def __init__(self, path: Path, engine: wasmtime.Engine, compiled: _Compiled, linker: wc.Linker | None,
                 exports: frozenset[str], *,
                 fuel: int | None, memory_limit: int, timeout: float | None, wasi: WasiGrants) -> None:
        self.path = path
        self.fuel = fuel
        self.memory_limit = memory_limit
        self.timeout = timeout
        self.wasi = wasi
        self.exports = exports
        self.traps = 0  # how many times a handler trapped (and the instance was rebuilt)
        self._engine = engine
        self._component = compiled.component
        self._program = compiled.program if linker is None else None
        self._linker = linker
        self._lock = threading.Lock()
        self._store: wasmtime.Store | None = None
        self._funcs: dict[str, wc.Func] = {}
        self._core: wasmcore.CoreInstance | None = None
        self._instantiate()
        for attr in self.exports:
            setattr(self, attr, getattr(self, f"_{attr}"))

    @property
    def fast_path(self) -> bool:
        """True when calls go straight to the core module (see daemon.wasmcore)."""
        return self._program is not None

    def __repr__(self) -> str:
        path = "core" if self.fast_path else "component"
        return f"<ComponentActor {self.path} ({path}) exports={sorted(self.exports)}>"

    # -- instance lifecycle --

    def _instantiate(self) -> None:
        store = wasmtime.Store(self._engine)
        if self.wasi.any:
            store.set_wasi(self._wasi_config())
        store.set_fuel(UNLIMITED_FUEL)  # start-up code (a component's own init) is not a handler
        store.set_epoch_deadline(1 << 40)
        try:
            with wasmmem.limit_memories(self.memory_limit, self):
                if self._program is not None:
                    self._core = wasmcore.CoreInstance(self._program, store, _get_core_linker(self._engine))
                else:
                    assert self._linker is not None
                    self._funcs = self._component_funcs(store, self._linker.instantiate(store, self._component))
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            refused = wasmmem.take_refusal()
            reason = f"memory limit of {refused} bytes exceeded" if refused is not None else _first_line(exc)
            raise ComponentError(f"{self.path} cannot be instantiated: {reason}") from None
        self._store = store

    def _component_funcs(self, store: wasmtime.Store, instance: wc.Instance) -> dict[str, wc.Func]:
        funcs: dict[str, wc.Func] = {}
        for attr in self.exports:
            interface, name, _ = HANDLERS[attr]
            parent = instance.get_export_index(store, interface)
            index = instance.get_export_index(store, name, parent) if parent is not None else None
            func = instance.get_func(store, index) if index is not None else None
            if func is None:  # cannot happen: the type said it is there
                raise ComponentError(f"{self.path} does not export {interface}#{name} after all")
            funcs[attr] = func
        return funcs

    def _wasi_config(self) -> wasmtime.WasiConfig:
        config = wasmtime.WasiConfig()
        config.stdout_custom = _forward("stdout") if self.wasi.stdout else _discard
        config.stderr_custom = _forward("stderr") if self.wasi.stderr else _discard
        return config

    # -- calls --

    def _call(self, attr: str, state: bytes | None, texts: tuple[str, ...], payload: bytes | None) -> Any:
        """Run one handler: limits set, instance rebuilt first if the last call trapped."""
        _check_value(state, "state", optional=True)
        _check_value(payload, "msg", optional=True)
        for text in texts:
            if not isinstance(text, str):
                raise TypeError(f"{attr}: expected str, got {type(text).__name__}")
        with self._lock:
            if self._store is None:
                self._instantiate()
            store = self._store
            assert store is not None
            store.set_fuel(self.fuel if self.fuel is not None else UNLIMITED_FUEL)
            if self.timeout is not None:
                store.set_epoch_deadline(int(self.timeout / EPOCH_TICK) + 1)
                _pending.deadline = (self.timeout, time.monotonic())
            else:
                store.set_epoch_deadline(1 << 40)
                _pending.deadline = None
            _pending.exc = None
            wasmmem.take_refusal()
            try:
                with wasmmem.limit_memories(self.memory_limit, self):
                    if self._core is not None:
                        return self._core.call(attr, state, texts, payload)
                    return self._component_call(store, attr, state, texts, payload)
            except wasmcore.GuestFailed as exc:
                raise ComponentFailed(str(exc)) from None
            except (wasmtime.WasmtimeError, wasmtime.Trap, wasmcore.CoreTrap) as exc:
                raise self._trapped(exc) from None
            finally:
                _pending.deadline = None

    def _component_call(self, store: wasmtime.Store, attr: str, state: bytes | None, texts: tuple[str, ...],
                        payload: bytes | None) -> Any:
        func = self._funcs[attr]
        items: list[tuple[Any, Any]] = [(abi.lower_string, t) for t in texts]
        if payload is not None:
            items.append((abi.lower_bytes, payload))
        args = (ffi.wasmtime_component_val_t * 2)()
        result = ffi.wasmtime_component_val_t()
        try:
            args[1].kind = abi._K_BOOL
            abi.lower_option_bytes(args[0], state)
            abi.lower_tuple(args[1], items)
            error = ffi.wasmtime_component_func_call(
                ctypes.byref(func._func), store._context(), args, 2, ctypes.byref(result), 1)
            if error:
                raise wasmtime.WasmtimeError._from_ptr(error)
            try:
                return _LIFTS[attr](result)
            finally:
                abi.delete(result)
        finally:
            abi.delete(args[0])
            abi.delete(args[1])

    # -- the handlers, in the Python actors' shapes --

    def _init(self, state: bytes | None) -> tuple[bytes | None]:
        try:
            actor_id = ms.current_actor()
        except ms.MessageServerError:
            actor_id = ""  # no host bound (a unit test calling init directly)
        return self._call("init", state, (actor_id,), None)

    def _handle_send(self, state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None]:
        (msg,) = params
        return self._call("handle_send", state, (), msg)

    def _handle_request(self, state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None, tuple[bytes]]:
        (msg,) = params
        return self._call("handle_request", state, (), msg)

    def _handle_channel_open(self, state: bytes | None,
                             params: tuple[bytes]) -> tuple[bytes | None, tuple[ms.ChannelAccept]]:
        (msg,) = params
        return self._call("handle_channel_open", state, (), msg)

    def _handle_channel_message(self, state: bytes | None, params: tuple[str, bytes]) -> tuple[bytes | None]:
        channel_id, msg = params
        return self._call("handle_channel_message", state, (channel_id,), msg)

    def _handle_channel_close(self, state: bytes | None, params: tuple[str]) -> tuple[bytes | None]:
        (channel_id,) = params
        return self._call("handle_channel_close", state, (channel_id,), None)

    # -- traps --

    def _trapped(self, error: BaseException) -> BaseException:
        """The exception for a failed call; the instance is dropped either way."""
        self._store, self._funcs, self._core = None, {}, None
        self.traps += 1
        host_exc: BaseException | None = getattr(_pending, "exc", None)
        _pending.exc = None
        if isinstance(host_exc, wasmcore.CoreTrap):
            wasmmem.take_refusal()
            return ComponentTrap(f"handler trapped: {host_exc}")
        if host_exc is not None:
            wasmmem.take_refusal()
            return host_exc
        return ComponentTrap(self._trap_reason(error))

    def _trap_reason(self, error: BaseException) -> str:
        refused = wasmmem.take_refusal()
        text = str(error).strip()
        if "all fuel consumed" in text:
            return "handler ran out of fuel"
        if "wasm trap: interrupt" in text:
            return f"handler exceeded its time limit of {self.timeout:g} s"
        if refused is not None:
            # The guest learnt of the refusal (memory.grow gave -1) and aborted, or
            # the host could not lower a value into it.
            return f"memory limit of {refused} bytes exceeded"
        if isinstance(error, wasmcore.CoreTrap):
            return f"handler trapped: {error}"
        return f"handler trapped: {_trap_cause(text)}"

    @property
    def memory_bytes(self) -> int:
        """Linear memory this actor's instance holds now (committed bytes)."""
        return wasmmem.owned_bytes(self)


def _trap_cause(text: str) -> str:
    """The line that says why, from wasmtime's "error while executing ... Caused by: ..." text."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if "Caused by:" in lines:
        after = lines[lines.index("Caused by:") + 1:]
        if after:
            return after[-1]
    for line in lines:
        if line.startswith("wasm trap:"):
            return line
    return lines[0] if lines else "unknown trap"


def _check_value(value: object, what: str, optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, bytes):
        raise TypeError(f"{what} must be bytes, not {type(value).__name__}")


class ComponentFailed(Exception):
    """Raised for a handler's ``err``: an ordinary handler failure, like a Python actor's exception."""


def _ok_payload(result: Any) -> Any:
    ok, payload = abi.lift_result(result)
    if not ok:
        raise ComponentFailed(abi.lift_string(payload) if payload is not None else "failed")
    return payload


def _lift_state(result: Any) -> tuple[bytes | None]:
    (state,) = abi.tuple_items(_ok_payload(result), 1)
    return (abi.lift_option_bytes(state),)


def _lift_reply(result: Any) -> tuple[bytes | None, tuple[bytes]]:
    state, rest = abi.tuple_items(_ok_payload(result), 2)
    (reply,) = abi.tuple_items(rest, 1)
    return abi.lift_option_bytes(state), (abi.lift_bytes(reply),)


def _lift_accept(result: Any) -> tuple[bytes | None, tuple[ms.ChannelAccept]]:
    state, rest = abi.tuple_items(_ok_payload(result), 2)
    (accept,) = abi.tuple_items(rest, 1)
    fields = abi.record_fields(accept)
    return abi.lift_option_bytes(state), (ms.ChannelAccept(abi.lift_bool(fields["accepted"]),
                                                           abi.lift_option_bytes(fields["message"])),)


_LIFTS: dict[str, Callable[[Any], Any]] = {
    "init": _lift_state,
    "handle_send": _lift_state,
    "handle_request": _lift_reply,
    "handle_channel_open": _lift_accept,
    "handle_channel_message": _lift_state,
    "handle_channel_close": _lift_state,
}


def _forward(stream: str) -> Callable[[bytes], None]:
    def write(data: bytes) -> None:
        target = getattr(sys, stream)
        buffer = getattr(target, "buffer", None)
        if buffer is not None:
            target.flush()
            buffer.write(data)
            buffer.flush()
        else:
            target.write(data.decode("utf-8", "replace"))
    return write


def _discard(data: bytes) -> None:
    """Output a component may not show."""
