"""Actor manifests (TOML): parsing and validation, one clear error per problem."""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import BadInput

HANDLER_TYPES = frozenset({"message-server"})
RESTART_POLICIES = frozenset({"never", "on-failure"})
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")


@dataclass(frozen=True, slots=True)
class Manifest:
    path: Path
    name: str
    component: Path
    init_state: bytes | None = None
    handlers: tuple[str, ...] = ("message-server",)
    restart: str = "never"
    max_restarts: int = 3
    restart_window: float = 60.0
    mailbox_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise BadInput(
            f"invalid actor name {name!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a letter"
        )
    return name


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest file; raises :class:`BadInput` naming the problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BadInput(f"manifest {path} does not exist") from None
    except IsADirectoryError:
        raise BadInput(f"manifest {path} is a directory, not a TOML file") from None
    except OSError as exc:
        raise BadInput(f"cannot read manifest {path}: {exc.strerror}") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadInput(f"manifest {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"manifest {path} is not valid TOML: {exc}") from None
    return parse_manifest(doc, path)


def parse_manifest(doc: dict[str, Any], path: Path) -> Manifest:
    where = f"manifest {path}"
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise BadInput(f"{where}: 'name' is missing or not a string")
    check_name(name)
    component = doc.get("component")
    if not isinstance(component, str) or not component:
        raise BadInput(f"{where}: 'component' (path to the actor's Python file) is missing")
    component_path = (path.parent / component).resolve()
    if not component_path.is_file():
        raise BadInput(f"{where}: component {component_path} does not exist")
    init_state: bytes | None = None
    if "init_state" in doc:
        init_state = json.dumps(doc["init_state"], separators=(",", ":"), default=str).encode()
    handlers: list[str] = []
    raw_handlers = doc.get("handlers", [])
    if not isinstance(raw_handlers, list):
        raise BadInput(f"{where}: 'handlers' must be an array of tables ([[handlers]])")
    for entry in raw_handlers:
        if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
            raise BadInput(f"{where}: each [[handlers]] entry needs a string 'type'")
        if entry["type"] not in HANDLER_TYPES:
            raise BadInput(
                f"{where}: unknown handler type {entry['type']!r} (known: {', '.join(sorted(HANDLER_TYPES))})"
            )
        config = entry.get("config", {})
        if not isinstance(config, dict):
            raise BadInput(f"{where}: handler 'config' must be a table")
        handlers.append(entry["type"])
    if "message-server" not in handlers:
        handlers.append("message-server")  # added automatically, as the spec says
    restart = doc.get("restart", "never")
    if restart not in RESTART_POLICIES:
        raise BadInput(f"{where}: 'restart' must be \"never\" or \"on-failure\"")
    max_restarts = doc.get("max_restarts", 3)
    window = doc.get("restart_window", 60)
    if not isinstance(max_restarts, int) or isinstance(max_restarts, bool) or max_restarts < 0:
        raise BadInput(f"{where}: 'max_restarts' must be a non-negative integer")
    if not isinstance(window, (int, float)) or isinstance(window, bool) or window <= 0:
        raise BadInput(f"{where}: 'restart_window' must be a positive number of seconds")
    mailbox = doc.get("mailbox_size")
    if mailbox is not None and (not isinstance(mailbox, int) or isinstance(mailbox, bool) or mailbox < 1):
        raise BadInput(f"{where}: 'mailbox_size' must be a positive integer")
    known = {"name", "component", "init_state", "handlers", "restart", "max_restarts", "restart_window",
             "mailbox_size", "description", "version"}
    extra = {k: v for k, v in doc.items() if k not in known}
    return Manifest(
        path=path.resolve(),
        name=name,
        component=component_path,
        init_state=init_state,
        handlers=tuple(handlers),
        restart=restart,
        max_restarts=max_restarts,
        restart_window=float(window),
        mailbox_size=mailbox,
        extra=extra,
    )
