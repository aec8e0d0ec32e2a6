"""The Landlock system calls, through ctypes (Linux only; no dependency).

Three calls make a sandbox (see landlock(7)): ``landlock_create_ruleset``
returns a ruleset fd declaring which access rights are *handled* (denied
unless a rule allows them); ``landlock_add_rule`` allows some of them beneath a
directory or on a file; ``landlock_restrict_self`` enforces the ruleset on the
calling thread and everything it later starts, for good.

Access rights grew with the ABI version the kernel reports; a ruleset may only
handle rights its kernel knows, so :func:`fs_rights`, :func:`net_rights` and
:func:`scopes` give the subset for a version.  Nothing here decides a policy;
:mod:`daemon.sandbox` does.
"""

from __future__ import annotations

import ctypes
import errno
import os

# The three syscalls were added after the syscall tables were unified, so they
# have the same numbers on x86_64 and aarch64 (and most others; alpha differs).
_SYSCALLS = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446), "arm64": (444, 445, 446)}

_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1

# Filesystem rights, with the ABI that introduced them.
FS_EXECUTE = 1 << 0
FS_WRITE_FILE = 1 << 1
FS_READ_FILE = 1 << 2
FS_READ_DIR = 1 << 3
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2: rename/link across directories
FS_TRUNCATE = 1 << 14  # ABI 3
FS_IOCTL_DEV = 1 << 15  # ABI 5: ioctl on device files

# Network rights (ABI 4): TCP only.
NET_BIND_TCP = 1 << 0
NET_CONNECT_TCP = 1 << 1

# Scopes (ABI 6): deny reaching outside the sandbox's domain.
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1

# The only rights a rule on a non-directory may carry.
FS_FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV


def fs_rights(abi: int) -> int:
    """Every filesystem right the given ABI version knows (0 for none)."""
    if abi < 1:
        return 0
    rights = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def net_rights(abi: int) -> int:
    return NET_BIND_TCP | NET_CONNECT_TCP if abi >= 4 else 0


def scopes(abi: int) -> int:
    return SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if abi >= 6 else 0


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),  # ABI 4
        ("scoped", ctypes.c_uint64),  # ABI 6
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is packed: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def _call(number: int, *args: object) -> int:
    ctypes.set_errno(0)
    result = int(_syscall(ctypes.c_long(number), *args))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def _numbers() -> tuple[int, int, int]:
    machine = os.uname().machine
    numbers = _SYSCALLS.get(machine)
    if numbers is None:
        raise OSError(errno.ENOSYS, f"no Landlock syscall numbers known for {machine}")
    return numbers


def abi_version() -> int:
    """The kernel's Landlock ABI version; raises OSError (ENOSYS: no Landlock, EOPNOTSUPP: disabled)."""
    create, _, _ = _numbers()
    return _call(create, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))


def create_ruleset(abi: int, fs: int, net: int, scoped: int) -> int:
    """A new ruleset fd handling these rights; the struct is cut to the size ``abi`` knows."""
    create, _, _ = _numbers()
    attr = _RulesetAttr(fs, net, scoped)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    return _call(create, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))


def allow_beneath(ruleset_fd: int, path_fd: int, access: int) -> None:
    """Allow ``access`` beneath the directory (or on the file) open as ``path_fd``."""
    _, add_rule, _ = _numbers()
    attr = _PathBeneathAttr(access, path_fd)
    _call(add_rule, ctypes.c_long(ruleset_fd), ctypes.c_long(_RULE_PATH_BENEATH), ctypes.byref(attr),
          ctypes.c_uint32(0))


def restrict_self(ruleset_fd: int) -> None:
    """Enforce the ruleset on the calling thread (needs no_new_privs or CAP_SYS_ADMIN)."""
    _, _, restrict = _numbers()
    _call(restrict, ctypes.c_long(ruleset_fd), ctypes.c_uint32(0))
