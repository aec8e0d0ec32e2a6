from __future__ import annotations

import re
from pathlib import Path

import click

from daemon.errors import BadInput

from ..app import App, json_option, parse_json_option
from ..output import emit_json, emit_text


_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


@click.command("spawn", short_help="Start an actor from a manifest.")
@click.argument("manifest", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--name", help="Name for the actor (default: the manifest's name).")
@click.option("--state", "state", metavar="JSON", help="Initial state, overriding the manifest's init_state.")
@click.option("-q", "--quiet", is_flag=True, help="Print only the new actor's id.")
@json_option
@click.pass_obj
def command(app: App, manifest: Path, name: str | None, state: str | None, quiet: bool) -> None:
    """Start an actor from MANIFEST (a TOML file); prints its name and id.

    \b
    Examples:
      theaterctl spawn actors/examples/counter/manifest.toml
      id=$(theaterctl spawn -q actors/examples/echo/manifest.toml --name echo2)
    """
    if name is not None and _UUID.fullmatch(name):
        raise BadInput(f"--name {name}: a name that looks like an actor id would be confused with one;"
                       " choose another")
    raw_state = parse_json_option(state, "--state") if state is not None else None
    result = app.client().call("spawn", manifest=str(manifest.resolve()), name=name, state=raw_state)
    if app.json:
        emit_json({"id": result["id"], "name": result["name"]})
    elif quiet:
        emit_text(result["id"])
    else:
        emit_text(f"{result['name']}\t{result['id']}")
