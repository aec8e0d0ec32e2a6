"""Values of the message-server WIT types, converted to and from wasmtime's C API.

Theory of operation.  wasmtime's C API passes component values as trees of
``wasmtime_component_val_t`` (a one-byte kind plus a union); a ``list<u8>``
is a list of such values, one per byte.  wasmtime-py's generic conversion
walks that list in Python, one ctypes object per byte (about 1.5 us per
byte each way).  This module converts only the shapes our WIT contract uses
(``option<json>``, ``tuple<json>``, ``string``, ``result<..., string>``,
``channel-accept``, ``channel-info``) and moves a ``list<u8>`` in bulk: the element array is
one block of memory with the byte at a fixed offset in every element, so a
strided slice of a ``memoryview`` reads or writes all of them at C speed.

Ownership, as wasmtime's C API defines it: a tree built here for a call's
parameters is ours and is freed with ``wasmtime_component_val_delete`` after
the call; a result tree wasmtime fills in is ours to read and delete; a
tree we build into a host function's result slot becomes wasmtime's.
Nothing here imports from the rest of the daemon.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

from wasmtime import _ffi as ffi

Val = Any  # ffi.wasmtime_component_val_t (the bindings are untyped)

_VAL_SIZE = ctypes.sizeof(ffi.wasmtime_component_val_t)
_PAYLOAD = ffi.wasmtime_component_val_t.of.offset  # where the union starts in a value
_K_BOOL = ffi.WASMTIME_COMPONENT_BOOL.value
_K_U8 = ffi.WASMTIME_COMPONENT_U8.value
_K_STRING = ffi.WASMTIME_COMPONENT_STRING.value
_K_LIST = ffi.WASMTIME_COMPONENT_LIST.value
_K_RECORD = ffi.WASMTIME_COMPONENT_RECORD.value
_K_TUPLE = ffi.WASMTIME_COMPONENT_TUPLE.value
_K_OPTION = ffi.WASMTIME_COMPONENT_OPTION.value
_K_RESULT = ffi.WASMTIME_COMPONENT_RESULT.value
_U8_KIND = bytes((_K_U8,))


class ShapeError(Exception):
    """A value does not have the shape the WIT contract gives it."""


# ---- lowering: Python -> C values -------------------------------------------


def lower_bytes(val: Val, data: bytes) -> None:
    """``list<u8>``: staged in a bytearray with two strided writes, then one copy."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ShapeError(f"expected bytes, got {type(data).__name__}")
    n = len(data)
    raw = ffi.wasmtime_component_vallist_t()
    ffi.wasmtime_component_vallist_new_uninit(ctypes.byref(raw), n)
    if n:
        # Strided slice assignment is several times faster on a bytearray than
        # on a memoryview of foreign memory, and memmove is a memcpy.
        size = n * _VAL_SIZE
        stage = bytearray(size)
        stage[0::_VAL_SIZE] = _U8_KIND * n
        stage[_PAYLOAD::_VAL_SIZE] = data
        ctypes.memmove(raw.data, (ctypes.c_char * size).from_buffer(stage), size)
    val.kind = _K_LIST
    val.of.list = raw


def lower_string(val: Val, text: str) -> None:
    if not isinstance(text, str):
        raise ShapeError(f"expected str, got {type(text).__name__}")
    val.kind = _K_STRING
    val.of.string = ffi.str_to_capi(text)


def lower_bool(val: Val, flag: bool) -> None:
    val.kind = _K_BOOL
    val.of.boolean = bool(flag)


def _boxed(fill: Any, value: Any) -> Any:
    """A heap value (``wasmtime_component_val_new`` moves ``tmp`` into a box)."""
    tmp = ffi.wasmtime_component_val_t()
    fill(tmp, value)
    return ffi.wasmtime_component_val_new(ctypes.byref(tmp))


def lower_option_bytes(val: Val, data: bytes | None) -> None:
    lower_option(val, lower_bytes, data)


def lower_tuple(val: Val, items: Sequence[tuple[Any, Any]]) -> None:
    """``tuple<...>`` from (lower function, value) pairs."""
    raw = ffi.wasmtime_component_valtuple_t()
    ffi.wasmtime_component_valtuple_new_uninit(ctypes.byref(raw), len(items))
    for i, (fill, value) in enumerate(items):
        raw.data[i].kind = _K_BOOL  # valid until filled, so a failure can be freed
    val.kind = _K_TUPLE
    val.of.tuple = raw
    for i, (fill, value) in enumerate(items):
        fill(raw.data[i], value)


