"""The fast path: run a single-module component's core module directly, with the canonical ABI done here.

Theory of operation.  wasmtime-py reaches a component only through values
(``wasmtime_component_val_t``), one per byte of a ``list<u8>``; even with bulk
conversion (:mod:`daemon.wasm.abi`) a 64 KiB state costs milliseconds, almost
all of it in wasmtime's per-element lowering and lifting.  A component made by
``wasm-tools component new`` from one core module (our C examples) is that
module plus canonical-ABI adapters whose layout the WIT contract fixes.  So,
when the component's main core module exports ``memory``, ``cabi_realloc`` and
the handler exports under their conventional names (``<interface>#<func>``,
``cabi_post_<interface>#<func>``) with the flattened signatures of our WIT,
and imports nothing but the host functions (message-server-host, message-context), this module
instantiates that core module itself and:

* lowers a value by calling the guest's ``cabi_realloc`` and copying the bytes
  in with one ``memmove``; lifts one with one ``string_at``;
* reads the result from the return area the export returns (layouts below),
  then calls ``cabi_post_*`` as the canonical ABI requires;
* implements the host imports at the core level (same layouts, reverse).

Anything else (several core modules, adapters, WASI, other names) keeps the
component path.  The component was already type-checked against the
contract at load, so the layouts here are the contract's.  UTF-8 is the
string encoding (``component new``'s default).  A malformed result (bad
discriminant, pointer out of bounds, invalid UTF-8) traps, as wasmtime would.

Return-area layouts (wasm32, all 4-byte aligned):
    result<tuple<option<json>>, string>       disc@0; ok: opt disc@4 ptr@8 len@12; err: ptr@4 len@8
    ... handle-request adds tuple<json>       reply ptr@16 len@20
    ... handle-channel-open adds channel-accept   accepted@16, option<json> disc@20 ptr@24 len@28
    host result<_|json|string, string>        disc@0, ptr@4, len@8
    current-channel's option<channel-info>    disc@0, channel-id ptr@4 len@8, opener ptr@12 len@16
    current-actor's string                    ptr@0, len@4
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi

from actors import message_server as ms

HOST_MODULE = "theater:simple/message-server-host"
CONTEXT_MODULE = "theater:simple/message-context"
EXPORTS = {
    "init": "theater:simple/actor#init",
    "handle_send": "theater:simple/message-server-client#handle-send",
    "handle_request": "theater:simple/message-server-client#handle-request",
    "handle_channel_open": "theater:simple/message-server-client#handle-channel-open",
    "handle_channel_message": "theater:simple/message-server-client#handle-channel-message",
    "handle_channel_close": "theater:simple/message-server-client#handle-channel-close",
}
_EXPORT_PARAMS = {"init": 5, "handle_send": 5, "handle_request": 5, "handle_channel_open": 5,
                  "handle_channel_message": 7, "handle_channel_close": 5}
_HOST_PARAMS = {(HOST_MODULE, "send"): 5, (HOST_MODULE, "request"): 5, (HOST_MODULE, "open-channel"): 5,
                (HOST_MODULE, "send-on-channel"): 5, (HOST_MODULE, "close-channel"): 3,
                (CONTEXT_MODULE, "current-channel"): 1, (CONTEXT_MODULE, "current-actor"): 1}
_I32 = ffi.WASMTIME_I32.value
_func_call = ffi.dll.wasmtime_func_call  # the raw ctypes function (argtypes set by wasmtime-py)


class CoreTrap(Exception):
    """The guest broke the canonical ABI (or a call into it trapped); the instance is unusable."""


class GuestFailed(Exception):
    """The handler returned ``err``; the message is the guest's string."""


def core_modules(component: bytes) -> list[bytes]:
    """The top-level core modules of a component binary (section id 1), in order."""
    modules = []
    at = 8
    while at < len(component):
        section = component[at]
        size, at = _leb(component, at + 1)
        if section == 1:
            modules.append(component[at:at + size])
        at += size
    return modules


