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
    (("chain", "shwo"), "no such command 'shwo'; did you mean show? (see 'theaterctl chain --help')"),
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
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('trio', 'rich', 'prompt_toolkit')))\n"
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


class _FakeClient:
    def __init__(self, actors: list[dict[str, str]]) -> None:
        self.actors = actors
        self.calls: list[tuple[str, dict[str, object]]] = []

    def call(self, op: str, **args: object) -> object:
        self.calls.append((op, args))
        return self.actors


def _app_with(actors: list[dict[str, str]]) -> tuple[object, _FakeClient]:
    from theaterctl.app import App

    app = App(socket="/nonexistent.sock", home="/nonexistent")
    fake = _FakeClient(actors)
    app._client = fake  # type: ignore[assignment]
    return app, fake


A1 = {"id": "16990a91-986e-4702-aa99-ea868562b0c6", "name": "counter", "status": "running"}
A2 = {"id": "16990a91-aaaa-4702-aa99-ea868562b0c6", "name": "echo", "status": "stopped"}
A3 = {"id": "deadbeef-0000-4702-aa99-ea868562b0c6", "name": "deadbeef0", "status": "running"}


def test_resolve_actor_by_unique_prefix() -> None:
    from theaterctl.app import resolve_actor

    app, fake = _app_with([A1, A2, A3])
    assert resolve_actor(app, "16990a91-986") == A1["id"]  # type: ignore[arg-type]
    assert resolve_actor(app, "16990a91aaaa") == A2["id"]  # type: ignore[arg-type]  # hyphens optional
    assert fake.calls == [("list", {"all": True}), ("list", {"all": True})]
    # an exact name wins over an id prefix
    assert resolve_actor(app, "deadbeef0") == "deadbeef0"  # type: ignore[arg-type]
    # not a prefix: no lookup at all
    fake.calls.clear()
    for text in ("counter", "1699", A1["id"]):
        assert resolve_actor(app, text) == text  # type: ignore[arg-type]
    assert fake.calls == []
    # no match: left for the daemon to call unknown (exit 3)
    assert resolve_actor(app, "abcdef012") == "abcdef012"  # type: ignore[arg-type]


def test_ambiguous_prefix_is_a_usage_error_listing_the_matches() -> None:
    from theaterctl.app import resolve_actor

    app, _ = _app_with([A1, A2, A3])
    with pytest.raises(click.UsageError) as info:
        resolve_actor(app, "16990a91")  # type: ignore[arg-type]
    message = info.value.format_message()
    assert info.value.exit_code == 2
    assert A1["id"] in message and A2["id"] in message and "counter" in message and "echo" in message
    assert A3["id"] not in message


def test_layout_shortens_then_drops_the_least_useful_columns() -> None:
    from theaterctl.output import Column, layout

    cols = [Column("NAME", flex=1, min_width=6), Column("ID"), Column("A", drop=1), Column("B", drop=2)]
    rows = [["a-rather-long-name", "16990a91", "aaaa", "bbbb"]]
    shown, widths, dropped = layout(cols, rows, 80)
    assert (shown, dropped) == ([0, 1, 2, 3], []) and widths[0] == 18
    shown, widths, dropped = layout(cols, rows, 30)  # the name shortens first
    assert (shown, dropped) == ([0, 1, 2, 3], []) and sum(widths) + 6 <= 30 and widths[0] < 18
    shown, widths, dropped = layout(cols, rows, 22)  # then B goes (drop=2 before drop=1)
    assert dropped == ["B"] and shown == [0, 1, 2]
    shown, widths, dropped = layout(cols, rows, 5)  # never the columns without drop
    assert shown == [0, 1] and dropped == ["B", "A"] and widths[0] == 6


def test_short_ids() -> None:
    from theaterctl.output import short_id

    assert short_id(A1["id"]) == "16990a91"
    assert short_id(A1["id"], short=False) == A1["id"]
    assert short_id("ch_" + "a" * 32) == "ch_aaaaaaaa"
    assert short_id("external") == "external"


def _all_commands() -> list[tuple[str, ...]]:
    from tests.test_docs import COMMANDS

    return [path for path, _ in COMMANDS]


@pytest.mark.parametrize("path", _all_commands(), ids=lambda p: " ".join(p))
def test_every_help_ends_with_examples(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    text = result.output
    assert "Examples:" in text, text
    examples = text.rstrip().split("Examples:")[-1].strip().splitlines()  # the last thing in the help
    assert 1 <= len(examples) <= 2 and all(line.strip().startswith(("theaterctl", ".venv/bin/theaterctl", "id=",
                                                                     "printf", "echo"))
                                           for line in examples), examples


def test_top_level_help_ends_with_examples() -> None:
    text = CliRunner().invoke(cli, ["--help"]).output
    assert text.rstrip().splitlines()[-1].strip() == "theaterctl request counter '{\"type\": \"get\"}'"


def test_top_level_help_lists_commands_with_distinct_short_help() -> None:
    from theaterctl.cli import COMMANDS

    helps = {}
    for name in COMMANDS:
        cmd = cli.get_command(click.Context(cli), name)
        assert cmd is not None
        helps[name] = cmd.get_short_help_str(limit=45)
    assert len(set(helps.values())) == len(helps), helps  # zsh merges equal descriptions into one row
    assert not any(h.endswith("...") for h in helps.values()), helps


def test_spawn_refuses_a_name_that_looks_like_an_id(short_tmp: Path) -> None:
    r = _run("--socket", str(short_tmp / "none.sock"), "spawn", "m.toml", "--name",
             "16990a91-986e-4702-aa99-ea868562b0c6")
    assert r.returncode == 2 and "looks like an actor id" in r.stderr and r.stderr.count("\n") == 1


def test_readme_names_every_option() -> None:
    from tests.test_docs import COMMANDS, README

    shared = {"--json", "--socket", "--home", "--timeout", "--help"}
    missing = []
    for path, cmd in COMMANDS:
        for param in cmd.params:
            if isinstance(param, click.Option):
                long = [o for o in param.opts + param.secondary_opts if o.startswith("--")]
                if long and not set(long) & shared and not any(o in README for o in long):
                    missing.append(f"theaterctl {' '.join(path)} {long[0]}")
    assert missing == [], f"options not in the README's command reference: {missing}"


def test_every_event_type_the_daemon_records_is_known_to_the_cli() -> None:
    # theaterctl keeps its own list (a one-shot command must not import the daemon):
    # it must hold every type the daemon's code can record
    import re

    from theaterctl.events import EVENT_TYPES

    root = Path(__file__).resolve().parent.parent / "daemon"
    found = set()
    for path in root.rglob("*.py"):
        found |= set(re.findall(r'"((?:runtime|message-server)/[a-z-]+)"', path.read_text()))
    assert found, "no event type found in the daemon's source"
    assert found <= set(EVENT_TYPES), sorted(found - set(EVENT_TYPES))
