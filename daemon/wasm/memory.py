"""Linear memories for component actors, made by us so a refused growth is visible.

Theory of operation.  wasmtime's store limits make ``memory.grow`` return -1
at the limit, and wasmtime-py offers no way to learn that it happened: the
guest then aborts (``unreachable``) like any other fault.  So the engine is
configured with a host *memory creator* (``wasmtime_config_host_memory_creator_set``)
and every linear memory is an ``mmap`` reservation made here:

* ``new_memory`` reserves what wasmtime asks for (its reservation plus guard
  region) with ``PROT_NONE`` and makes the initial size read-write; the
  memory never moves.  The limit in force is the calling thread's
  (:func:`limit_memories`), captured per memory at its creation.
* ``grow_memory`` past the limit records the refusal on the calling thread
  (:func:`take_refusal`) and fails; otherwise it makes more pages read-write.
* :func:`owned_bytes` reports the committed size of the memories a thread
  created under one tag, which is what an idle instance costs in linear memory.

All callbacks run on the thread that called into wasmtime.  Memories made
while no limit is set (another user of the engine) are unlimited.
"""

from __future__ import annotations

import ctypes
import itertools
import mmap
import threading
from dataclasses import dataclass, field
from typing import Any

from wasmtime import _ffi as ffi

_libc = ctypes.CDLL(None, use_errno=True)
_mmap = _libc.mmap
_mmap.restype = ctypes.c_void_p
_mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_mprotect = _libc.mprotect
_mprotect.restype = ctypes.c_int
_mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
_munmap = _libc.munmap
_munmap.restype = ctypes.c_int
_munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

_MAP_FAILED = ctypes.c_void_p(-1).value
_MAP_NORESERVE = getattr(mmap, "MAP_NORESERVE", 0x4000)
_PROT_NONE: int = getattr(mmap, "PROT_NONE", 0)
_WASM32_MAX = 1 << 32


@dataclass(slots=True)
class _Memory:
    base: int
    reserved: int  # bytes mapped (without the guard), the most it can ever hold
    mapped: int  # bytes mapped including the guard region
    size: int
    limit: int | None
    tag: object


_memories: dict[int, _Memory] = {}
_ids = itertools.count(1)
_state = threading.local()  # .limit, .tag (set around instantiate/calls), .refused


@dataclass(slots=True)
class _Scope:
    limit: int | None
    tag: object
    saved: tuple[Any, Any] = field(default=(None, None))

    def __enter__(self) -> None:
        self.saved = (getattr(_state, "limit", None), getattr(_state, "tag", None))
        _state.limit, _state.tag = self.limit, self.tag

    def __exit__(self, *exc: object) -> None:
        _state.limit, _state.tag = self.saved


def limit_memories(limit: int | None, tag: object) -> _Scope:
    """``with limit_memories(n, tag):`` memories created or grown meanwhile obey ``n`` bytes and
    are counted under ``tag`` (keep it small: the memory table holds it while the memory lives)."""
    return _Scope(limit, tag)


def take_refusal() -> int | None:
    """The limit a growth was refused at on this thread since the last call, if any."""
    refused = getattr(_state, "refused", None)
    _state.refused = None
    return refused


def owned_bytes(tag: object) -> int:
    """Committed bytes of the live memories created under ``tag``."""
    return sum(m.size for m in list(_memories.values()) if m.tag is tag)


def _error(text: str) -> int:
    return ctypes.cast(ffi.wasmtime_error_new(text.encode()), ctypes.c_void_p).value or 0


def _page_round(n: int) -> int:
    return (n + mmap.PAGESIZE - 1) // mmap.PAGESIZE * mmap.PAGESIZE


@ffi.wasmtime_memory_get_callback_t
def _get(env: int | None, size: Any, maximum: Any) -> int:
    memory = _memories[env or 0]
    size[0] = memory.size
    maximum[0] = memory.reserved
    return memory.base


@ffi.wasmtime_memory_grow_callback_t
def _grow(env: int | None, new_size: int) -> int:
    memory = _memories[env or 0]
    if memory.limit is not None and new_size > memory.limit:
        _state.refused = memory.limit
        return _error(f"memory limit of {memory.limit} bytes exceeded")
    if new_size > memory.reserved:
        return _error("linear memory reservation exhausted")
    if new_size > memory.size:
        if _mprotect(memory.base, _page_round(new_size), mmap.PROT_READ | mmap.PROT_WRITE) != 0:
            return _error(f"mprotect failed (errno {ctypes.get_errno()})")
        memory.size = new_size
    return 0


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _free(env: int | None) -> None:
    try:
        memory = _memories.pop(env or 0, None)
        if memory is not None:
            _munmap(memory.base, memory.mapped)
    except (AttributeError, TypeError):  # interpreter shutdown: the process unmaps everything
        pass


@ffi.wasmtime_new_memory_callback_t
def _new(env: int | None, ty: Any, minimum: int, maximum: int, reserved: int, guard: int, out: Any) -> int:
    limit: int | None = getattr(_state, "limit", None)
    if limit is not None and minimum > limit:
        _state.refused = limit
        return _error(f"memory limit of {limit} bytes exceeded (a memory starts at {minimum} bytes)")
    # Never move: reserve what wasmtime asks for, else room for the largest size allowed.
    ceiling = min(maximum or _WASM32_MAX, _WASM32_MAX)
    if limit is not None:
        ceiling = min(ceiling, limit)
    size = _page_round(max(reserved, ceiling, minimum))
    mapped = size + _page_round(guard)
    base = _mmap(None, mapped, _PROT_NONE, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE, -1, 0)
    if base is None or base == _MAP_FAILED:
        return _error(f"cannot reserve {mapped} bytes of address space (errno {ctypes.get_errno()})")
    if minimum and _mprotect(base, _page_round(minimum), mmap.PROT_READ | mmap.PROT_WRITE) != 0:
        _munmap(base, mapped)
        return _error(f"mprotect failed (errno {ctypes.get_errno()})")
    key = next(_ids)
    _memories[key] = _Memory(base, size, mapped, minimum, limit, getattr(_state, "tag", None))
    slot: Any = out.contents
    slot.env = key
    slot.get_memory = _get
    slot.grow_memory = _grow
    slot.finalizer = _free
    return 0


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _creator_finalize(env: int | None) -> None:
    """The creator lives as long as the engine, which lives as long as the process."""


_creator: Any = ffi.wasmtime_memory_creator_t()
_creator.env = None
_creator.new_memory = _new
_creator.finalizer = _creator_finalize


def install(config: Any) -> None:
    """Make ``config``'s engine create every linear memory here."""
    ffi.wasmtime_config_host_memory_creator_set(config.ptr(), ctypes.byref(_creator))
