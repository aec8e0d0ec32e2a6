"""A faster ``__init__`` for the frozen dataclasses built once or more per message.

A frozen dataclass's generated ``__init__`` assigns every field through
``object.__setattr__`` (its own ``__setattr__`` refuses), about 70 ns a field
more than a plain assignment: a six-field ``StoredEvent`` took 1.06 us to
build.  :func:`fast_init` replaces the generated ``__init__`` of a frozen,
slotted dataclass with one that sets each field through its slot's descriptor
(what ``object.__setattr__`` ends up calling, without the attribute lookup on
the way), with the same parameters, defaults and ``__post_init__`` call.
Everything else stays the dataclass's own: equality, hashing, ``repr``,
:func:`dataclasses.replace` (which calls this ``__init__``), and assignment
still raises :class:`dataclasses.FrozenInstanceError`.

Only plain fields are supported (no ``init=False``, ``InitVar`` or keyword-only
fields); anything else is a :class:`TypeError` at import, so a class that
outgrows this helper fails loudly rather than building wrong instances.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")

_NO_ARG: Any = object()  # default of a field with a default_factory: build one


def fast_init(cls: type[T]) -> type[T]:
    """Class decorator, applied above ``@dataclass(frozen=True, slots=True)``."""
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        raise TypeError(f"{cls.__name__}: fast_init is for frozen, slotted dataclasses")
    namespace: dict[str, Any] = {"_NO_ARG": _NO_ARG}
    args: list[str] = []
    lines: list[str] = []
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init or f.kw_only or f._field_type is not dataclasses._FIELD:  # type: ignore[attr-defined]
            raise TypeError(f"{cls.__name__}.{f.name}: fast_init supports plain fields only")
        setter = f"_set_{f.name}"
        namespace[setter] = cls.__dict__[f.name].__set__
        value = f.name
        if f.default is not dataclasses.MISSING:
            namespace[f"_default_{f.name}"] = f.default
            args.append(f"{f.name}=_default_{f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            namespace[f"_factory_{f.name}"] = f.default_factory
            args.append(f"{f.name}=_NO_ARG")
            value = f"_factory_{f.name}() if {f.name} is _NO_ARG else {f.name}"
        else:
            if any("=" in a for a in args):
                raise TypeError(f"{cls.__name__}.{f.name}: a field without a default after one with it")
            args.append(f.name)
        lines.append(f"    {setter}(self, {value})")
    if hasattr(cls, "__post_init__"):
        lines.append("    self.__post_init__()")
    source = f"def __init__(self, {', '.join(args)}):\n" + ("\n".join(lines) or "    pass") + "\n"
    exec(source, namespace)  # noqa: S102 - our own field names, checked by dataclasses
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    generated = cls.__dict__["__init__"]
    init.__doc__ = generated.__doc__
    init.__annotations__ = dict(generated.__annotations__)
    setattr(cls, "__init__", init)
    return cls
