"""Loading actor modules and calling their handlers, inside a worker process.

A handler's outcome is one of four, reported to the daemon as a plain map
(see :func:`call_handler`):

* ``ok``: it returned a value of the spec's shape; ``state`` is the new state,
  ``value`` the reply (requests) and ``accepted``/``value`` the channel decision.
* ``error``: it raised an ordinary exception.  ``error`` is ``"Type: message"``
  and ``traceback`` holds the actor's own frames only.  The actor keeps serving.
* ``crash``: it broke the contract (wrong return shape) or raised ``SystemExit``,
  ``KeyboardInterrupt``, ``MemoryError`` or ``RecursionError``.  The daemon applies
  the restart policy.
* ``missing``: the module has no such handler.
"""

from __future__ import annotations

import hashlib
import linecache
import sys
import traceback
from types import ModuleType, TracebackType
from typing import Any

from actors import message_server as ms

HANDLER_NAMES = (
    "init",
    "handle_send",
    "handle_request",
    "handle_channel_open",
    "handle_channel_message",
    "handle_channel_close",
)

#: handlers whose result carries a second element (the reply or the channel decision)
_WITH_VALUE = frozenset({"handle_request", "handle_channel_open"})

_CRASHES = (SystemExit, KeyboardInterrupt, MemoryError, RecursionError)

_code_cache: dict[bytes, Any] = {}


class HandlerContractError(Exception):
    """A handler returned something that does not fit the spec's signature: a crash."""


def load_module(actor_id: str, path: str, source: bytes) -> ModuleType:
    """A fresh module instance for one actor.

    Actors of the same component share the compiled code (cached by the source's
    hash), never their globals.  The module is in ``sys.modules`` only while its
    top level runs (so that dataclasses and the like can find it).
    """
    key = hashlib.sha256(source).digest()
    code = _code_cache.get(key)
    if code is None:
        code = _code_cache[key] = compile(source, path, "exec")
        # tracebacks show the actor's source lines: this worker may not read the file itself
        text = source.decode("utf-8", "replace")
        linecache.cache[path] = (len(text), None, text.splitlines(keepends=True), path)
    mod_name = f"theater_actor_{actor_id.replace('-', '')}"
    module = ModuleType(mod_name)
    module.__file__ = path
    sys.modules[mod_name] = module
    try:
        exec(code, module.__dict__)  # noqa: S102 - running actor code is the job
    finally:
        sys.modules.pop(mod_name, None)
    return module


def load_component_actor(path: str, source: bytes, args: dict[str, Any]) -> Any:
    """A WebAssembly component actor, with the same handler attributes as a module.

    The daemon sends the component's bytes; they are written into this worker's scratch
    directory (its working directory) to be compiled, or found in the read-only compile
    cache the daemon keeps."""
    import os
    from pathlib import Path

    from ..wasm import WasiGrants, load_component

    local = Path(os.getcwd()) / f"{hashlib.sha256(source).hexdigest()}.wasm"
    if not local.exists():
        local.write_bytes(source)
    wasi = args.get("wasi") or {}
    cache = args.get("cache")
    return load_component(
        local,
        fuel=None,
        memory_limit=int(args.get("memory_limit") or 1 << 30),
        timeout=float(args["timeout"]) if args.get("timeout") else None,
        wasi=WasiGrants(**{k: bool(wasi.get(k)) for k in ("stdout", "stderr", "clock", "random")}),
        cache_dir=Path(cache) if isinstance(cache, str) else None,
    )


def handlers_of(module: Any) -> list[str]:
    """The handler names ``module`` defines (callables only)."""
    return [name for name in HANDLER_NAMES if callable(getattr(module, name, None))]


def describe(exc: BaseException) -> str:
    """One line naming the exception's type and its message: ``KeyError: 'zz'``."""
    if isinstance(exc, ms.MessageServerError):
        text = str(exc).strip()
        return f"MessageServerError: {text.splitlines()[0]}" if text else "MessageServerError"
    text = str(exc).strip()
    name = type(exc).__name__
    if not text:
        return name
    return f"{name}: {text.splitlines()[0]}"


def actor_traceback(exc: BaseException, path: str) -> str:
    """The traceback of ``exc`` keeping only frames of the actor's own file."""
    tb: TracebackType | None = exc.__traceback__
    frames = [f for f in traceback.extract_tb(tb) if f.filename == path]
    lines = ["Traceback (most recent call last):\n", *traceback.format_list(frames)]
    lines.extend(traceback.format_exception_only(type(exc), exc))
    return "".join(lines)


def call_handler(module: Any, path: str, fn_name: str, state: bytes | None, params: Any) -> dict[str, Any]:
    """Run one handler and report its outcome as a map for the daemon."""
    fn = getattr(module, fn_name, None)
    if fn is None or not callable(fn):
        return {"outcome": "missing"}
    try:
        raw = fn(state) if params is None else fn(state, params)
        return {"outcome": "ok", **unpack(raw, fn_name)}
    except HandlerContractError as exc:
        return {"outcome": "crash", "error": f"{fn_name} crashed: {exc}"}
    except _CRASHES as exc:
        return {"outcome": "crash", "error": f"{fn_name} crashed: {describe(exc)}",
                "traceback": actor_traceback(exc, path)}
    except BaseException as exc:  # noqa: BLE001 - actor code may raise anything
        kind = type(exc).__name__
        if kind == "ComponentTrap":  # a component actor: a limit is its caller's error, a fault a crash
            reason = str(exc)
            if reason.startswith("handler trapped"):
                return {"outcome": "crash", "error": f"{fn_name} crashed: {reason}"}
            return {"outcome": "error", "error": reason}
        if kind == "ComponentFailed":  # the component's own err: its message, as it said it
            return {"outcome": "error", "error": str(exc)}
        return {"outcome": "error", "error": describe(exc), "traceback": actor_traceback(exc, path)}


def _as_state(value: Any, fn_name: str) -> bytes | None:
    if value is None or type(value) is bytes:
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    raise HandlerContractError(f"{fn_name} returned a state of type {type(value).__name__}; expected bytes or None")


def unpack(result: Any, fn_name: str) -> dict[str, Any]:
    """Check a handler's return value against the spec's signature."""
    if fn_name not in _WITH_VALUE:
        if not isinstance(result, tuple) or len(result) != 1:
            raise HandlerContractError(f"{fn_name} must return a 1-tuple (new_state,), got {_short(result)}")
        return {"state": _as_state(result[0], fn_name)}
    if not isinstance(result, tuple) or len(result) != 2 or not isinstance(result[1], tuple) or len(result[1]) != 1:
        shape = "(new_state, (reply,))" if fn_name == "handle_request" else "(new_state, (ChannelAccept,))"
        raise HandlerContractError(f"{fn_name} must return {shape}, got {_short(result)}")
    state = _as_state(result[0], fn_name)
    value = result[1][0]
    if fn_name == "handle_request":
        if isinstance(value, str):
            value = value.encode()
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise HandlerContractError(f"{fn_name} returned a reply of type {type(value).__name__}; expected bytes")
        return {"state": state, "value": bytes(value)}
    if not isinstance(value, ms.ChannelAccept):
        raise HandlerContractError(f"{fn_name} must return a ChannelAccept, got {type(value).__name__}")
    message = value.message
    if message is not None and not isinstance(message, bytes):
        message = _as_state(message, fn_name)
    return {"state": state, "accepted": bool(value.accepted), "value": message}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
