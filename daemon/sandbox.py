"""The sandbox a worker process applies to itself before it loads actor code.

Theory of operation.  :func:`apply` runs once, early, on the only thread of a
fresh worker interpreter, and cannot be undone:

1. It checks everything first (absolute, existing paths; one thread; a memory
   limit above the current size) and opens every path of the policy, so a bad
   policy raises :class:`SandboxError` before anything is restricted.
2. ``RLIMIT_AS`` (soft and hard) caps the address space; glibc's malloc is
   held to one arena, or every thread would reserve 64 MiB of it.
3. ``PR_SET_NO_NEW_PRIVS``: no exec can gain privileges (setuid, file caps).
4. Every capability is dropped (bounding, ambient, effective, permitted,
   inheritable): a worker started as root keeps uid 0 but none of root's
   powers (no reboot, module loading, clock setting, DAC override, ...).
5. Unless ``unix_sockets``, a seccomp filter denies creating Unix sockets
   (``socketpair()`` still works) and io_uring: Landlock does not check
   connect() to a socket file, and root services listen on those (D-Bus,
   systemd, docker, this daemon).
6. Landlock enforces the ruleset: the file system is denied except what the
   policy lists (read+execute, or read+write); with ``network=False`` every TCP
   bind and connect is denied; abstract Unix sockets and signals cannot reach
   outside the sandbox.

Landlock is best effort: the ruleset handles only the rights the running
kernel's ABI knows, and the :class:`SandboxReport` says what was enforced and
what the kernel could not do.  Landlock does not cover connect() to a
*pathname* Unix socket (hence the seccomp filter), UDP, stat()/readlink() of
paths, descriptors opened before ``apply``, or mmap of files it may read;
docs/sandbox.md lists what is and is not reached.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import stat
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

from . import _landlock as ll

__all__ = ["Policy", "SandboxError", "SandboxReport", "apply", "default_read_paths", "probe"]

MiB = 1024 * 1024

_READ = ll.FS_EXECUTE | ll.FS_READ_FILE | ll.FS_READ_DIR
# Read and write, make and remove, but no execve() and no device nodes.
_WRITE = (ll.FS_READ_FILE | ll.FS_READ_DIR | ll.FS_WRITE_FILE | ll.FS_TRUNCATE | ll.FS_REMOVE_DIR
          | ll.FS_REMOVE_FILE | ll.FS_MAKE_DIR | ll.FS_MAKE_REG | ll.FS_MAKE_SOCK | ll.FS_MAKE_FIFO
          | ll.FS_MAKE_SYM | ll.FS_REFER)

_PR_SET_NO_NEW_PRIVS = 38
_PR_CAPBSET_DROP = 24
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAP_VERSION_3 = 0x20080522
_M_ARENA_MAX = -8
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


class SandboxError(Exception):
    """The sandbox could not be applied; ``str(err)`` is one line saying why."""


@dataclass(frozen=True, slots=True)
class Policy:
    """What a worker may reach once sandboxed.

    ``read``: files and directory trees readable and executable.  ``write``:
    trees where files and directories may be read, written, created, renamed
    and removed (not executed).  ``scratch``: the worker's own writable
    directory, added to ``write``; ``apply`` also points ``TMPDIR`` at it.
    ``network``: False denies every TCP bind and connect (ABI 4 and later).
    ``memory_limit``: bytes of address space (``RLIMIT_AS``), None for no limit.
    ``unix_sockets``: False denies creating Unix sockets (inherited ones and
    ``socketpair()`` still work).  Paths must be absolute and exist.
    """

    read: tuple[Path, ...] = ()
    write: tuple[Path, ...] = ()
    network: bool = False
    memory_limit: int | None = None
    scratch: Path | None = None
    unix_sockets: bool = False

    @classmethod
    def for_worker(cls, scratch: Path, *, read: Iterable[Path] = (), network: bool = False,
                   memory_limit: int | None = None) -> Policy:
        """The usual worker policy: :func:`default_read_paths` plus ``read``; ``/dev/null`` and ``scratch`` writable."""
        return cls(read=(*default_read_paths(network=network), *read), write=(Path("/dev/null"),),
                   network=network, memory_limit=memory_limit, scratch=scratch)


@dataclass(frozen=True, slots=True)
class SandboxReport:
    """What :func:`apply` enforced; ``str(report)`` is the line ``inspect`` shows after ``sandbox:``."""

    abi: int  # the Landlock ABI used, 0 when Landlock is not enforced
    fs: bool  # file system rules enforced
    net: bool  # TCP bind/connect denied
    scope: bool  # abstract Unix sockets and signals scoped to the sandbox
    unix: bool  # creating Unix sockets denied (seccomp)
    memory_limit: int | None
    missing: tuple[str, ...] = ()  # what the policy asked for and this kernel cannot do, with why
    seconds: float = field(default=0.0, compare=False)

    def __str__(self) -> str:
        if self.abi == 0:
            text = f"none ({'; '.join(self.missing)})"
        else:
            parts = [name for name, on in (("fs", self.fs), ("net", self.net), ("scope", self.scope)) if on]
            inner = ", ".join(parts)
            if self.missing:
                inner += "; not enforced: " + "; ".join(self.missing)
            text = f"landlock v{self.abi} ({inner})"
        if self.unix:
            text += ", no unix sockets"
        if self.memory_limit is not None:
            text += f", memory {describe_size(self.memory_limit)}"
        return text


def probe() -> int:
    """The running kernel's Landlock ABI version; 0 when it has none or it is disabled."""
    return _probe()[0]


