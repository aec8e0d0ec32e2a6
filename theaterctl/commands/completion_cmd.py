from __future__ import annotations

import click

from ..completion import SHELLS, source


@click.command("completion", short_help="Print the shell completion script.")
@click.argument("shell", type=click.Choice(SHELLS))
def command(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish) on stdout.

    The script calls theaterctl back on every Tab, so it completes commands,
    options, actor names (from a running daemon), channel ids and event types
    of the installed version.  See docs/completions.md.

    \b
    Examples:
      theaterctl completion bash > ~/.local/share/bash-completion/completions/theaterctl
      theaterctl completion fish > ~/.config/fish/completions/theaterctl.fish
    """
    click.echo(source(shell), nl=False)
