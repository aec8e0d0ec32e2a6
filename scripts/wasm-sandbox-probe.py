"""Can a sandboxed worker load and run a component actor?  (An experiment for the integrator.)

    .venv/bin/python scripts/wasm-sandbox-probe.py [COMPONENT.wasm ...]

For each component and each of three sandboxes, a child process restricts
itself with Landlock (read and execute only beneath the listed directories, no
write anywhere), sets no_new_privs, then loads the component from a temporary
folder holding a copy of it, with a compile cache the trusted parent filled
(read-only inside), and calls a handler.  It also checks the sandbox is real
(reading /etc/passwd fails).  The sandboxes:

    prefix        Python's prefixes, the theater sources, the component's folder,
                  the cache; daemon.wasm imported after the sandbox is up
    prefix+libs   the same plus the system's shared libraries
                  (/usr/lib/x86_64-linux-gnu or similar, /etc/ld.so.cache)
    preimported   like prefix, but daemon.wasm (so wasmtime's .so) imported first

Prints one line per component and sandbox.  Needs Linux with Landlock.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = [ROOT / "actors" / "examples" / "wasm-counter" / "counter.wasm",
           ROOT / "actors" / "examples" / "wasm-greeter" / "greeter.wasm"]

_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446  # x86_64 and aarch64
_PR_SET_NO_NEW_PRIVS = 38
_EXECUTE, _READ_FILE, _READ_DIR = 1 << 0, 1 << 2, 1 << 3


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock(read_only: list[Path]) -> None:
    """Allow read+execute beneath ``read_only``; deny every other file system access."""
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(_SYS_CREATE_RULESET, None, 0, 1)
    if abi < 1:
        raise SystemExit(f"Landlock unavailable (errno {ctypes.get_errno()})")
    bits = {1: 13, 2: 14, 3: 15}.get(abi, 16)  # access rights known to this ABI
    attr = _RulesetAttr((1 << bits) - 1)
    fd = libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.sizeof(attr), 0)
    if fd < 0:
        raise SystemExit(f"landlock_create_ruleset failed (errno {ctypes.get_errno()})")
    for path in read_only:
        pfd = os.open(path, os.O_PATH | os.O_CLOEXEC)
        rights = _EXECUTE | _READ_FILE | (_READ_DIR if path.is_dir() else 0)  # a file takes file rights only
        rule = _PathBeneath(rights, pfd)
        if libc.syscall(_SYS_ADD_RULE, fd, 1, ctypes.byref(rule), 0) != 0:
            raise SystemExit(f"landlock_add_rule {path} failed (errno {ctypes.get_errno()})")
        os.close(pfd)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.syscall(_SYS_RESTRICT_SELF, fd, 0) != 0:
        raise SystemExit(f"landlock_restrict_self failed (errno {ctypes.get_errno()})")


def child(mode: str, component: Path, cache: Path) -> None:
    allowed = {Path(sys.prefix), Path(sys.base_prefix), ROOT / "daemon", ROOT / "actors", component.parent, cache}
    if mode == "prefix+libs":
        import sysconfig

        multiarch = sysconfig.get_config_var("MULTIARCH") or ""
        allowed |= {p for p in (Path("/usr/lib") / multiarch, Path("/lib64"), Path("/etc/ld.so.cache"))
                    if p.exists()}
    if mode == "preimported":
        import daemon.wasm  # noqa: F401 - loads wasmtime's shared library before the sandbox
    landlock(sorted(allowed))
    try:
        open("/etc/passwd").close()
        print("sandbox NOT effective: /etc/passwd readable")
        return
    except PermissionError:
        pass
    import time

    t0 = time.perf_counter()
    from daemon.wasm import load_component  # imported inside the sandbox, as a worker would

    t1 = time.perf_counter()
    actor = load_component(component, fuel=None, memory_limit=256 << 20, timeout=5.0, cache_dir=cache)
    t2 = time.perf_counter()
    handler = getattr(actor, "handle_channel_close")
    assert handler(b"{}", ("ch_x",)) == (b"{}",)
    print(f"{component.name} [{mode}]: loaded and called inside Landlock (import {t1 - t0:.3f} s, "
          f"load {t2 - t1:.3f} s, fast path {actor.fast_path}, cache entries visible "
          f"{len(list(cache.glob('*.cwasm')))})")


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "--child":
        child(argv[1], Path(argv[2]), Path(argv[3]))
        return 0
    components = [Path(a).resolve() for a in argv] or DEFAULT
    for component in components:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "actor"
            folder.mkdir()
            copy = folder / component.name
            shutil.copy2(component, copy)
            cache = Path(tmp) / "cache"
            cache.mkdir()
            # Fill the cache outside the sandbox, as the trusted daemon would.
            subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                            "from daemon.wasm import load_component; "
                            "load_component(Path(sys.argv[1]), fuel=None, memory_limit=256 << 20, timeout=None, "
                            "cache_dir=Path(sys.argv[2]))", str(copy), str(cache)], cwd=ROOT, check=True)
            for mode in ("prefix", "prefix+libs", "preimported"):
                r = subprocess.run([sys.executable, __file__, "--child", mode, str(copy), str(cache)], cwd=ROOT,
                                   capture_output=True, text=True, timeout=600)
                text = (r.stdout + r.stderr).strip().splitlines()
                print(text[-1] if r.returncode == 0 and text else
                      f"{component.name} [{mode}]: FAILED (exit {r.returncode}): {text[-1] if text else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