def default_read_paths(*, network: bool = False) -> list[Path]:
    """What a worker needs to read to run Python, the installed packages and this project.

    The interpreter's prefixes, the ``sys.path`` entries (site-packages and
    the editable-installed project source, wherever its checkout is), ``/usr``
    and ``/lib*`` (shared libraries), ``/dev/null``, ``/dev/urandom`` and
    ``/etc/localtime`` (local time in logs), ``/etc/ld.so.cache`` (where
    ``dlopen`` finds shared libraries).  With ``network``, also what name
    resolution and TLS read in ``/etc``.  Nothing else of ``/etc``, ``/proc``,
    ``/home``, ``/root``, ``/tmp`` or ``/run``.

    The implicit first ``sys.path`` entry (the script's directory or the
    current directory, absent under ``python -P``/``-I``) is left out: a
    worker started in some data directory must not be able to read it.
    Missing paths are left out; paths beneath another are folded into it.
    """
    entries = list(sys.path)
    if entries and not sys.flags.safe_path:
        entries = entries[1:]
    candidates = [sys.prefix, sys.base_prefix, sys.exec_prefix, *entries, *_project_roots(),
                  "/usr", "/lib", "/lib64", "/lib32", "/libx32",
                  "/dev/null", "/dev/urandom", "/etc/localtime", "/etc/ld.so.cache"]
    if network:
        candidates += ["/etc/hosts", "/etc/resolv.conf", "/etc/nsswitch.conf", "/etc/gai.conf",
                       "/etc/host.conf", "/etc/ssl", "/etc/ca-certificates", "/etc/pki"]
    return _fold(Path(c) for c in candidates if c)


def apply(policy: Policy, *, max_abi: int | None = None) -> SandboxReport:
    """Sandbox the calling process for good, as ``policy`` says (see the module's docstring).

    ``max_abi`` uses at most that Landlock ABI version (0: no Landlock), to
    reproduce an older kernel.  Must be called before any other thread starts
    (Landlock and no_new_privs apply to the calling thread and its future
    children only).  Raises :class:`SandboxError`; once enforcement has begun
    an error may leave the process partly restricted, and it should exit.
    """
    started = time.perf_counter()
    _check_one_thread()
    abi, reason = _probe()
    if max_abi is not None and max_abi < abi:
        abi, reason = max(max_abi, 0), f"Landlock limited to ABI {max_abi} by the caller"
    write = (*policy.write, *((policy.scratch,) if policy.scratch is not None else ()))
    for path in (*policy.read, *write):
        if not path.is_absolute():
            raise SandboxError(f"sandbox paths must be absolute: {str(path)!r}")
        if not path.exists():
            raise SandboxError(f"sandbox path does not exist: {str(path)!r}")
    if policy.memory_limit is not None:
        _check_memory_limit(policy.memory_limit)

    missing: list[str] = []
    program = None if policy.unix_sockets else _seccomp_filter()
    if not policy.unix_sockets and program is None:
        missing.append(f"no seccomp filter for {os.uname().machine}")
    ruleset = -1
    handled_net = ll.net_rights(abi) if not policy.network else 0
    scoped = ll.scopes(abi)
    if abi == 0:
        missing.append(reason)
    else:
        if not policy.network and not handled_net:
            missing.append("net needs ABI 4")
        if not scoped:
            missing.append("scope needs ABI 6")
        ruleset = _ruleset(abi, policy.read, write, handled_net, scoped)
    try:
        if policy.memory_limit is not None:
            _one_malloc_arena()
            try:
                resource.setrlimit(resource.RLIMIT_AS, (policy.memory_limit, policy.memory_limit))
            except (ValueError, OSError) as e:  # ValueError: above a hard limit set before
                raise SandboxError(f"cannot set RLIMIT_AS to {describe_size(policy.memory_limit)}: {e}") from None
        if (err := _prctl(_PR_SET_NO_NEW_PRIVS, 1)) < 0:
            raise SandboxError(f"cannot set no_new_privs: {os.strerror(-err)}")
        _drop_capabilities()
        if program is not None:
            _deny_unix_sockets(program)
        if ruleset >= 0:
            try:
                ll.restrict_self(ruleset)
            except OSError as e:
                raise SandboxError(f"landlock_restrict_self failed: {e.strerror}") from None
    finally:
        if ruleset >= 0:
            os.close(ruleset)
    if policy.scratch is not None:
        _use_as_tmpdir(policy.scratch)
    return SandboxReport(
        abi=abi, fs=abi > 0, net=bool(handled_net), scope=bool(scoped), unix=program is not None,
        memory_limit=policy.memory_limit, missing=tuple(missing), seconds=time.perf_counter() - started,
    )