def lower_record(val: Val, fields: Sequence[tuple[str, Any, Any]]) -> None:
    """``record { ... }`` from (field name, lower function, value) triples, in the type's order."""
    raw = ffi.wasmtime_component_valrecord_t()
    ffi.wasmtime_component_valrecord_new_uninit(ctypes.byref(raw), len(fields))
    for i, (name, _, _) in enumerate(fields):
        raw.data[i].name = ffi.str_to_capi(name)
        raw.data[i].val.kind = _K_BOOL  # valid until filled, so a failure can be freed
    val.kind = _K_RECORD
    val.of.record = raw
    for i, (_, fill, value) in enumerate(fields):
        fill(raw.data[i].val, value)


def lower_option(val: Val, fill: Any, value: Any) -> None:
    """``option<T>``: none when ``value`` is None."""
    val.kind = _K_OPTION
    val.of.option = None if value is None else _boxed(fill, value)


def lower_result(val: Val, ok: bool, fill: Any, value: Any) -> None:
    """``result<T, E>``; ``fill`` None for a unit case."""
    val.kind = _K_RESULT
    val.of.result.is_ok = ok
    val.of.result.val = None if fill is None else _boxed(fill, value)


def delete(val: Val) -> None:
    ffi.wasmtime_component_val_delete(ctypes.byref(val))


# ---- lifting: C values -> Python --------------------------------------------


def _expect(val: Val, kind: int, what: str) -> None:
    if val.kind != kind:
        raise ShapeError(f"expected {what}, got value kind {val.kind}")


def lift_bytes(val: Val) -> bytes:
    _expect(val, _K_LIST, "list<u8>")
    n = val.of.list.size
    if not n:
        return b""
    block = ctypes.string_at(val.of.list.data, n * _VAL_SIZE)
    return block[_PAYLOAD::_VAL_SIZE]


def lift_string(val: Val) -> str:
    _expect(val, _K_STRING, "string")
    s = val.of.string
    return ctypes.string_at(s.data, s.size).decode("utf-8") if s.size else ""


def lift_bool(val: Val) -> bool:
    _expect(val, _K_BOOL, "bool")
    return bool(val.of.boolean)


def lift_option_bytes(val: Val) -> bytes | None:
    _expect(val, _K_OPTION, "option<list<u8>>")
    return lift_bytes(val.of.option.contents) if val.of.option else None


def tuple_items(val: Val, n: int) -> list[Val]:
    _expect(val, _K_TUPLE, "tuple")
    if val.of.tuple.size != n:
        raise ShapeError(f"expected a tuple of {n}, got {val.of.tuple.size}")
    return [val.of.tuple.data[i] for i in range(n)]


def record_fields(val: Val) -> dict[str, Val]:
    _expect(val, _K_RECORD, "record")
    rec = val.of.record
    return {ctypes.string_at(rec.data[i].name.data, rec.data[i].name.size).decode(): rec.data[i].val
            for i in range(rec.size)}


def lift_result(val: Val) -> tuple[bool, Val | None]:
    """``result<T, E>`` as (is_ok, payload value or None)."""
    _expect(val, _K_RESULT, "result")
    res = val.of.result
    return bool(res.is_ok), (res.val.contents if res.val else None)


# ---- types, as WIT text ----------------------------------------------------------


def describe_type(ty: Any) -> str:
    """A component value type in WIT syntax (enough to compare with the contract)."""
    from wasmtime import component as wc

    simple = {wc.Bool: "bool", wc.U8: "u8", wc.U16: "u16", wc.U32: "u32", wc.U64: "u64", wc.S8: "s8",
              wc.S16: "s16", wc.S32: "s32", wc.S64: "s64", wc.F32: "f32", wc.F64: "f64", wc.Char: "char",
              wc.String: "string"}
    for cls, name in simple.items():
        if isinstance(ty, cls):
            return name
    if isinstance(ty, wc.ListType):
        return f"list<{describe_type(ty.element)}>"
    if isinstance(ty, wc.OptionType):
        return f"option<{describe_type(ty.payload)}>"
    if isinstance(ty, wc.ResultType):
        ok = describe_type(ty.ok) if ty.ok is not None else "_"
        err = describe_type(ty.err) if ty.err is not None else "_"
        return f"result<{ok}, {err}>"
    if isinstance(ty, wc.TupleType):
        return f"tuple<{', '.join(describe_type(t) for t in ty.elements)}>"
    if isinstance(ty, wc.RecordType):
        return "record { " + ", ".join(f"{n}: {describe_type(t)}" for n, t in ty.fields) + " }"
    return type(ty).__name__


def describe_func(fty: Any) -> str:
    params = ", ".join(f"{name}: {describe_type(t)}" for name, t in fty.params)
    result = fty.result
    return f"func({params})" + (f" -> {describe_type(result)}" if result is not None else "")
