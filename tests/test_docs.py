"""The README stays true: every command has help and is documented; the two commands match CI."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from theaterctl.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out = []
    for name in group.list_commands(click.Context(group)):
        cmd = group.get_command(click.Context(group), name)
        assert cmd is not None
        path = (*prefix, name)
        out.append((path, cmd))
        if isinstance(cmd, click.Group):
            out.extend(_commands(cmd, path))
    return out


COMMANDS = _commands(cli)


def test_there_are_commands() -> None:
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"spawn", "list", "stop", "send", "request", "channel", "channels", "chain show", "chain verify",
            "chain export", "state", "inspect", "new", "daemon start", "daemon stop", "daemon status"} <= names


@pytest.mark.parametrize("path", [p for p, _ in COMMANDS], ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_command_has_help_and_is_in_the_readme(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    cmd = dict(COMMANDS)[path]
    assert (cmd.help or "").strip(), f"{' '.join(path)} has no help text"
    assert f"theaterctl {' '.join(path)}" in README, f"'theaterctl {' '.join(path)}' is not in the README"


def test_exit_codes_are_documented() -> None:
    from daemon.errors import ErrorCode

    for code in ErrorCode:
        assert re.search(rf"^\| {int(code)} \|", README, re.M), f"exit code {int(code)} missing from README"


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert ".venv/bin/python -m pytest -q" in README
    assert ".venv/bin/python -m pytest -q" in ci
    assert "pip install -e '.[test]'" in README and "install --quiet -e '.[test]'" in ci
    assert "bash scripts/demo.sh" in README and (ROOT / "scripts" / "demo.sh").exists()


def test_protocol_reference_names_every_operation() -> None:
    from daemon.wire import OPS

    protocol = (ROOT / "docs" / "protocol.md").read_text()
    for op in OPS:
        assert f"`{op}`" in protocol, f"operation {op} is not documented in docs/protocol.md"
