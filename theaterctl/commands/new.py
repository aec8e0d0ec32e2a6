from __future__ import annotations

from pathlib import Path

import click

from daemon.errors import BadInput
from daemon.manifest import check_name

from ..app import App, json_option
from ..output import emit_json, note

MANIFEST = '''name = "{name}"
component = "{module}.py"
init_state = {{}}

# restart = "on-failure"   # or "never" (default)
# max_restarts = 3
# restart_window = 60
# mailbox_size = 1024

[[handlers]]
type = "message-server"
config = {{}}
'''

MODULE = '''"""{name}: a theater actor.

Every handler takes the current state (JSON bytes, or None) and a params
tuple, and returns a tuple whose first item is the new state.  Raise an
exception to fail: its message is the error the caller sees.  Delete the
handlers you do not need; a missing handler answers with a clear error.
"""

from __future__ import annotations

import json

from actors import message_server


def init(state: bytes | None) -> tuple[bytes | None]:
    """Called once when the actor is spawned (not again after a daemon restart)."""
    return (state or b"{{}}",)


def handle_send(state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None]:
    """A one-way message: update the state."""
    (msg,) = params
    message = json.loads(msg)
    data = json.loads(state or b"{{}}")
    data["last"] = message
    return (json.dumps(data).encode(),)


def handle_request(state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None, tuple[bytes]]:
    """A request: return the new state and a 1-tuple with the reply (JSON bytes)."""
    (msg,) = params
    return state, (json.dumps({{"state": json.loads(state or b"{{}}")}}).encode(),)


def handle_channel_open(state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None, tuple[message_server.ChannelAccept]]:
    """Someone opens a channel: accept or reject.  message_server.current_channel() tells which one."""
    return state, (message_server.ChannelAccept(True, None),)


def handle_channel_message(state: bytes | None, params: tuple[str, bytes]) -> tuple[bytes | None]:
    """A message on an open channel; answer with message_server.send_on_channel(channel_id, ...)."""
    channel_id, msg = params
    return (state,)


def handle_channel_close(state: bytes | None, params: tuple[str]) -> tuple[bytes | None]:
    """The other end closed the channel."""
    (channel_id,) = params
    return (state,)
'''

TEST = '''"""Unit tests for the {name} actor: no daemon needed (see actors.testing)."""

from __future__ import annotations

import json
from pathlib import Path

from actors.testing import ActorHarness

HERE = Path(__file__).parent


def test_send_then_request() -> None:
    actor = ActorHarness.from_manifest(HERE / "manifest.toml")
    actor.send({{"hello": "world"}})
    reply = actor.request({{"type": "get"}})
    assert reply["state"]["last"] == {{"hello": "world"}}


def test_accepts_channels() -> None:
    actor = ActorHarness.from_manifest(HERE / "manifest.toml")
    assert actor.open_channel({{}}).accepted
'''


def module_name(name: str) -> str:
    """The Python module for actor NAME: '-' and '.' become '_' (my-actor -> my_actor)."""
    import keyword

    module = name.replace("-", "_").replace(".", "_")
    if not module.isidentifier() or keyword.iskeyword(module):
        raise BadInput(f"actor name {name!r} gives the module name {module!r}, which Python cannot import;"
                       " choose another name")
    return module


@click.command("new", short_help="Scaffold a new actor with a test.")
@click.argument("name")
@click.option("--dir", "directory", type=click.Path(path_type=Path, file_okay=False),
              help="Where to create it (default: ./NAME).")
@click.option("--wasm", is_flag=True, help="A WebAssembly component actor in C, with its build script.")
@json_option
@click.pass_obj
def command(app: App, name: str, directory: Path | None, wasm: bool) -> None:
    """Create a new actor NAME: a manifest, a module with every handler stubbed, and a test.

    The module is named after NAME with '-' and '.' as '_' (my-actor: my_actor.py).

    \b
    Examples:
      theaterctl new my-actor && theaterctl spawn my-actor/manifest.toml
      theaterctl new fast-thing --wasm && sh fast-thing/build.sh
    """
    check_name(name)
    module = module_name(name)
    target = directory or Path(name)
    if target.exists() and any(target.iterdir()):
        raise BadInput(f"{target} already exists and is not empty")
    target.mkdir(parents=True, exist_ok=True)
    if wasm:
        from .. import wasm_template

        files = {target / rel: data for rel, data in wasm_template.files(name, module).items()}
    else:
        files = {
            target / "manifest.toml": MANIFEST.format(name=name, module=module).encode(),
            target / f"{module}.py": MODULE.format(name=name).encode(),
            target / f"test_{module}.py": TEST.format(name=name).encode(),
        }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    if app.json:
        emit_json({"name": name, "directory": str(target), "files": [str(p) for p in files]})
    elif wasm:
        note(f"created {target}/: manifest.toml, {module}.c, build.sh, wasm-common/, wit/")
        note(f"build it with: sh {target / 'build.sh'}; then: theaterctl spawn {target / 'manifest.toml'}")
    else:
        note(f"created {target}/: manifest.toml, {module}.py, test_{module}.py")
        note(f"spawn it with: theaterctl spawn {target / 'manifest.toml'}")
