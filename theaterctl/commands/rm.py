from __future__ import annotations

import click

from ..app import App, json_option, resolve_actor
from ..completion import complete_actor
from ..output import emit_json, emit_text, is_tty


@click.command("rm", short_help="Forget a stopped or failed actor.")
@click.argument("actor", shell_complete=complete_actor)
@click.option("--purge-chain", is_flag=True, help="Also delete its chain (asks first on a terminal).")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before purging.")
@json_option
@click.pass_obj
def command(app: App, actor: str, purge_chain: bool, yes: bool) -> None:
    """Forget ACTOR (stopped or failed): it is no longer listed and its name is free.
    Its chain is kept (chain show ID) unless --purge-chain.

    \b
    Examples:
      theaterctl rm counter
      theaterctl rm 16990a91 --purge-chain
    """
    ref = resolve_actor(app, actor)
    if purge_chain and not yes and is_tty():
        click.confirm(f"delete the chain of {actor} for good?", abort=True)
    result = app.client().call("remove", actor=ref, purge=purge_chain)
    if app.json:
        emit_json(result)
    else:
        emit_text(f"removed {result['name']}" + (" and its chain" if result.get("purged") else ""))
