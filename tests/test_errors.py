"""The error-code table: stable numbers, descriptions, and code -> exception mapping."""

from __future__ import annotations

import pytest

from daemon import errors
from daemon.errors import (
    DESCRIPTIONS,
    ActorFailed,
    BadInput,
    Busy,
    ErrorCode,
    InternalError,
    NotFound,
    ProtocolError,
    TheaterError,
    Timeout,
    Unavailable,
    error_from_code,
)

# The published table (sysexits(3) where one fits).  Written out by hand: the
# numbers are a public contract (wire error frames and CLI exit codes), so a
# renumbering must fail this test rather than silently follow the enum.
EXPECTED: dict[str, tuple[int, type[TheaterError]]] = {
    "ACTOR_FAILED": (1, ActorFailed),
    "BAD_INPUT": (2, BadInput),
    "NOT_FOUND": (3, NotFound),
    "TIMEOUT": (4, Timeout),
    "UNAVAILABLE": (69, Unavailable),  # EX_UNAVAILABLE
    "INTERNAL": (70, InternalError),  # EX_SOFTWARE
    "BUSY": (75, Busy),  # EX_TEMPFAIL
    "PROTOCOL": (76, ProtocolError),  # EX_PROTOCOL
}


def test_exit_code_numbers_are_exactly_the_published_set() -> None:
    assert sorted(int(c) for c in ErrorCode) == [1, 2, 3, 4, 69, 70, 75, 76]
    assert len(set(ErrorCode)) == len(list(ErrorCode)) == 8  # no aliases


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_code_has_its_published_number(name: str) -> None:
    number, _ = EXPECTED[name]
    assert ErrorCode[name] == number
    assert ErrorCode(number).name == name


def test_no_unexpected_codes() -> None:
    assert {c.name for c in ErrorCode} == set(EXPECTED)


@pytest.mark.parametrize("code", list(ErrorCode), ids=lambda c: c.name)
def test_every_code_has_a_description(code: ErrorCode) -> None:
    desc = DESCRIPTIONS[code]
    assert isinstance(desc, str)
    assert desc.strip() == desc
    assert len(desc) >= 5


def test_descriptions_cover_exactly_the_codes() -> None:
    assert set(DESCRIPTIONS) == set(ErrorCode)
    # Distinct codes deserve distinct descriptions.
    assert len(set(DESCRIPTIONS.values())) == len(DESCRIPTIONS)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_error_from_code_maps_to_the_right_subclass(name: str) -> None:
    number, cls = EXPECTED[name]
    message = f"something about {name.lower()} \u2603"
    err = error_from_code(number, message)
    assert type(err) is cls
    assert isinstance(err, TheaterError)
    assert err.code == number
    assert err.code is ErrorCode[name]
    assert str(err) == message
    assert err.message == message


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_error_from_code_accepts_the_enum_member_too(name: str) -> None:
    number, cls = EXPECTED[name]
    err = error_from_code(ErrorCode(number), "m")
    assert type(err) is cls
    assert err.code == number


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_subclass_class_attribute_code(name: str) -> None:
    number, cls = EXPECTED[name]
    assert cls.code == number
    assert issubclass(cls, TheaterError)
    assert cls("x").code == number


@pytest.mark.parametrize("unknown", [0, 5, 68, 71, 77, 255, -1])
def test_unknown_code_becomes_a_generic_internal_error(unknown: int) -> None:
    err = error_from_code(unknown, "weird")
    assert type(err) is TheaterError
    assert err.code == ErrorCode.INTERNAL == 70
    assert str(err) == "weird"
    assert err.message == "weird"


def test_empty_message_is_preserved() -> None:
    err = error_from_code(3, "")
    assert type(err) is NotFound
    assert err.message == ""
    assert str(err) == ""


def test_explicit_code_overrides_class_default() -> None:
    err = BadInput("nope", ErrorCode.BUSY)
    assert err.code == 75
    # ... without changing the class default for everybody else.
    assert BadInput.code == 2
    assert BadInput("x").code == 2


def test_base_error_defaults_to_internal() -> None:
    assert TheaterError("x").code == 70
    assert TheaterError("x").message == "x"


def test_message_property_without_args() -> None:
    err = NotFound("x")
    err.args = ()
    assert err.message == ""


def test_errors_module_is_pure() -> None:
    # "This module is pure: no I/O, no trio."
    assert not hasattr(errors, "trio")
    assert not hasattr(errors, "socket")
