"""The click group, the global options, and the one place errors become exit codes.

Exit codes (also in the README):

    0   success
    1   the actor failed or refused (handler raised, channel rejected)
    2   usage error or bad input
    3   unknown actor, channel or event
    4   timeout
    69  daemon not running or unreachable
    70  internal daemon error
    75  temporarily unavailable (mailbox full, daemon busy)
    76  protocol error
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import os
import sys

import click

from daemon.errors import TheaterError
from daemon.paths import HOME_ENV, SOCKET_ENV, default_home, default_socket

from . import __version__
from .app import App, SuggestingGroup
from .output import error

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

# command name -> module in theaterctl.commands (each exposes ``command``); imported on use,
# so that a one-shot command loads only its own module
COMMANDS = {
    "daemon": "daemon",
    "spawn": "spawn",
    "list": "list_",
    "stop": "stop",
    "send": "send",
    "request": "request",
    "channel": "channel",
    "channels": "channels",
    "chain": "chain",
    "state": "state",
    "inspect": "inspect",
    "new": "new",
    "dead-letters": "dead_letters",
    "restart": "restart",
    "rm": "rm",
    "prune": "prune",
    "logs": "logs",
    "top": "top",
    "completion": "completion_cmd",
}


class LazyGroup(SuggestingGroup):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module_name = COMMANDS.get(name)
        if module_name is None:
            return None
        import importlib

        module = importlib.import_module(f"theaterctl.commands.{module_name}")
        command: click.Command = module.command
        return examples_last(command)


def examples_last(command: click.Command) -> click.Command:
    """Move the 'Examples:' paragraph of a command's help (and its subcommands') to the epilog,
    so that --help ends with the examples, after the options."""
    import inspect

    help_text = inspect.cleandoc(command.help or "")
    marker = help_text.find("\b\nExamples:")
    if marker >= 0 and not command.epilog:
        command.epilog = help_text[marker:].rstrip()
        command.help = help_text[:marker].rstrip()
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            examples_last(sub)
    return command


@click.group(cls=LazyGroup, context_settings=CONTEXT)
@click.option("--socket", type=click.Path(), envvar=SOCKET_ENV, metavar="PATH",
              help="The daemon's Unix socket [env THEATER_SOCKET; default $XDG_RUNTIME_DIR/theater/theaterd.sock].")
@click.option("--home", type=click.Path(), envvar=HOME_ENV, metavar="DIR",
              help="The daemon's data directory, used by 'daemon start' [env THEATER_HOME].")
@click.option("--json", "as_json", is_flag=True, help="Print one machine-readable JSON document on stdout.")
@click.option("--timeout", type=click.FloatRange(min=0.001), metavar="SECONDS",
              help="Timeout for requests and channel opens (default: the daemon's, 30 s).")
@click.version_option(__version__, prog_name="theaterctl")
@click.pass_context
def cli(ctx: click.Context, socket: str | None, home: str | None, as_json: bool, timeout: float | None) -> None:
    """Control theaterd, the local actor runtime with an auditable history.

    Spawn actors from manifests, message them (send, request, channel), and
    read or verify their hash-linked state chains.  An ACTOR is a name, an id,
    or any unique prefix of an id (8 or more hex digits).  The global options
    are accepted after the command too.

    \b
    Examples:
      theaterctl daemon start && theaterctl spawn actors/examples/counter/manifest.toml
      theaterctl request counter '{"type": "get"}'
    """
    app = App(socket=socket or default_socket(), home=home or default_home(), json=as_json, timeout=timeout)
    ctx.obj = app
    ctx.call_on_close(app.close)



examples_last(cli)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and translate every error into one line and an exit code."""
    if "_THEATERCTL_COMPLETE" in os.environ:
        from .completion import register_shells

        register_shells()
    try:
        rv = cli.main(args=argv, prog_name="theaterctl", standalone_mode=False)
        if isinstance(rv, int) and not isinstance(rv, bool):
            sys.exit(rv)
    except TheaterError as exc:
        error(str(exc))
        sys.exit(int(exc.code))
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except (click.Abort, KeyboardInterrupt):
        end_interrupted_line()
        error("interrupted")
        sys.exit(130)
    except click.UsageError as exc:
        error(usage_line(exc))
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        error(exc.format_message())
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        # stdout went away (e.g. piped into head); exit quietly
        try:
            sys.stdout = open("/dev/null", "w")  # noqa: SIM115
        except OSError:
            pass
        sys.exit(0)
    sys.exit(0)


def usage_line(exc: click.UsageError) -> str:
    """A click usage error as one line with a hint: what is wrong, then where to read more."""
    message = " ".join(exc.format_message().split())
    message = message[:1].lower() + message[1:] if message[:2] != message[:2].upper() else message
    path = exc.ctx.command_path if exc.ctx is not None else "theaterctl"
    return f"{message.rstrip('.')} (see '{path} --help')"


def end_interrupted_line() -> None:
    """After Ctrl-C the terminal shows ^C mid-line: start ours on a fresh line."""
    try:
        if sys.stderr.isatty():
            sys.stderr.write("\n")
            sys.stderr.flush()
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    main()
