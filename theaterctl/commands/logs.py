from __future__ import annotations

import time

import click

from ..app import App, json_option
from ..completion import complete_actor
from ..output import emit_json, emit_text


@click.command("logs", short_help="The daemon's log, or one actor's output and errors.")
@click.argument("actor", required=False, shell_complete=complete_actor)
@click.option("-n", "--lines", type=click.IntRange(min=0), default=None,
              help="Show the last N lines (default: all kept for an actor, 200 of the daemon's log).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines until Ctrl-C.")
@json_option
@click.pass_obj
def command(app: App, actor: str | None, lines: int | None, follow: bool) -> None:
    """Show the daemon's log, or what ACTOR printed, its handler errors and crashes.

    \b
    Examples:
      theaterctl logs counter -n 20
      theaterctl logs -f
    """
    client = app.client()
    args: dict[str, object] = {} if actor is None else {"actor": actor}
    if lines is not None:
        args["lines"] = lines
    result = client.call("logs", **args)
    if app.json and not follow:
        emit_json(result)
        return
    shown = list(result["lines"])
    if result.get("omitted"):
        click.echo(f"theaterctl: {result['omitted']} older lines not shown (too many to send at once;"
                   " use --lines)", err=True)
    for line in shown:
        emit_text(line)
    while follow:
        time.sleep(0.5)
        fresh = client.call("logs", **({} if actor is None else {"actor": actor}), lines=1000)["lines"]
        # print what follows the last line shown (lines carry timestamps, so they rarely repeat)
        start = 0
        if shown:
            last = shown[-1]
            for i in range(len(fresh) - 1, -1, -1):
                if fresh[i] == last:
                    start = i + 1
                    break
        for line in fresh[start:]:
            emit_text(line)
        if fresh[start:]:
            shown = fresh
