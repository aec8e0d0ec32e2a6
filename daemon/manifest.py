"""Actor manifests (TOML): parsing and validation, one clear error per problem."""

from __future__ import annotations

import difflib
import json
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import BadInput
from .files import LIMITS, check_regular_file, read_regular_file

HANDLER_TYPES = frozenset({"message-server"})
RESTART_POLICIES = frozenset({"never", "on-failure"})
ISOLATION_MODES = ("shared", "dedicated")
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
_UUID_LIKE = re.compile(r"^[0-9A-Fa-f-]+$")

DEFAULT_MEMORY_LIMIT = 1 << 30  # 1 GiB
DEFAULT_HANDLER_TIMEOUT = 60.0  # seconds
DEFAULT_MAX_DELIVERIES = 3

# every key a manifest may hold, per table: anything else is an error with a suggestion
TOP_KEYS = ("name", "component", "init_state", "handlers", "restart", "max_restarts", "restart_window",
            "mailbox_size", "description", "version", "isolation", "memory_limit", "handler_timeout",
            "max_deliveries", "sandbox", "wasi")
HANDLER_KEYS = ("type", "config")
SANDBOX_KEYS = ("read", "write", "network")
WASI_KEYS = ("stdout", "stderr", "clock", "random")


@dataclass(frozen=True, slots=True)
class Sandbox:
    """What an actor may reach: paths to read, paths to write (absolute), and the network."""

    read: tuple[Path, ...] = ()
    write: tuple[Path, ...] = ()
    network: bool = False


@dataclass(frozen=True, slots=True)
class Wasi:
    """The WASI capabilities a component asks for; each is off unless the manifest turns it on."""

    stdout: bool = False
    stderr: bool = False
    clock: bool = False
    random: bool = False


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
    isolation: str = "shared"  # "shared": a worker with other actors; "dedicated": a worker of its own
    memory_limit: int = DEFAULT_MEMORY_LIMIT  # bytes
    handler_timeout: float = DEFAULT_HANDLER_TIMEOUT  # seconds
    max_deliveries: int = DEFAULT_MAX_DELIVERIES  # attempts at one message before it is dead-lettered
    sandbox: Sandbox = Sandbox()
    wasi: Wasi = Wasi()

    @property
    def kind(self) -> str:
        """``wasm`` for a WebAssembly component actor, ``python`` for a Python module."""
        return "wasm" if self.component.suffix == ".wasm" else "python"


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise BadInput(
            f"invalid actor name {name!r}: use 1-64 letters, digits, '_', '.' or '-', starting with a letter"
        )
    if _UUID_LIKE.fullmatch(name) and len(name.replace("-", "")) == 32:
        raise BadInput(f"invalid actor name {name!r}: it looks like an actor id (a UUID), which would make"
                       " the name and the id of different actors ambiguous; choose another name")
    return name


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate a manifest file; raises :class:`BadInput` naming the problem.

    Blocking: the daemon runs it on a thread.  Only a regular file of at most
    ``LIMITS.manifest`` bytes is read (a FIFO or a device is refused, not waited on).
    """
    path = Path(path)
    raw = read_regular_file(path, LIMITS.manifest, "manifest")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadInput(f"manifest {path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise BadInput(f"manifest {path} is not valid TOML: {exc}") from None
    return parse_manifest(doc, path)


def _check_keys(table: dict[str, Any], known: tuple[str, ...], where: str, label: str) -> None:
    for key in table:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else f" (known: {', '.join(known)})"
            raise BadInput(f"{where}: unknown key {label}{key!r}{hint}")


def _positive_int(doc: dict[str, Any], key: str, default: int, where: str, minimum: int = 1) -> int:
    value = doc.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise BadInput(f"{where}: {key!r} must be an integer of at least {minimum}")
    return value


def _paths(table: dict[str, Any], key: str, base: Path, where: str) -> tuple[Path, ...]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(p, str) and p for p in value):
        raise BadInput(f"{where}: 'sandbox.{key}' must be a list of paths (strings)")
    return tuple((base / p).resolve() for p in value)


def _bool(table: dict[str, Any], key: str, label: str, where: str) -> bool:
    value = table.get(key, False)
    if not isinstance(value, bool):
        raise BadInput(f"{where}: {label!r} must be true or false")
    return value


def _table(doc: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, dict):
        raise BadInput(f"{where}: {key!r} must be a table ([{key}])")
    return value


def parse_manifest(doc: dict[str, Any], path: Path) -> Manifest:
    where = f"manifest {path}"
    _check_keys(doc, TOP_KEYS, where, "")
    name = doc.get("name")
    if not isinstance(name, str) or not name:
        raise BadInput(f"{where}: 'name' is missing or not a string")
    check_name(name)
    component = doc.get("component")
    if not isinstance(component, str) or not component:
        raise BadInput(f"{where}: 'component' (path to the actor's Python file or .wasm component) is missing")
    component_path = (path.parent / component).resolve()
    try:
        check_regular_file(component_path, LIMITS.for_component(component_path), "component")
    except BadInput as exc:
        raise BadInput(f"{where}: {exc}") from None
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
        _check_keys(entry, HANDLER_KEYS, where, "in [[handlers]] ")
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
    if not _positive_seconds(window):
        raise BadInput(f"{where}: 'restart_window' must be a positive number of seconds")
    mailbox = doc.get("mailbox_size")
    if mailbox is not None and (not isinstance(mailbox, int) or isinstance(mailbox, bool) or mailbox < 1):
        raise BadInput(f"{where}: 'mailbox_size' must be a positive integer")
    isolation = doc.get("isolation", "shared")
    if isolation not in ISOLATION_MODES:
        raise BadInput(f"{where}: 'isolation' must be \"shared\" or \"dedicated\"")
    memory_limit = doc.get("memory_limit", DEFAULT_MEMORY_LIMIT)
    if not isinstance(memory_limit, int) or isinstance(memory_limit, bool) or memory_limit < 1:
        raise BadInput(f"{where}: 'memory_limit' must be a positive integer (bytes)")
    handler_timeout = doc.get("handler_timeout", DEFAULT_HANDLER_TIMEOUT)
    if not _positive_seconds(handler_timeout):
        raise BadInput(f"{where}: 'handler_timeout' must be a positive number of seconds")
    max_deliveries = _positive_int(doc, "max_deliveries", DEFAULT_MAX_DELIVERIES, where)
    sandbox = _table(doc, "sandbox", where)
    _check_keys(sandbox, SANDBOX_KEYS, where, "in [sandbox] ")
    wasi = _table(doc, "wasi", where)
    _check_keys(wasi, WASI_KEYS, where, "in [wasi] ")
    base = path.parent.resolve()
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
        isolation=isolation,
        memory_limit=memory_limit,
        handler_timeout=float(handler_timeout),
        max_deliveries=max_deliveries,
        sandbox=Sandbox(
            read=_paths(sandbox, "read", base, where),
            write=_paths(sandbox, "write", base, where),
            network=_bool(sandbox, "network", "sandbox.network", where),
        ),
        wasi=Wasi(**{key: _bool(wasi, key, f"wasi.{key}", where) for key in WASI_KEYS}),
    )


def _positive_seconds(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
            and math.isfinite(value))
