"""load_component() and ComponentActor: a component instance with a Python actor module's surface."""

from __future__ import annotations

import ctypes
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime import component as wc

from actors import message_server as ms

from . import abi, core, host, memory
from .contract import HANDLERS, WasiGrants, check_exports, check_imports
from .engine import EPOCH_TICK, UNLIMITED_FUEL, Compiled, compile_component, first_line, get_engine, start_ticker
from .errors import ComponentError, ComponentFailed, ComponentTrap
from .host import get_core_linker, get_linker, pending


def load_component(path: Path, *, fuel: int | None, memory_limit: int, timeout: float | None,
                   wasi: WasiGrants = WasiGrants(), cache_dir: Path | None = None,
                   fast: bool = True) -> ComponentActor:
    """Compile (once per file) and instantiate a component actor; raises ComponentError.

    ``fuel``: instructions' worth per handler call (None: unlimited); ``memory_limit``:
    bytes per linear memory; ``timeout``: seconds of guest execution per call (None:
    unlimited); ``wasi``: what of WASI it may use; ``cache_dir``: where to keep compiled
    code across processes; ``fast``: call single-module components at the core level
    (daemon.wasm.core) when they qualify.
    """
    path = Path(path)
    if fuel is not None and fuel <= 0:
        raise ValueError("fuel must be positive (or None for no fuel limit)")
    if memory_limit <= 0:
        raise ValueError("memory_limit must be a positive number of bytes")
    if timeout is not None and timeout <= 0:
        raise ValueError("timeout must be positive (or None for no time limit)")
    engine = get_engine()
    compiled = compile_component(path, engine, cache_dir)
    check_imports(path, compiled.component, engine, wasi)
    exports = check_exports(path, compiled.component, engine)
    compiled.decide_fast_path(engine, exports, cache_dir)
    linker = None if fast and compiled.program is not None else get_linker(engine, wasi.any)
    if timeout is not None:
        start_ticker(engine)
    return ComponentActor(path, engine, compiled, linker, exports, fuel=fuel, memory_limit=memory_limit,
                          timeout=timeout, wasi=wasi)


class ComponentActor:
    """One instance of a component, with the handler attributes of a Python actor module.

    A handler the component does not export is not an attribute at all
    (``getattr(actor, "handle_send", None)`` is None), as with a module.
    """

    def __init__(self, path: Path, engine: wasmtime.Engine, compiled: Compiled, linker: wc.Linker | None,
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
        # Names this actor's memories in daemon.wasm.memory (a token, not self: the
        # memory table must not keep the actor alive).
        self._memory_tag = object()
        self._store: wasmtime.Store | None = None
        self._funcs: dict[str, wc.Func] = {}
        self._core: core.CoreInstance | None = None
        self._instantiate()

    # -- the handler attributes (properties, so no bound method keeps the actor in a cycle) --

    def _exported(self, attr: str, method: Any) -> Any:
        if attr not in self.exports:
            raise AttributeError(f"{self.path.name} does not export {attr}")
        return method

    @property
    def init(self) -> Callable[[bytes | None], tuple[bytes | None]]:
        return self._exported("init", self._init)

    @property
    def handle_send(self) -> Callable[[bytes | None, tuple[bytes]], tuple[bytes | None]]:
        return self._exported("handle_send", self._handle_send)

    @property
    def handle_request(self) -> Callable[[bytes | None, tuple[bytes]], tuple[bytes | None, tuple[bytes]]]:
        return self._exported("handle_request", self._handle_request)

    @property
    def handle_channel_open(self) -> Callable[[bytes | None, tuple[bytes]],
                                              tuple[bytes | None, tuple[ms.ChannelAccept]]]:
        return self._exported("handle_channel_open", self._handle_channel_open)

    @property
    def handle_channel_message(self) -> Callable[[bytes | None, tuple[str, bytes]], tuple[bytes | None]]:
        return self._exported("handle_channel_message", self._handle_channel_message)

    @property
    def handle_channel_close(self) -> Callable[[bytes | None, tuple[str]], tuple[bytes | None]]:
        return self._exported("handle_channel_close", self._handle_channel_close)

    @property
    def fast_path(self) -> bool:
        """True when calls go straight to the core module (see daemon.wasm.core)."""
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
            with memory.limit_memories(self.memory_limit, self._memory_tag):
                if self._program is not None:
                    self._core = core.CoreInstance(self._program, store, get_core_linker(self._engine))
                else:
                    assert self._linker is not None
                    self._funcs = self._component_funcs(store, self._linker.instantiate(store, self._component))
        except (wasmtime.WasmtimeError, wasmtime.Trap) as exc:
            refused = memory.take_refusal()
            reason = f"memory limit of {refused} bytes exceeded" if refused is not None else first_line(exc)
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
            else:
                store.set_epoch_deadline(1 << 40)
            host.start_guest_clock(self.timeout)
            pending.exc = None
            memory.take_refusal()
            try:
                with memory.limit_memories(self.memory_limit, self._memory_tag):
                    if self._core is not None:
                        return self._core.call(attr, state, texts, payload)
                    return self._component_call(store, attr, state, texts, payload)
            except core.GuestFailed as exc:
                raise ComponentFailed(str(exc)) from None
            except (wasmtime.WasmtimeError, wasmtime.Trap, core.CoreTrap) as exc:
                raise self._trapped(exc) from None
            finally:
                pending.deadline = None

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
        host_exc: BaseException | None = getattr(pending, "exc", None)
        pending.exc = None
        if isinstance(host_exc, core.CoreTrap):
            memory.take_refusal()
            return ComponentTrap(f"handler trapped: {host_exc}")
        if host_exc is not None:
            memory.take_refusal()
            return host_exc
        return ComponentTrap(self._trap_reason(error))

    def _trap_reason(self, error: BaseException) -> str:
        refused = memory.take_refusal()
        text = str(error).strip()
        if "all fuel consumed" in text:
            return "handler ran out of fuel"
        if "wasm trap: interrupt" in text:
            return f"handler exceeded its time limit of {self.timeout:g} s"
        if refused is not None:
            # The guest learnt of the refusal (memory.grow gave -1) and aborted, or
            # the host could not lower a value into it.
            return f"memory limit of {refused} bytes exceeded"
        if isinstance(error, core.CoreTrap):
            return f"handler trapped: {error}"
        return f"handler trapped: {_trap_cause(text)}"

    @property
    def memory_bytes(self) -> int:
        """Linear memory this actor's instance holds now (committed bytes)."""
        return memory.owned_bytes(self._memory_tag)


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
