from __future__ import annotations

from pathlib import Path

import click

from ..app import App, parse_json_option, json_option
from ..output import emit_json, emit_text


@click.command("spawn")
@click.argument("manifest", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--name", help="Name for the actor (default: the manifest's name).")
@click.option("--state", "state", metavar="JSON", help="Initial state, overriding the manifest's init_state.")
@json_option
@click.pass_obj
def command(app: App, manifest: Path, name: str | None, state: str | None) -> None:
    """Start an actor from MANIFEST (a TOML file); prints its name and id."""
    raw_state = parse_json_option(state, "--state") if state is not None else None
    result = app.client().call("spawn", manifest=str(manifest.resolve()), name=name, state=raw_state)
    if app.json:
        emit_json({"id": result["id"], "name": result["name"]})
    else:
        emit_text(f"{result['name']}\t{result['id']}")
