"""The CLI without a daemon: input parsing, the error table, and no heavy imports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from daemon.errors import BadInput
from theaterctl.app import read_message
from theaterctl.cli import cli


def test_read_message_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert read_message('{"a": 1}') == b'{"a": 1}'
    f = tmp_path / "m.json"
    f.write_text('  {"b": 2}\n')
    assert read_message(f"@{f}") == b'{"b": 2}'
    with pytest.raises(BadInput, match="not valid JSON"):
        read_message("{nope")
    with pytest.raises(BadInput, match="does not exist"):
        read_message(f"@{tmp_path / 'missing.json'}")


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "theaterctl.cli", *args], capture_output=True, text=True,
                          timeout=60, env=env)


def test_no_daemon_is_exit_69_with_one_line(short_tmp: Path) -> None:
    r = _run("--socket", str(short_tmp / "none.sock"), "list")
    assert r.returncode == 69
    assert r.stderr.count("\n") == 1 and "not running" in r.stderr and "Traceback" not in r.stderr


def test_bad_json_is_exit_2_before_connecting(short_tmp: Path) -> None:
    r = _run("--socket", str(short_tmp / "none.sock"), "send", "counter", "{not json")
    assert r.returncode == 2 and "not valid JSON" in r.stderr


def test_usage_error_is_exit_2() -> None:
    r = _run("request")
    assert r.returncode == 2 and "missing argument 'ACTOR'" in r.stderr


@pytest.mark.parametrize(("args", "needle"), [
    (("request",), "theaterctl: error: missing argument 'ACTOR' (see 'theaterctl request --help')"),
    (("list", "--bogus"), "theaterctl: error: no such option '--bogus' (see 'theaterctl list --help')"),
    (("chian",), "theaterctl: error: no such command 'chian'; did you mean chain? (see 'theaterctl --help')"),
    (("chain", "shwo"), "no such command 'shwo'"),
    (("lsit",), "did you mean list?"),
    (("xyzzy",), "no such command 'xyzzy' (see 'theaterctl --help')"),
    (("chain", "show", "counter", "--type", "bogus"), "unknown event type 'bogus'; the types are: runtime/spawn"),
    (("completion", "tcsh"), "'tcsh' is not one of 'bash', 'zsh', 'fish'"),
])
def test_usage_errors_are_one_line_with_a_hint(args: tuple[str, ...], needle: str, short_tmp: Path) -> None:
    r = _run("--socket", str(short_tmp / "none.sock"), *args)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("theaterctl: error: "), r.stderr
    assert needle in r.stderr
    assert "Usage:" not in r.stderr and "Traceback" not in r.stderr


def test_global_options_after_the_command(short_tmp: Path) -> None:
    r = _run("list", "--socket", str(short_tmp / "late.sock"))
    assert r.returncode == 69 and f"no socket at {short_tmp / 'late.sock'}" in r.stderr
    # after the command wins over before it and over the environment
    env = dict(os.environ, THEATER_SOCKET=str(short_tmp / "env.sock"))
    r = _run("--socket", str(short_tmp / "early.sock"), "chain", "show", "x", "--socket", str(short_tmp / "late.sock"),
             "--timeout", "2", env=env)
    assert r.returncode == 69 and "late.sock" in r.stderr
    r = _run("request", "x", "{}", "--timeout", "0", "--socket", str(short_tmp / "late.sock"))
    assert r.returncode == 2 and "--timeout" in r.stderr


def test_event_type_short_form() -> None:
    from theaterctl.events import EVENT_TYPES, event_type

    assert event_type("handle-send") == "message-server/handle-send"
    assert event_type("runtime/spawn") == "runtime/spawn"
    assert all(event_type(t) == t for t in EVENT_TYPES)
    with pytest.raises(click.BadParameter, match="the types are"):
        event_type("message-server/nope")


def test_actor_id_prefix_detection() -> None:
    from theaterctl.app import looks_like_id_prefix

    assert looks_like_id_prefix("16990a91")
    assert looks_like_id_prefix("16990a91-986e")
    assert not looks_like_id_prefix("1699")  # fewer than 8
    assert not looks_like_id_prefix("counter")
    assert not looks_like_id_prefix("16990a91-986e-4702-aa99-ea868562b0c6")  # a whole id: no lookup


def test_json_flag_also_after_the_command(short_tmp: Path) -> None:
    r = _run("--socket", str(short_tmp / "none.sock"), "daemon", "status", "--json")
    assert r.returncode == 69
    assert json.loads(r.stdout)["running"] is False


def test_one_shot_commands_do_not_import_trio_or_rich(short_tmp: Path) -> None:
    code = (
        "import sys\n"
        "from theaterctl.cli import main\n"
        "try:\n"
        f"    main(['--socket', {str(short_tmp / 'none.sock')!r}, 'request', 'counter', '{{}}'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('trio', 'rich')))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_new_accepts_names_with_hyphens(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["new", "my-actor", "--dir", str(tmp_path / "my-actor")])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (tmp_path / "my-actor").iterdir())
    assert files == ["manifest.toml", "my_actor.py", "test_my_actor.py"]
    manifest = (tmp_path / "my-actor" / "manifest.toml").read_text()
    assert 'name = "my-actor"' in manifest and 'component = "my_actor.py"' in manifest
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "my-actor")],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    bad = CliRunner().invoke(cli, ["new", "class", "--dir", str(tmp_path / "x")])
    assert isinstance(bad.exception, BadInput) and "module name" in str(bad.exception)


def test_new_scaffolds_an_actor_whose_test_passes(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["new", "widget", "--dir", str(tmp_path / "widget")])
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (tmp_path / "widget").iterdir())
    assert files == ["manifest.toml", "test_widget.py", "widget.py"]
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path / "widget")],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 passed" in r.stdout
    again = CliRunner().invoke(cli, ["new", "widget", "--dir", str(tmp_path / "widget")])
    assert again.exit_code != 0