def _probe() -> tuple[int, str]:
    if sys.platform != "linux":
        return 0, "Landlock is Linux only"
    try:
        return ll.abi_version(), ""
    except OSError as e:
        if e.errno == errno.EOPNOTSUPP:
            return 0, "Landlock is disabled in this kernel: not in the lsm= boot list"
        if e.errno == errno.ENOSYS:
            return 0, f"no Landlock: {e.strerror}"
        return 0, f"Landlock probe failed: {e.strerror}"


def _ruleset(abi: int, read: Iterable[Path], write: Iterable[Path], net: int, scoped: int) -> int:
    handled_fs = ll.fs_rights(abi)
    try:
        fd = ll.create_ruleset(abi, handled_fs, net, scoped)
    except OSError as e:
        raise SandboxError(f"landlock_create_ruleset failed: {e.strerror}") from None
    try:
        for paths, rights in ((read, _READ), (write, _WRITE)):
            for path in paths:
                _allow(fd, path, rights & handled_fs)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _allow(ruleset: int, path: Path, rights: int) -> None:
    try:
        path_fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError as e:
        raise SandboxError(f"cannot open sandbox path {str(path)!r}: {e.strerror}") from None
    try:
        if not stat.S_ISDIR(os.fstat(path_fd).st_mode):
            rights &= ll.FS_FILE_RIGHTS  # a rule on a file may carry file rights only
        ll.allow_beneath(ruleset, path_fd, rights)
    except OSError as e:
        raise SandboxError(f"landlock_add_rule failed for {str(path)!r}: {e.strerror}") from None
    finally:
        os.close(path_fd)


def _fold(paths: Iterable[Path]) -> list[Path]:
    """Existing, resolved, without duplicates or paths beneath another; never ``/``."""
    kept: list[Path] = []
    for path in sorted({p.resolve() for p in paths if p.is_absolute() and p.exists()}, key=lambda p: p.parts):
        if path != Path("/") and not any(path.is_relative_to(k) for k in kept):
            kept.append(path)
    return kept


def _project_roots() -> list[str]:
    """Where the ``daemon`` and ``actors`` packages are imported from (an editable checkout, say)."""
    roots = [str(Path(__file__).resolve().parent.parent)]
    spec = find_spec("actors")
    if spec is not None and spec.origin:
        roots.append(str(Path(spec.origin).resolve().parent.parent))
    return roots


def _check_one_thread() -> None:
    try:
        threads = len(os.listdir("/proc/self/task"))
    except OSError:
        return
    if threads > 1:
        raise SandboxError(f"apply() must run before any thread starts ({threads} threads are running)")


def _check_memory_limit(limit: int) -> None:
    if limit <= 0:
        raise SandboxError(f"memory_limit must be positive, not {limit}")
    try:
        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return
    if limit <= size:
        raise SandboxError(f"memory_limit {describe_size(limit)} is not above the worker's current size {describe_size(size)}")


_libc = ctypes.CDLL(None, use_errno=True)


