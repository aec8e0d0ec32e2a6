"""scripts/demo.sh as a reader sees it, and the systemd units theaterctl writes."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, bin_path

pytestmark = pytest.mark.e2e


def test_demo_prints_copyable_commands_in_order() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("THEATER_")}
    r = subprocess.run(["bash", str(ROOT / "scripts" / "demo.sh")], capture_output=True, text=True, timeout=300,
                       env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stderr == ""  # everything in one stream, so that it stays in order when piped
    lines = r.stdout.splitlines()
    commands = [line[2:] for line in lines if line.startswith("$ ")]
    assert "theaterctl send counter '{\"type\": \"increment\", \"amount\": 2}'" in commands
    for command in commands:  # each can be pasted into a shell: the quotes survive
        words = shlex.split(command.split(" | ")[-1])
        assert words[0] == "theaterctl", command
    send = shlex.split(next(c for c in commands if c.startswith("theaterctl send")))
    assert json.loads(send[3]) == {"type": "increment", "amount": 2}
    # each command's output follows its own line
    start = lines.index("$ theaterctl daemon start")
    assert lines[start + 1].startswith("theaterd started")
    request = lines.index("$ theaterctl request counter '{\"type\": \"get\"}'")
    assert lines[request + 1] == '{"count": 2}'
    assert lines[-2] == "$ theaterctl daemon stop" and lines[-1].startswith("theaterd stopped")


def _unit(text: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None, comment_prefixes=("#", ";"))
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(text)
    return parser


def test_contrib_units_are_the_rendered_defaults() -> None:
    from theaterctl.systemd import render

    for name, text in render().items():
        assert (ROOT / "contrib" / "systemd" / name).read_text() == text, f"contrib/systemd/{name} is stale"


def test_service_unit_is_hardened_without_breaking_the_daemon() -> None:
    svc = _unit((ROOT / "contrib" / "systemd" / "theaterd.service").read_text())["Service"]
    assert svc["NoNewPrivileges"] == "yes" and svc["ProtectSystem"] == "strict" and svc["PrivateTmp"] == "yes"
    # the default data directory (~/.local/state/theater) stays writable under ProtectSystem=strict
    assert svc["StateDirectory"] == "theater"
    # the socket lives in %t (not /tmp, which PrivateTmp hides) and is handed over by the socket unit
    assert "%t/theater/theaterd.sock" in svc["ExecStart"]


def test_install_unit_writes_units_for_this_theaterd(short_tmp: Path) -> None:
    env = dict(os.environ, NO_COLOR="1")
    r = subprocess.run([bin_path("theaterctl"), "--json", "daemon", "install-unit", "--dir", str(short_tmp)],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    theaterd = result["theaterd"]
    assert Path(theaterd).is_absolute() and os.access(theaterd, os.X_OK)
    svc = _unit((short_tmp / "theaterd.service").read_text())
    exec_start = svc["Service"]["ExecStart"].split()
    assert exec_start == [theaterd, "--socket", "%t/theater/theaterd.sock"]
    assert (short_tmp / "theaterd.socket").read_text() == (ROOT / "contrib" / "systemd" / "theaterd.socket").read_text()
    # the same again is fine; a unit edited by hand is not overwritten without --force
    again = subprocess.run([bin_path("theaterctl"), "daemon", "install-unit", "--dir", str(short_tmp)],
                           capture_output=True, text=True, timeout=60, env=env)
    assert again.returncode == 0 and "systemctl --user enable --now theaterd.socket" in again.stderr
    (short_tmp / "theaterd.service").write_text("# mine\n")
    r = subprocess.run([bin_path("theaterctl"), "daemon", "install-unit", "--dir", str(short_tmp)],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 2 and "--force" in r.stderr
    assert (short_tmp / "theaterd.service").read_text() == "# mine\n"
    printed = subprocess.run([bin_path("theaterctl"), "daemon", "install-unit", "--print"], capture_output=True,
                             text=True, timeout=60, env=env)
    assert printed.returncode == 0 and f"ExecStart={theaterd} --socket" in printed.stdout
