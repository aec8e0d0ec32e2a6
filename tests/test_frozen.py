"""daemon.frozen.fast_init: the same frozen dataclass, built faster."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from dataclasses import dataclass, field

import pytest

from daemon.chain import Head, StoredEvent
from daemon.frozen import fast_init
from daemon.jobs import HandlerResult
from daemon.store import PutState


@fast_init
@dataclass(frozen=True, slots=True)
class Sample:
    a: int
    b: str = "b"
    c: list[int] = field(default_factory=list)


@fast_init
@dataclass(frozen=True, slots=True)
class Checked:
    n: int

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError("negative")


def test_behaves_as_the_dataclass() -> None:
    s = Sample(1)
    assert (s.a, s.b, s.c) == (1, "b", [])
    assert Sample(1, c=[2]) == Sample(a=1, b="b", c=[2])
    assert Sample(1).c is not Sample(1).c
    assert repr(Sample(2, "x")) == "Sample(a=2, b='x', c=[])"
    assert dataclasses.replace(s, b="z") == Sample(1, "z")
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.a = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        Sample()  # type: ignore[call-arg]
    with pytest.raises(ValueError):
        Checked(-1)
    assert list(inspect.signature(Sample).parameters) == ["a", "b", "c"]
    assert pickle.loads(pickle.dumps(Sample(3, "p", [1]))) == Sample(3, "p", [1])
    assert hash(Head(1, b"h")) == hash(Head(1, b"h"))
    assert StoredEvent("a", 1, b"h", "t", 2, b"r").record == b"r"
    assert PutState("a", None, None, 3).handled == 3
    assert HandlerResult("ok").accepted is False


def test_refuses_what_it_does_not_support() -> None:
    @dataclass(slots=True)
    class Mutable:
        a: int

    with pytest.raises(TypeError):
        fast_init(Mutable)

    @dataclass(frozen=True, slots=True)
    class Hidden:
        a: int
        b: int = field(default=0, init=False)

    with pytest.raises(TypeError):
        fast_init(Hidden)
