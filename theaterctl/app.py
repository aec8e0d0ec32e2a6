"""The application object passed to every command (``@click.pass_obj``)."""

from __future__ import annotations

import json
import sys
import os
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


def json_option(f: Any) -> Any:
    """``--json`` on a command too, same as the group option: ``theaterctl list --json``."""
    import click

    def callback(ctx: Any, param: Any, value: bool) -> None:
        if value:
            ctx.find_object(App).json = True

    return click.option("--json", "json_flag", is_flag=True, expose_value=False, callback=callback, is_eager=True,
                        help="Print one machine-readable JSON document on stdout.")(f)
