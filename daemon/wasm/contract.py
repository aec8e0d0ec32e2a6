"""The WIT contract (wit/) as the host checks it: names, signatures, grants.

Host functions defined through wasmtime's C API are typed only when called, so
every import and export of a component is compared here, at load, with the
contract's signatures written as WIT text (:func:`daemon.wasm.abi.describe_func`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime
from wasmtime import component as wc

from . import abi
from .errors import ComponentError

PACKAGE = "theater:simple"
HOST_INTERFACE = f"{PACKAGE}/message-server-host"
TYPES_INTERFACE = f"{PACKAGE}/types"
CLIENT_INTERFACE = f"{PACKAGE}/message-server-client"
ACTOR_INTERFACE = f"{PACKAGE}/actor"
CONTEXT_INTERFACE = f"{PACKAGE}/message-context"  # theater's addition (wit/theater.wit)

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

# message-context function -> its signature as WIT text
CONTEXT_SIGNATURES: dict[str, str] = {
    "current-channel": "func() -> option<record { channel-id: string, opener: string }>",
    "current-actor": "func() -> string",
}

# imported interface -> the functions the host provides in it
PROVIDED: dict[str, dict[str, str]] = {HOST_INTERFACE: HOST_SIGNATURES, CONTEXT_INTERFACE: CONTEXT_SIGNATURES}


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


def check_imports(path: Path, component: wc.Component, engine: wasmtime.Engine, wasi: WasiGrants) -> None:
    """Every import must be one the host provides, with the contract's types (checked here,
    because host functions are typed only when called)."""
    for name, extern in component.type.imports(engine).items():
        if name == TYPES_INTERFACE:
            continue
        provided = PROVIDED.get(name)
        if provided is not None:
            for fname, fty in functions(extern, engine).items():
                want = provided.get(fname)
                if want is None:
                    raise ComponentError(f"{path} imports {name}#{fname}, which the host does not provide")
                got = abi.describe_func(fty)
                if got != want:
                    raise ComponentError(f"{path} imports {name}#{fname} as {got}, but the host provides {want}")
            continue
        if name.startswith("wasi:"):
            if wasi.any:
                continue
            raise ComponentError(f"{path} imports {name}, which needs a WASI grant (none given)")
        raise ComponentError(f"{path} imports {name}, which the host does not provide "
                             f"(it provides {HOST_INTERFACE}, {CONTEXT_INTERFACE} and, with a grant, WASI)")


def check_exports(path: Path, component: wc.Component, engine: wasmtime.Engine) -> frozenset[str]:
    """The handler attributes the component exports, each with the contract's signature."""
    exports = component.type.exports(engine)
    found = set()
    for attr, (interface, fname, want) in HANDLERS.items():
        extern = exports.get(interface)
        fty = functions(extern, engine).get(fname) if extern is not None else None
        if fty is None:
            continue
        got = abi.describe_func(fty)
        if got != want:
            raise ComponentError(f"{path} exports {interface}#{fname} as {got}, expected {want}")
        found.add(attr)
    if not found - {"init"}:
        raise ComponentError(f"{path} exports no handler interface (expected {CLIENT_INTERFACE})")
    return frozenset(found)


def functions(extern: Any, engine: wasmtime.Engine) -> dict[str, Any]:
    ty = extern.ty
    if not isinstance(ty, wc.ComponentInstanceType):
        return {}
    return {name: item.ty for name, item in ty.exports(engine).items() if isinstance(item.ty, wc.FuncType)}
