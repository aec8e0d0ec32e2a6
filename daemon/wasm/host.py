"""The host functions a component imports (message-server-host, message-context), and the linkers.

Every host function calls the thread-bound host of :mod:`actors.message_server`
(what the daemon binds per worker thread, or a test's fake).  A
:class:`~actors.message_server.MessageServerError` becomes the WIT ``err``
value; any other exception is kept in :data:`pending` and traps the guest, and
the caller of the handler re-raises it.  After each host call the guest's
epoch deadline is reset to what is left of its own time, so waiting for a
reply is not charged to it.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime import component as wc

from actors import message_server as ms

from . import abi, core
from .contract import CONTEXT_INTERFACE, HOST_INTERFACE, TYPES_INTERFACE
from .engine import EPOCH_TICK, first_line

_lock = threading.Lock()
_linkers: dict[bool, wc.Linker] = {}
_core_linkers: dict[int, wasmtime.Linker] = {}

_HostFn = Callable[[Any, Any], None]  # (args array, result slot) -> None
_host_fns: dict[int, _HostFn] = {}
# per thread: .exc (a host function's exception); .deadline, while a call with a time limit runs:
# [the limit, when the guest last started running, the guest's time used before that]
pending = threading.local()


def _ok(slot: Any, fill: Any = None, value: Any = None) -> None:
    abi.lower_result(slot, True, fill, value)


def _err(slot: Any, message: str) -> None:
    abi.lower_result(slot, False, abi.lower_string, message or "failed")


def _message_server_call(name: str, lifts: tuple[Callable[[Any], Any], ...], fill: Any) -> _HostFn:
    """The host function ``name``: its arguments lifted by ``lifts``, then a call of the
    ``actors.message_server`` function of that name; its reply lowered by ``fill`` (None: unit)."""
    function = name.replace("-", "_")

    def host_fn(args: Any, slot: Any) -> None:
        try:
            reply = getattr(ms, function)(*(lift(args[i]) for i, lift in enumerate(lifts)))
        except ms.MessageServerError as exc:
            return _err(slot, str(exc))
        _ok(slot, fill, reply)

    return host_fn


_TO_ACTOR = (abi.lift_string, abi.lift_bytes)  # (actor or channel id, message)


def _host_current_channel(args: Any, slot: Any) -> None:
    info = ms.current_channel()
    fields = None if info is None else [("channel-id", abi.lower_string, info.channel_id),
                                        ("opener", abi.lower_string, info.opener)]
    abi.lower_option(slot, abi.lower_record, fields)


def _host_current_actor(args: Any, slot: Any) -> None:
    abi.lower_string(slot, ms.current_actor())


# imported interface -> function name -> implementation
HOST_FUNCTIONS: dict[str, dict[str, _HostFn]] = {
    HOST_INTERFACE: {
        "send": _message_server_call("send", _TO_ACTOR, None),
        "request": _message_server_call("request", _TO_ACTOR, abi.lower_bytes),
        "open-channel": _message_server_call("open-channel", _TO_ACTOR, abi.lower_string),
        "send-on-channel": _message_server_call("send-on-channel", _TO_ACTOR, None),
        "close-channel": _message_server_call("close-channel", (abi.lift_string,), None),
    },
    CONTEXT_INTERFACE: {
        "current-channel": _host_current_channel,
        "current-actor": _host_current_actor,
    },
}


@ffi.wasmtime_component_func_callback_t
def _host_entry(data: int | None, context: Any, ty: Any, args: Any, nargs: int, results: Any, nresults: int) -> int:
    """Every host import enters here; ``data`` says which one."""
    try:
        pause_guest_clock()
        _host_fns[data or 0](args, results[0])
        # Time spent in the host (a request waiting for its reply) is not the guest's.
        extend_deadline(context)
        return 0
    except BaseException as exc:  # noqa: BLE001 - re-raised by the caller of the handler
        pending.exc = exc
        err = ffi.wasmtime_error_new(f"host function failed: {first_line(exc)}".encode())
        return ctypes.cast(err, ctypes.c_void_p).value or 0


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _host_finalize(data: int | None) -> None:
    """Host functions live as long as the process; nothing to free."""


def start_guest_clock(limit: float | None) -> None:
    """A call with a time limit of ``limit`` seconds (None: none) starts on this thread."""
    pending.deadline = None if limit is None else [limit, time.monotonic(), 0.0]


def pause_guest_clock() -> None:
    """A host call begins: the guest's time stops counting."""
    clock = getattr(pending, "deadline", None)
    if clock is not None:
        clock[2] += time.monotonic() - clock[1]


def extend_deadline(context: Any) -> None:
    """A host call ends: the guest's clock runs again, and its epoch deadline is what it has left."""
    clock = getattr(pending, "deadline", None)
    if clock is not None:
        limit, _, used = clock
        clock[1] = time.monotonic()
        ffi.wasmtime_context_set_epoch_deadline(context, max(1, int((limit - used) / EPOCH_TICK) + 1))


def get_linker(engine: wasmtime.Engine, wasi: bool) -> wc.Linker:
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
            for interface, fns in HOST_FUNCTIONS.items():
                with root.add_instance(interface) as host:
                    for name, fn in fns.items():
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


def core_host_error(exc: BaseException, context: Any) -> int:
    """A core-level host call raised ``exc`` (not a message-server error): it traps the guest."""
    pending.exc = exc
    text = f"host function failed: {first_line(exc)}".encode()
    return ctypes.cast(ffi.wasmtime_trap_new(text, len(text)), ctypes.c_void_p).value or 0


def get_core_linker(engine: wasmtime.Engine) -> wasmtime.Linker:
    with _lock:
        linker = _core_linkers.get(id(engine))
        if linker is None:
            linker = wasmtime.Linker(engine)
            core.define_host(linker, pause_guest_clock, extend_deadline, core_host_error)
            _core_linkers[id(engine)] = linker
        return linker
