"""The CLI without a daemon: input parsing, the error table, and no heavy imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

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
    assert r.returncode == 2 and "Missing argument" in r.stderr


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
