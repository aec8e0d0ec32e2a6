"""Shell completion: the committed scripts, click's completion protocol, and dynamic actor/channel names."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import click
import pytest

from tests.conftest import EXAMPLES, ROOT, DaemonProcess, bin_path
from theaterctl.cli import cli
from theaterctl.completion import complete_actor, complete_channel

COUNTER = str(EXAMPLES / "counter" / "manifest.toml")
ECHO = str(EXAMPLES / "echo" / "manifest.toml")
COMPLETIONS = ROOT / "completions"
FILES = {"bash": "theaterctl.bash", "zsh": "_theaterctl", "fish": "theaterctl.fish"}


def _gen_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_completions", ROOT / "scripts" / "gen_completions.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMP_", "_THEATERCTL"))}
    env.update(NO_COLOR="1")
    env.update(extra)
    return env


def complete(words: str, env: dict[str, str] | None = None, shell: str = "bash",
             timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Ask the real theaterctl for completions, as the bash/zsh scripts do: COMP_WORDS + COMP_CWORD."""
    parts = words.split(" ")
    env = dict(env if env is not None else _env())
    env.update(_THEATERCTL_COMPLETE=f"{shell}_complete", COMP_WORDS=words, COMP_CWORD=str(len(parts) - 1))
    return subprocess.run([bin_path("theaterctl")], env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def values(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The plain values of a bash_complete answer ("type,value" per line)."""
    assert result.returncode == 0, result.stderr
    out = []
    for line in result.stdout.splitlines():
        if line:
            kind, _, value = line.partition(",")
            assert kind == "plain", line
            out.append(value)
    return out


# -- the committed scripts ------------------------------------------------------


def test_committed_scripts_are_up_to_date(short_tmp: Path) -> None:
    """Regenerate into a temp dir: the committed files must be byte-identical."""
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_completions.py"), "-o", str(short_tmp)],
                       capture_output=True, text=True, timeout=60, env=_env())
    assert r.returncode == 0, r.stderr
    for name in FILES.values():
        fresh = (short_tmp / name).read_bytes()
        committed = (COMPLETIONS / name).read_bytes()
        assert fresh, name
        assert committed == fresh, f"completions/{name} is stale: run python scripts/gen_completions.py"


def test_check_mode_detects_a_stale_file(short_tmp: Path) -> None:
    gen = _gen_module()
    gen.write(short_tmp)
    assert gen.stale(short_tmp) == []
    assert gen.main(["--check", "-o", str(short_tmp)]) == 0
    path = short_tmp / FILES["zsh"]
    path.write_bytes(path.read_bytes().replace(b"theaterctl", b"theaterct1", 1))
    (short_tmp / FILES["fish"]).unlink()
    assert gen.stale(short_tmp) == [FILES["zsh"], FILES["fish"]]
    assert gen.main(["--check", "-o", str(short_tmp)]) == 1


@pytest.mark.parametrize("shell", sorted(FILES))
def test_scripts_are_what_click_sources(shell: str) -> None:
    """Each file is exactly `_THEATERCTL_COMPLETE=<shell>_source theaterctl`, and wires itself up."""
    env = _env(_THEATERCTL_COMPLETE=f"{shell}_source")
    r = subprocess.run([bin_path("theaterctl")], env=env, capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    text = (COMPLETIONS / FILES[shell]).read_bytes()
    assert text == r.stdout
    assert b"_THEATERCTL_COMPLETE=" + shell.encode() + b"_complete" in text
    assert b"_theaterctl_completion" in text
    if shell == "zsh":
        assert text.startswith(b"#compdef theaterctl")


@pytest.mark.parametrize("shell", sorted(FILES))
def test_completion_command_prints_the_committed_script(shell: str) -> None:
    r = subprocess.run([bin_path("theaterctl"), "completion", shell], env=_env(), capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout == (COMPLETIONS / FILES[shell]).read_bytes()


def test_fish_script_keeps_descriptions_with_commas() -> None:
    text = (COMPLETIONS / FILES["fish"]).read_text()
    assert 'string split -m 1 "," -- $completion' in text
    assert 'string split "," $completion' not in text


def test_descriptions_keep_their_commas_and_rows_stay_apart() -> None:
    """fish gets 'plain,VALUE<TAB>HELP'; zsh gets TYPE, VALUE, HELP lines, and merges equal HELPs into one row."""
    r = subprocess.run([bin_path("theaterctl")], capture_output=True, text=True, timeout=30,
                       env=_env(_THEATERCTL_COMPLETE="fish_complete", COMP_WORDS="theaterctl ", COMP_CWORD=""))
    assert r.returncode == 0, r.stderr
    rows = dict(line.split("\t", 1) for line in r.stdout.splitlines())
    assert rows["plain,top"] == "Live view of actors: messages/s, mailboxes."  # a comma, kept whole
    r = complete("theaterctl ", shell="zsh")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    helps = {lines[i + 1]: lines[i + 2] for i in range(0, len(lines), 3)}
    assert helps["request"] != helps["send"]
    assert len(set(helps.values())) == len(helps), helps


def test_completes_event_types_after_type() -> None:
    types = values(complete("theaterctl chain show counter --type "))
    from theaterctl.events import EVENT_TYPES

    assert "runtime/spawn" in types and "message-server/handle-send" in types and types == list(EVENT_TYPES)
    assert values(complete("theaterctl chain show counter --type handle-s")) == ["message-server/handle-send"]
    assert values(complete("theaterctl chain show counter --type runtime/s")) == ["runtime/spawn", "runtime/stop"]


def test_bash_script_registers_the_completion_function() -> None:
    script = COMPLETIONS / FILES["bash"]
    r = subprocess.run(["bash", "--norc", "--noprofile", "-c", f"source {script} && complete -p theaterctl"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert "-F _theaterctl_completion" in r.stdout and r.stdout.strip().endswith("theaterctl")


# -- click's completion protocol: subcommands and options --------------------------


def test_completes_subcommands() -> None:
    everything = values(complete("theaterctl "))
    for name in ("chain", "channel", "channels", "completion", "daemon", "inspect", "list", "new", "request", "send",
                 "spawn", "state", "stop", "top"):
        assert name in everything
    assert values(complete("theaterctl ch")) == ["chain", "channel", "channels"]
    assert values(complete("theaterctl st")) == ["state", "stop"]
    assert values(complete("theaterctl chain ")) == ["export", "show", "verify"]
    assert values(complete("theaterctl chain v")) == ["verify"]
    assert values(complete("theaterctl daemon re")) == ["restart"]
    assert values(complete("theaterctl completion ")) == ["bash", "zsh", "fish"]
    assert values(complete("theaterctl zzz")) == []


def test_completes_options() -> None:
    top = values(complete("theaterctl --"))
    assert {"--socket", "--home", "--json", "--timeout", "--version", "--help"} <= set(top)
    assert values(complete("theaterctl --so")) == ["--socket"]
    assert set(values(complete("theaterctl inspect --"))) >= {"--events", "--json", "--help"}
    assert "--follow" in values(complete("theaterctl chain show counter --f"))
    assert values(complete("theaterctl chain export counter --ou")) == ["--output"]
    assert values(complete("theaterctl spawn m.toml --na")) == ["--name"]
    assert set(values(complete("theaterctl list --"))) >= {"--wide", "--output", "--no-headers", "--quiet", "--socket",
                                                          "--timeout", "--home", "--json"}


def test_zsh_and_fish_protocols() -> None:
    r = complete("theaterctl chain sh", shell="zsh")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[:2] == ["plain", "show"]
    r = subprocess.run(
        [bin_path("theaterctl")], capture_output=True, text=True, timeout=30,
        env=_env(_THEATERCTL_COMPLETE="fish_complete", COMP_WORDS="theaterctl chain ve", COMP_CWORD="ve"),
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split("\t")[0] == "plain,verify"


# -- dynamic completion: actor names and channel ids -------------------------------


def _no_daemon_env(tmp: Path) -> dict[str, str]:
    return _env(THEATER_SOCKET=str(tmp / "s.sock"), THEATER_HOME=str(tmp / "home"), XDG_RUNTIME_DIR=str(tmp))


@pytest.mark.e2e
def test_completes_actor_names_from_the_daemon(theaterd: DaemonProcess) -> None:
    assert theaterd.ctl("spawn", COUNTER).returncode == 0
    assert theaterd.ctl("spawn", ECHO).returncode == 0
    env = _env(THEATER_SOCKET=str(theaterd.socket))
    assert values(complete("theaterctl request cou", env)) == ["counter"]
    assert sorted(values(complete("theaterctl send ", env))) == ["counter", "echo"]
    assert values(complete("theaterctl request zz", env)) == []
    # "ech", not "e": ids are offered too, and a random UUID may start with "e"
    for words in ("theaterctl stop ech", "theaterctl state ech", "theaterctl inspect ech", "theaterctl channel ech",
                  "theaterctl chain show ech", "theaterctl chain verify ech", "theaterctl chain export ech"):
        assert values(complete(words, env)) == ["echo"], words
    # the ACTOR argument is done: the next word is not an actor
    assert values(complete("theaterctl request counter cou", env)) == []
    # spawn takes a manifest, not an actor: the shell completes file names
    r = complete("theaterctl spawn cou", env)
    assert (r.returncode, r.stdout.splitlines()) == (0, ["file,cou"])


@pytest.mark.e2e
def test_actor_completion_uses_the_socket_option(theaterd: DaemonProcess, short_tmp: Path) -> None:
    assert theaterd.ctl("spawn", COUNTER).returncode == 0
    env = _no_daemon_env(short_tmp / "elsewhere")
    assert values(complete("theaterctl request cou", env)) == []
    assert values(complete(f"theaterctl --socket {theaterd.socket} request cou", env)) == ["counter"]
    # after the command too
    assert values(complete(f"theaterctl request --socket {theaterd.socket} cou", env)) == ["counter"]


@pytest.mark.e2e
def test_actor_ids_and_stopped_actors(theaterd: DaemonProcess) -> None:
    import json

    spawned = json.loads(theaterd.ctl("--json", "spawn", COUNTER).stdout)
    env = _env(THEATER_SOCKET=str(theaterd.socket))
    assert values(complete(f"theaterctl request {spawned['id'][:6]}", env)) == [spawned["id"]]
    assert theaterd.ctl("stop", "counter").returncode == 0
    # stopped: no longer a target for messages, but its chain and state can still be read
    assert values(complete("theaterctl request cou", env)) == []
    assert values(complete("theaterctl stop cou", env)) == []
    assert values(complete("theaterctl chain show cou", env)) == ["counter"]
    assert values(complete("theaterctl state cou", env)) == ["counter"]


def test_no_daemon_completes_nothing_quietly_and_fast(short_tmp: Path) -> None:
    env = _no_daemon_env(short_tmp)
    for words in ("theaterctl request cou", "theaterctl request ", "theaterctl chain show "):
        start = time.monotonic()
        r = complete(words, env)
        elapsed = time.monotonic() - start
        assert r.returncode == 0
        assert r.stdout.strip() == "" and r.stderr == ""
        assert elapsed < 2.0, elapsed
    # it never starts a daemon
    assert not (short_tmp / "s.sock").exists()
    assert not (short_tmp / "home").exists()
    assert not (short_tmp / "theater").exists()


def test_stale_socket_completes_nothing(short_tmp: Path) -> None:
    path = short_tmp / "s.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))  # bound, never listening: connect is refused
    s.close()
    r = complete("theaterctl request cou", _no_daemon_env(short_tmp))
    assert (r.returncode, r.stdout.strip(), r.stderr) == (0, "", "")


def test_unresponsive_daemon_gives_up_quickly(short_tmp: Path) -> None:
    """A socket that accepts but never answers must not hang the shell."""
    path = short_tmp / "s.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))
        s.listen(8)
        start = time.monotonic()
        r = complete("theaterctl request cou", _no_daemon_env(short_tmp))
        elapsed = time.monotonic() - start
    assert (r.returncode, r.stdout.strip(), r.stderr) == (0, "", "")
    assert elapsed < 2.0, elapsed


def _ctx(sock: Path, *path: str) -> click.Context:
    """A context like the one click builds while completing `theaterctl --socket SOCK <path...>`."""
    ctx = click.Context(cli, info_name="theaterctl")
    ctx.params["socket"] = sock
    group: click.Command = cli
    for name in path:
        assert isinstance(group, click.Group)
        found = group.get_command(ctx, name)
        assert found is not None
        group = found
        ctx = click.Context(group, info_name=name, parent=ctx)
    return ctx


def test_functions_return_nothing_without_a_daemon(short_tmp: Path) -> None:
    ctx = _ctx(short_tmp / "nope.sock", "request")
    assert complete_actor(ctx, None, "") == []
    assert complete_channel(ctx, None, "") == []


@pytest.mark.e2e
def test_complete_channel_lists_open_channels(theaterd: DaemonProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    from theaterctl import completion
    from theaterctl.client import Client

    # completion gives up after 1 s; a loaded test machine can take that long to answer
    monkeypatch.setattr(completion, "TIMEOUT", 10.0)

    assert theaterd.ctl("spawn", ECHO).returncode == 0
    ctx = _ctx(theaterd.socket, "channels")
    assert complete_channel(ctx, None, "") == []
    with Client.connect(theaterd.socket, timeout=10) as client:
        opened = client.call("channel-open", timeout=10, actor="echo", msg=b"{}")
        channel_id = opened["channel"]
        items = complete_channel(ctx, None, "")
        assert [i.value for i in items] == [channel_id]
        assert items[0].help is not None and "echo" in items[0].help
        assert [i.value for i in complete_channel(ctx, None, channel_id[:3])] == [channel_id]
        other = "x" if not channel_id.startswith("x") else "y"
        assert complete_channel(ctx, None, other) == []
    deadline = time.monotonic() + 10
    while complete_channel(ctx, None, "") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert complete_channel(ctx, None, "") == []
    items = complete_actor(_ctx(theaterd.socket, "request"), None, "ec")
    assert [i.value for i in items] == ["echo"]