def _leb(data: bytes, at: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[at]
        at += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, at


def _export_names(module: bytes) -> set[str] | None:
    """The export names of a core module, read from its export section without compiling it."""
    at = 8
    try:
        while at < len(module):
            section = module[at]
            size, at = _leb(module, at + 1)
            if section == 7:
                count, pos = _leb(module, at)
                names = set()
                for _ in range(count):
                    length, pos = _leb(module, pos)
                    names.add(module[pos:pos + length].decode("utf-8"))
                    pos += length + 1  # the name, then the kind byte
                    _, pos = _leb(module, pos)  # the index
                return names
            at += size
    except (IndexError, UnicodeDecodeError):
        return None
    return set()


def _i32_sig(ty: wasmtime.FuncType, params: int, results: int) -> bool:
    return (len(ty.params) == params and len(ty.results) == results
            and all(str(p) == "i32" for p in [*ty.params, *ty.results]))


@dataclass(frozen=True)
class CoreProgram:
    """The core module of a component that qualifies for the fast path."""

    module: wasmtime.Module
    exports: frozenset[str]  # handler attributes
    post: frozenset[str]  # handler attributes with a cabi_post_ export

    @classmethod
    def find(cls, component: bytes, engine: wasmtime.Engine, exports: frozenset[str],
             compile: Callable[[bytes], wasmtime.Module] | None = None) -> CoreProgram | None:
        """The fast-path program for ``component``, or None when it does not qualify.
        ``compile`` turns the chosen core module's bytes into a Module (a cache may)."""
        candidates = []
        for raw in core_modules(component):
            names = _export_names(raw)
            if names is None:
                return None
            if {"memory", "cabi_realloc"} <= names:
                candidates.append(raw)
        if len(candidates) != 1:
            return None
        try:
            module = compile(candidates[0]) if compile is not None else wasmtime.Module(engine, candidates[0])
        except wasmtime.WasmtimeError:
            return None
        # Every import must be a host function we implement at the core level.
        for imp in module.imports:
            ty = imp.type
            nparams = _HOST_PARAMS.get((imp.module, imp.name or ""))
            if nparams is None or not isinstance(ty, wasmtime.FuncType) or not _i32_sig(ty, nparams, 0):
                return None
        by_name = {e.name: e.type for e in module.exports}
        realloc = by_name.get("cabi_realloc")
        if not isinstance(realloc, wasmtime.FuncType) or not _i32_sig(realloc, 4, 1):
            return None
        post = set()
        for attr in exports:
            export_ty = by_name.get(EXPORTS[attr])
            if not isinstance(export_ty, wasmtime.FuncType) or not _i32_sig(export_ty, _EXPORT_PARAMS[attr], 1):
                return None
            post_ty = by_name.get(f"cabi_post_{EXPORTS[attr]}")
            if post_ty is not None:
                if not isinstance(post_ty, wasmtime.FuncType) or not _i32_sig(post_ty, 1, 0):
                    return None
                post.add(attr)
        return cls(module, exports, frozenset(post))


# ---- the instance ------------------------------------------------------------------

_current = threading.local()  # .instance: the CoreInstance whose export is running on this thread


class CoreInstance:
    """One instance of a CoreProgram in a Store; calls take and return the Python actors' shapes."""

    def __init__(self, program: CoreProgram, store: wasmtime.Store, linker: wasmtime.Linker) -> None:
        self.store = store
        instance = linker.instantiate(store, program.module)
        exports = instance.exports(store)
        memory = exports["memory"]
        realloc = exports["cabi_realloc"]
        assert isinstance(memory, wasmtime.Memory) and isinstance(realloc, wasmtime.Func)
        self._memory = memory._memory
        self._realloc = realloc._func
        self._funcs: dict[str, Any] = {}
        self._posts: dict[str, Any] = {}
        for attr in program.exports:
            func = exports[EXPORTS[attr]]
            assert isinstance(func, wasmtime.Func)
            self._funcs[attr] = func._func
            if attr in program.post:
                post = exports[f"cabi_post_{EXPORTS[attr]}"]
                assert isinstance(post, wasmtime.Func)
                self._posts[attr] = post._func
        self._context: Any = store._context()
        self._view: tuple[int, int] | None = None
        self._params: dict[int, Any] = {n: (ffi.wasmtime_val_t * n)() for n in (1, 3, 4, 5, 7)}
        for array in self._params.values():
            for i in range(len(array)):
                array[i].kind = _I32
        self._out: Any = (ffi.wasmtime_val_t * 1)()

    # -- memory --

    def _base(self, context: Any) -> tuple[int, int]:
        """(address, size) of linear memory; cached until the guest runs again (it may grow it).
        Our memories never move (daemon.wasm.memory), but the address is re-read anyway."""
        if self._view is None:
            ptr = ffi.wasmtime_memory_data(context, ctypes.byref(self._memory))
            size = ffi.wasmtime_memory_data_size(context, ctypes.byref(self._memory))
            self._view = (ctypes.cast(ptr, ctypes.c_void_p).value or 0, size)
        return self._view

    def read(self, context: Any, ptr: int, length: int) -> bytes:
        base, size = self._base(context)
        if ptr < 0 or length < 0 or ptr + length > size:
            raise CoreTrap(f"pointer out of bounds: {length} bytes at {ptr} in {size} bytes of memory")
        return ctypes.string_at(base + ptr, length) if length else b""

    def read_str(self, context: Any, ptr: int, length: int) -> str:
        try:
            return self.read(context, ptr, length).decode("utf-8")
        except UnicodeDecodeError:
            raise CoreTrap("invalid utf-8 in a string from the guest") from None

    def words(self, context: Any, ptr: int, count: int) -> list[int]:
        if ptr % 4:
            raise CoreTrap(f"misaligned return area at {ptr}")
        raw = self.read(context, ptr, 4 * count)
        return [int.from_bytes(raw[i:i + 4], "little") for i in range(0, len(raw), 4)]

    def write(self, context: Any, ptr: int, data: bytes) -> None:
        base, size = self._base(context)
        if ptr < 0 or ptr + len(data) > size:
            raise CoreTrap(f"pointer out of bounds: {len(data)} bytes at {ptr} in {size} bytes of memory")
        if data:
            ctypes.memmove(base + ptr, data, len(data))

    def put(self, context: Any, data: bytes) -> int:
        """Copy ``data`` into memory the guest allocated for it (its cabi_realloc)."""
        ptr = self.invoke(context, self._realloc, (0, 0, 1, len(data)))
        self.write(context, ptr, data)
        return ptr

    # -- calls --

    def invoke(self, context: Any, func: Any, args: tuple[int, ...], results: int = 1) -> int:
        """Call a core function of i32s; its i32 result (0 when it has none)."""
        params: Any = self._params.get(len(args))
        if params is None or context is not self._context:  # a nested call from a host function
            params = (ffi.wasmtime_val_t * len(args))()
            for i in range(len(args)):
                params[i].kind = _I32
        for i, value in enumerate(args):
            params[i].of.i32 = value - (1 << 32) if value >= 1 << 31 else value
        out = self._out if context is self._context else (ffi.wasmtime_val_t * 1)()
        trap = ctypes.POINTER(ffi.wasm_trap_t)()
        self._view = None
        error = _func_call(context, ctypes.byref(func), params, len(args), out, results, ctypes.byref(trap))
        self._view = None
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
        if trap:
            raise wasmtime.Trap._from_ptr(trap)
        return out[0].of.i32 & 0xFFFFFFFF if results else 0

    def call(self, attr: str, state: bytes | None, texts: tuple[str, ...], payload: bytes | None) -> Any:
        """Run handler ``attr``: (state, *texts, payload?) in, the lifted ok value out, or GuestFailed."""
        context = self._context
        outer = getattr(_current, "instance", None)
        _current.instance = self
        try:
            args: list[int] = [0, 0, 0] if state is None else [1, self.put(context, state), len(state)]
            for text in texts:
                encoded = text.encode("utf-8")
                args += [self.put(context, encoded), len(encoded)]
            if payload is not None:
                args += [self.put(context, payload), len(payload)]
            area = self.invoke(context, self._funcs[attr], tuple(args))
            value = self._lift(context, attr, area)
            post = self._posts.get(attr)
            if post is not None:
                self.invoke(context, post, (area,), results=0)
        finally:
            _current.instance = outer
        if isinstance(value, GuestFailed):
            raise value
        return value

    def _lift(self, context: Any, attr: str, area: int) -> Any:
        head = self.words(context, area, 4)
        disc = head[0] & 0xFF
        if disc == 1:
            return GuestFailed(self.read_str(context, head[1], head[2]))
        if disc != 0:
            raise CoreTrap(f"invalid result discriminant {disc}")
        state = self._option(context, head[1] & 0xFF, head[2], head[3])
        if attr == "handle_request":
            ptr, length = self.words(context, area + 16, 2)
            return state, (self.read(context, ptr, length),)
        if attr == "handle_channel_open":
            accepted, opt, ptr, length = self.words(context, area + 16, 4)
            # The canonical ABI lifts a bool as "not zero", as wasmtime does.
            return state, (ms.ChannelAccept(bool(accepted & 0xFF), self._option(context, opt & 0xFF, ptr, length)),)
        return (state,)

    def _option(self, context: Any, disc: int, ptr: int, length: int) -> bytes | None:
        if disc == 0:
            return None
        if disc != 1:
            raise CoreTrap(f"invalid option discriminant {disc}")
        return self.read(context, ptr, length)


# ---- host functions at the core level ------------------------------------------------


def _host_result(instance: CoreInstance, context: Any, area: int, ok: bool, data: bytes | None) -> None:
    """Write result<_|json|string, string> at ``area``."""
    if area % 4:
        raise CoreTrap(f"misaligned return area at {area}")
    ptr = instance.put(context, data) if data is not None else 0
    length = len(data) if data is not None else 0
    instance.write(context, area, bytes((0 if ok else 1, 0, 0, 0)) + ptr.to_bytes(4, "little")
                   + length.to_bytes(4, "little"))


def _run_host(name: str, context: Any, a: list[int], resume: Callable[[Any], None]) -> None:
    """One host call at the core level.  ``resume(context)`` runs once the message server has
    answered and before anything is written into the guest (which runs the guest's
    ``cabi_realloc``: guest time again)."""
    instance: CoreInstance = _current.instance
    if name in ("current-channel", "current-actor"):
        resume(context)
        return _run_context(instance, name, context, a[0])
    try:
        if name == "close-channel":
            ms.close_channel(instance.read_str(context, a[0], a[1]))
            reply = None
        else:
            target = instance.read_str(context, a[0], a[1])
            data = instance.read(context, a[2], a[3])
            if name == "send":
                ms.send(target, data)
                reply = None
            elif name == "request":
                reply = ms.request(target, data)
            elif name == "open-channel":
                reply = ms.open_channel(target, data).encode("utf-8")
            else:
                ms.send_on_channel(target, data)
                reply = None
    except ms.MessageServerError as exc:
        resume(context)
        return _host_result(instance, context, a[-1], False, (str(exc) or "failed").encode("utf-8"))
    resume(context)
    _host_result(instance, context, a[-1], True, reply)


def _run_context(instance: CoreInstance, name: str, context: Any, area: int) -> None:
    """message-context: write the answer at ``area`` (layouts in the module docstring)."""
    if area % 4:
        raise CoreTrap(f"misaligned return area at {area}")
    if name == "current-actor":
        texts = [ms.current_actor()]
        head = b""
    else:
        info = ms.current_channel()
        if info is None:
            return instance.write(context, area, bytes(4))
        texts = [info.channel_id, info.opener]
        head = bytes((1, 0, 0, 0))
    words = []
    for text in texts:
        encoded = text.encode("utf-8")
        words += [instance.put(context, encoded), len(encoded)]
    instance.write(context, area, head + b"".join(w.to_bytes(4, "little") for w in words))


HostHook = Callable[[BaseException, Any], int]


def define_host(linker: wasmtime.Linker, pause: Callable[[], None], resume: Callable[[Any], None],
                on_error: HostHook) -> None:
    """Define the host imports in ``linker``.  ``pause()`` runs as each host call begins and
    ``resume(context)`` once the message server has answered, before the answer is written into
    the guest; ``on_error(exc, context)`` gets what a call raised otherwise and returns the trap
    pointer to hand back."""
    keep = []
    for (module, name), nparams in _HOST_PARAMS.items():
        functype = wasmtime.FuncType([wasmtime.ValType.i32()] * nparams, [])

        def callback(env: Any, caller: Any, args: Any, nargs: int, results: Any, nresults: int,
                     name: str = name) -> int:
            context = ffi.wasmtime_caller_context(caller)
            try:
                pause()
                _run_host(name, context, [args[i].of.i32 & 0xFFFFFFFF for i in range(nargs)], resume)
                return 0
            except BaseException as exc:  # noqa: BLE001 - handed to on_error, re-raised by the caller
                return on_error(exc, context)

        entry = ffi.wasmtime_func_callback_t(callback)
        keep.append(entry)
        encoded_module, encoded_name = module.encode(), name.encode()
        error = ffi.wasmtime_linker_define_func(linker.ptr(), encoded_module, len(encoded_module), encoded_name,
                                                len(encoded_name), functype.ptr(), entry, None, _no_finalizer)
        if error:
            raise wasmtime.WasmtimeError._from_ptr(error)
    _callbacks.extend(keep)


_callbacks: list[Any] = []  # the ctypes callbacks must outlive the linker (the process)


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _no_finalizer(env: int | None) -> None:
    """Nothing to free."""