def _prctl(option: int, arg: int) -> int:
    """prctl(option, arg, 0, 0, 0); -errno on failure."""
    result = int(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(arg), ctypes.c_ulong(0),
                             ctypes.c_ulong(0), ctypes.c_ulong(0)))
    return -ctypes.get_errno() if result < 0 else result


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _drop_capabilities() -> None:
    """Empty every capability set of this thread (and its bounding set when it may)."""
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)()
    if _libc.capget(ctypes.byref(header), data) != 0:
        raise SandboxError(f"capget failed: {os.strerror(ctypes.get_errno())}")
    if not any(d.effective or d.permitted or d.inheritable for d in data):
        return
    for cap in range(64):  # the bounding set limits what an exec as uid 0 could gain
        if _prctl(_PR_CAPBSET_DROP, cap) < 0:
            break  # EINVAL past the last capability; EPERM without CAP_SETPCAP
    _prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL)  # EINVAL before Linux 4.3: nothing to clear then
    empty = (_CapData * 2)()
    if _libc.capset(ctypes.byref(header), empty) != 0:
        raise SandboxError(f"cannot drop capabilities: {os.strerror(ctypes.get_errno())}")


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8), ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


# machine: (AUDIT_ARCH_*, __NR_socket); io_uring_setup is 425 on both.
_SECCOMP_ARCH = {"x86_64": (0xC000003E, 41), "aarch64": (0xC00000B7, 198), "arm64": (0xC00000B7, 198)}
_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
_RET_ALLOW, _RET_EPERM = 0x7FFF0000, 0x00050000 | errno.EPERM


def _seccomp_filter() -> list[tuple[int, int, int, int]] | None:
    """A classic BPF program: socket(AF_UNIX, ...) and io_uring_setup fail with EPERM; all else is allowed.

    Reads struct seccomp_data: nr at offset 0, arch at 4, the low half of
    args[0] at 16 (both machines are little-endian).  Another arch (i386
    compat calls, whose socketcall() hides its arguments) and x32 numbers
    (at or above 0x40000000) fail with EPERM.  Jumps count from the next line.
    """
    known = _SECCOMP_ARCH.get(os.uname().machine)
    if known is None:
        return None
    arch, socket_nr = known
    return [
        (_LD_W_ABS, 0, 0, 4),  # 0: arch
        (_JEQ_K, 0, 7, arch),  # 1: another arch -> 9
        (_LD_W_ABS, 0, 0, 0),  # 2: syscall number
        (_JGE_K, 5, 0, 0x40000000),  # 3: x32 -> 9
        (_JEQ_K, 4, 0, 425),  # 4: io_uring_setup -> 9
        (_JEQ_K, 0, 2, socket_nr),  # 5: not socket -> 8
        (_LD_W_ABS, 0, 0, 16),  # 6: socket's domain
        (_JEQ_K, 1, 0, 1),  # 7: AF_UNIX -> 9
        (_RET_K, 0, 0, _RET_ALLOW),  # 8
        (_RET_K, 0, 0, _RET_EPERM),  # 9
    ]


def _deny_unix_sockets(program: list[tuple[int, int, int, int]]) -> None:
    code = (_SockFilter * len(program))(*(_SockFilter(*line) for line in program))
    prog = _SockFprog(len(program), code)
    if _libc.prctl(ctypes.c_int(_PR_SET_SECCOMP), ctypes.c_ulong(_SECCOMP_MODE_FILTER), ctypes.byref(prog),
                   ctypes.c_ulong(0), ctypes.c_ulong(0)) != 0:
        raise SandboxError(f"cannot install the seccomp filter: {os.strerror(ctypes.get_errno())}")


def _one_malloc_arena() -> None:
    """Stop glibc reserving 64 MiB of address space per thread, which RLIMIT_AS would count as used."""
    mallopt = getattr(_libc, "mallopt", None)  # glibc; other libcs have no per-thread arenas to cap
    if mallopt is not None:
        mallopt(ctypes.c_int(_M_ARENA_MAX), ctypes.c_int(1))


def _use_as_tmpdir(scratch: Path) -> None:
    os.environ["TMPDIR"] = str(scratch)
    if "tempfile" in sys.modules:
        setattr(sys.modules["tempfile"], "tempdir", None)  # gettempdir() looks again, and finds scratch


def describe_size(n: int) -> str:
    return f"{n // MiB} MiB" if n % MiB == 0 else f"{n} bytes"
