from __future__ import annotations

import click

from ..app import App, json_option
from ..output import emit_json, emit_text, is_tty


@click.command("prune", short_help="Forget every stopped and failed actor.")
@click.option("--purge-chains", is_flag=True, help="Also delete their chains (asks first on a terminal).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before purging.")
@json_option
@click.pass_obj
def command(app: App, purge_chains: bool, yes: bool) -> None:
    """Forget every stopped and failed actor (their chains are kept unless --purge-chains).

    \b
    Examples:
      theaterctl prune
    """
    if purge_chains and not yes and is_tty():
        click.confirm("delete the chains of every stopped and failed actor for good?", abort=True)
    result = app.client().call("prune", purge=purge_chains)
    if app.json:
        emit_json(result)
        return
    names = [a["name"] for a in result["removed"]]
    emit_text(f"removed {len(names)} actor{'' if len(names) == 1 else 's'}" + (f": {', '.join(names)}" if names else ""))
