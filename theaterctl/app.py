"""The application object passed to every command (``@click.pass_obj``)."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from daemon.errors import BadInput

if TYPE_CHECKING:
    from pathlib import Path

    from .client import Client


class App:
    """Global options and the lazily opened connection (a plain class: importing
    dataclasses and pathlib would cost every one-shot command several ms)."""

    def __init__(self, socket: str, home: str, json: bool = False, timeout: float | None = None) -> None:
        self.socket_path = socket
        self.home_path = home
        self.json = json
        self.timeout = timeout
        self.wide = False  # --wide / -o wide: full ids and every column, even on a terminal
        self.headers = True  # --no-headers clears it
        self._client: Client | None = None

    @property
    def socket(self) -> Path:
        from pathlib import Path

        return Path(self.socket_path)

    @property
    def home(self) -> Path:
        from pathlib import Path

        return Path(self.home_path)

    def client(self) -> Client:
        """The connection to the daemon, opened on first use."""
        if self._client is None:
            from .client import Client

            self._client = Client.connect(self.socket_path)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def read_message(text: str, what: str = "MESSAGE") -> bytes:
    """MESSAGE as given: JSON text, ``-`` for stdin or ``@path`` for a file; must be JSON."""
    if text == "-":
        data = sys.stdin.buffer.read()
        source = "stdin"
    elif text.startswith("@"):
        path = text[1:]
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            raise BadInput(f"{what} file {path} does not exist") from None
        except OSError as exc:
            raise BadInput(f"cannot read {what} file {path}: {exc.strerror}") from None
        source = path
    else:
        data = text.encode()
        source = what
    try:
        json.loads(data)
    except UnicodeDecodeError:
        raise BadInput(f"{what} from {source} is not UTF-8 text") from None
    except ValueError as exc:
        raise BadInput(f"{what} is not valid JSON ({exc}); nothing was sent") from None
    return data.strip()


def parse_json_option(text: str, what: str) -> bytes:
    try:
        json.loads(text)
    except ValueError as exc:
        raise BadInput(f"{what} is not valid JSON ({exc})") from None
    return text.encode()


def decode_reply(data: Any) -> Any:
    if isinstance(data, (bytes, bytearray)):
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return bytes(data)
    return data


# -- options every command takes, after the command too -------------------------------


def _set_late(attr: str) -> Any:
    """Callback for a global option given after the command: it overrides the group's value."""

    def callback(ctx: Any, param: Any, value: Any) -> None:
        if value is None or value is False:
            return
        ctx.meta[f"theater.{attr}"] = value  # shell completion has no App: it reads this
        app = ctx.find_object(App)
        if app is not None:
            setattr(app, attr, value)

    return callback


def json_option(f: Any) -> Any:
    """The global options on a command too, as after ``theaterctl``: ``theaterctl list --json``,
    ``theaterctl request counter {} --timeout 5``, ``theaterctl list --socket PATH``."""
    import click

    f = click.option("--timeout", type=click.FloatRange(min=0.001), metavar="SECONDS", expose_value=False,
                     is_eager=True, callback=_set_late("timeout"),
                     help="Timeout for requests and channel opens (as before the command).")(f)
    f = click.option("--home", type=click.Path(), metavar="DIR", expose_value=False, is_eager=True,
                     callback=_set_late("home_path"), help="The daemon's data directory (as before the command).")(f)
    f = click.option("--socket", type=click.Path(), metavar="PATH", expose_value=False, is_eager=True,
                     callback=_set_late("socket_path"), help="The daemon's Unix socket (as before the command).")(f)
    return click.option("--json", "json_flag", is_flag=True, expose_value=False, callback=_set_late("json"),
                        is_eager=True, help="Print one machine-readable JSON document on stdout.")(f)


global_options = json_option


def table_options(f: Any) -> Any:
    """``--wide`` / ``-o wide``, ``-o json`` and ``--no-headers`` for a command that prints a table."""
    import click

    def output_callback(ctx: Any, param: Any, value: str | None) -> None:
        app = ctx.find_object(App)
        if app is None or value is None:
            return
        if value == "json":
            app.json = True
        elif value == "wide":
            app.wide = True

    def wide_callback(ctx: Any, param: Any, value: bool) -> None:
        app = ctx.find_object(App)
        if app is not None and value:
            app.wide = True

    def headers_callback(ctx: Any, param: Any, value: bool) -> None:
        app = ctx.find_object(App)
        if app is not None and value:
            app.headers = False

    f = click.option("--no-headers", is_flag=True, expose_value=False, callback=headers_callback,
                     help="Leave out the header line of tables.")(f)
    f = click.option("-o", "--output", "output_format", type=click.Choice(["table", "wide", "json"]),
                     expose_value=False, callback=output_callback, metavar="FORMAT",
                     help="table (default), wide (full ids, every column) or json.")(f)
    return click.option("--wide", is_flag=True, expose_value=False, callback=wide_callback,
                        help="Full ids and every column, even on a narrow terminal.")(f)


# -- actor ids by prefix -----------------------------------------------------------------

_HEX = frozenset("0123456789abcdef-")


def looks_like_id_prefix(text: str) -> bool:
    """8 or more hex digits (hyphens allowed, as in a UUID), short of a whole UUID."""
    return 8 <= len(text) < 36 and set(text.lower()) <= _HEX and text[0] != "-"


def resolve_actor(app: App, text: str) -> str:
    """ACTOR as given, or the one actor id that starts with it.

    Only a text that looks like an id prefix (8+ hex digits) and is no actor's exact
    name costs a lookup (one ``list --all``); an ambiguous prefix is a usage error
    listing the matches; no match is left for the daemon to call unknown.
    """
    if not looks_like_id_prefix(text):
        return text
    actors = app.client().call("list", all=True)
    if any(a.get("name") == text for a in actors):
        return text
    wanted = text.lower().replace("-", "")
    matches = [a for a in actors if str(a.get("id", "")).replace("-", "").startswith(wanted)]
    if len(matches) == 1:
        return str(matches[0]["id"])
    if len(matches) > 1:
        import click

        listed = ", ".join(f"{a['id']} ({a.get('name')}, {a.get('status')})" for a in matches)
        raise click.UsageError(f"actor id prefix {text} is ambiguous: it matches {listed}; type more of it")
    return text


# -- groups that suggest -------------------------------------------------------------


def did_you_mean(word: str, choices: Any) -> str:
    """'; did you mean chain?' for the closest choice, or '' when none is close."""
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _suggesting_group() -> Any:
    import click

    class SuggestingGroup(click.Group):
        """A group whose unknown command is a usage error naming the closest one."""

        def command_names(self, ctx: click.Context) -> list[str]:
            return self.list_commands(ctx)

        def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
            name = args[0] if args else ""
            names = self.command_names(ctx)
            if name and not name.startswith("-") and name not in names and not ctx.resilient_parsing:
                raise click.UsageError(f"no such command {name!r}{did_you_mean(name, names)}", ctx)
            return super().resolve_command(ctx, args)

    return SuggestingGroup


SuggestingGroup = _suggesting_group()
