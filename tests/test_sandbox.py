"""The worker sandbox: each test runs a fresh interpreter that applies a policy, tries things and prints JSON.

Every child also reads ``/etc/passwd`` after ``apply()`` (the *canary*) and the
parent checks that it was denied, so each test fails if ``apply()`` were a
no-op, whatever else it checks.  Where the kernel lacks a feature the test
skips with the ABI it would need.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from daemon import sandbox

ROOT = Path(__file__).resolve().parent.parent
ABI = sandbox.probe()
MiB = 1024 * 1024

needs_landlock = pytest.mark.skipif(ABI < 1, reason=f"Landlock unavailable here (probe() is {ABI})")


def needs_abi(version: int, what: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(ABI < version, reason=f"{what} needs Landlock ABI {version}; this kernel has {ABI}")


_PRELUDE = """\
import dataclasses, errno, json, os, sys
from pathlib import Path
from daemon import sandbox

ARGS = json.loads(sys.argv[1])

def attempt(fn):
    try:
        fn()
        return "ok"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))
    except MemoryError:
        return "MemoryError"

scratch = Path(ARGS["scratch"])
policy = sandbox.Policy.for_worker(scratch, network=ARGS["network"], memory_limit=ARGS["memory_limit"])
policy = dataclasses.replace(policy, unix_sockets=ARGS["unix_sockets"])
before = set(sys.modules)
report = sandbox.apply(policy, max_abi=ARGS["max_abi"])
out = {"report": str(report), "abi": report.abi, "canary": attempt(lambda: open("/etc/passwd").read())}
"""


def run_sandboxed(body: str, scratch: Path, *, network: bool = False, memory_limit: int | None = None,
                  unix_sockets: bool = False, max_abi: int | None = None, fs_enforced: bool = True,
                  pass_fds: tuple[int, ...] = (), **args: Any) -> dict[str, Any]:
    """Run ``body`` in a fresh interpreter after ``apply(Policy.for_worker(scratch, ...))``; return its ``out``."""
    scratch.mkdir(exist_ok=True)
    argv = json.dumps({"scratch": str(scratch), "network": network, "memory_limit": memory_limit,
                       "unix_sockets": unix_sockets, "max_abi": max_abi, **args})
    code = _PRELUDE + textwrap.dedent(body) + "\nprint(json.dumps(out))\n"
    proc = subprocess.run([sys.executable, "-c", code, argv], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          pass_fds=pass_fds)
    assert proc.returncode == 0, proc.stderr
    out: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    assert out["canary"] == ("EACCES" if fs_enforced else "ok"), out
    return out


@pytest.fixture
def scratch(tmp_path: Path) -> Path:
    return tmp_path / "scratch"


@pytest.fixture
def tcp_listener() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server.getsockname()[1]


@needs_landlock
def test_probe_is_what_apply_uses(scratch: Path) -> None:
    out = run_sandboxed("out['probe'] = sandbox.probe()", scratch)
    assert ABI >= 1
    assert out["probe"] == out["abi"] == ABI
    if ABI >= 6:
        assert out["report"] == f"landlock v{ABI} (fs, net, scope), no unix sockets"


@needs_landlock
def test_worker_imports_stdlib_trio_cbor2_and_the_host_api(scratch: Path) -> None:
    out = run_sandboxed("""
        import decimal, hashlib, json, sqlite3, ssl, uuid, zlib
        import cbor2, trio
        from actors import message_server
        assert not {"trio", "cbor2", "actors.message_server", "sqlite3"} & before

        async def main():
            a, b = trio.socket.socketpair()
            await a.send(b"x")
            assert await b.recv(1) == b"x"
            return await trio.to_thread.run_sync(lambda: cbor2.loads(cbor2.dumps({"n": 1})))

        out["trio"] = trio.run(main)
        out["host_api"] = hasattr(message_server, "request")
    """, scratch)
    assert out["trio"] == {"n": 1}
    assert out["host_api"] is True


@needs_landlock
def test_scratch_is_readable_and_writable(scratch: Path) -> None:
    out = run_sandboxed("""
        import tempfile
        (scratch / "d").mkdir()
        (scratch / "d" / "f").write_text("hello")
        out["read"] = (scratch / "d" / "f").read_text()
        os.rename(scratch / "d" / "f", scratch / "g")
        out["listing"] = sorted(os.listdir(scratch))
        fd, name = tempfile.mkstemp()
        os.close(fd)
        out["tempfile_in_scratch"] = Path(name).parent == scratch
        out["unlink"] = attempt(lambda: os.unlink(name))
        out["exec_from_scratch"] = attempt(lambda: os.execv(str(scratch / "g"), ["g"]))
    """, scratch)
    assert out["read"] == "hello"
    assert out["listing"] == ["d", "g"]
    assert out["tempfile_in_scratch"] is True
    assert out["unlink"] == "ok"
    assert out["exec_from_scratch"] == "EACCES"


@needs_landlock
def test_secrets_outside_the_policy_are_unreadable(tmp_path: Path, scratch: Path) -> None:
    key = tmp_path / "home" / ".ssh" / "id_rsa"
    key.parent.mkdir(parents=True)
    key.write_text("PRIVATE KEY")
    out = run_sandboxed("""
        key = Path(ARGS["key"])
        out["key"] = attempt(key.read_text)
        out["list_home"] = attempt(lambda: os.listdir(key.parent.parent))
        out["etc"] = attempt(lambda: os.listdir("/etc"))
        out["proc_environ"] = attempt(lambda: open("/proc/1/environ", "rb").read())
    """, scratch, key=str(key))
    assert out == {**out, "key": "EACCES", "list_home": "EACCES", "etc": "EACCES", "proc_environ": "EACCES"}


@needs_landlock
def test_theater_home_is_not_writable(tmp_path: Path, scratch: Path) -> None:
    home = tmp_path / "theater-home"
    home.mkdir()
    (home / "store.sqlite").write_bytes(b"db")
    out = run_sandboxed("""
        home = Path(ARGS["home"])
        out["create"] = attempt(lambda: (home / "new").write_text("x"))
        out["append"] = attempt(lambda: open(home / "store.sqlite", "ab").close())
        out["read"] = attempt((home / "store.sqlite").read_bytes)
        out["unlink"] = attempt(lambda: os.unlink(home / "store.sqlite"))
        out["rename_into_scratch"] = attempt(lambda: os.rename(home / "store.sqlite", scratch / "stolen"))
    """, scratch, home=str(home))
    assert {k: out[k] for k in ("create", "append", "read", "unlink")} == dict.fromkeys(
        ("create", "append", "read", "unlink"), "EACCES")
    assert out["rename_into_scratch"] in ("EACCES", "EXDEV")
    assert sorted(p.name for p in home.iterdir()) == ["store.sqlite"]
    assert (home / "store.sqlite").read_bytes() == b"db"


@needs_landlock
def test_tmp_is_not_writable(scratch: Path) -> None:
    name = f"/tmp/theater-sandbox-{uuid.uuid4().hex}"
    try:
        out = run_sandboxed("""
            out["file"] = attempt(lambda: open(ARGS["name"], "x").close())
            out["dir"] = attempt(lambda: os.mkdir(ARGS["name"] + ".d"))
        """, scratch, name=name)
        assert out["file"] == out["dir"] == "EACCES"
        assert not os.path.exists(name) and not os.path.exists(name + ".d")
    finally:
        for leftover in (name, name + ".d"):
            if os.path.isdir(leftover):
                os.rmdir(leftover)
            elif os.path.exists(leftover):
                os.unlink(leftover)


_TCP = """
    import socket
    def connect():
        with socket.create_connection(("127.0.0.1", ARGS["port"]), timeout=5):
            pass
    def bind():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
    out["connect"] = attempt(connect)
    out["bind"] = attempt(bind)
"""


@needs_abi(4, "denying TCP")
def test_tcp_is_denied_without_network(scratch: Path, tcp_listener: int) -> None:
    out = run_sandboxed(_TCP, scratch, network=False, port=tcp_listener)
    assert out["connect"] == out["bind"] == "EACCES"


@needs_landlock
def test_tcp_is_allowed_with_network(scratch: Path, tcp_listener: int) -> None:
    out = run_sandboxed(_TCP, scratch, network=True, port=tcp_listener)
    assert out["connect"] == out["bind"] == "ok"
    assert "net" not in out["report"].split("(")[1].split(";")[0]


@needs_landlock
def test_memory_limit_raises_memoryerror_and_the_worker_survives(scratch: Path) -> None:
    out = run_sandboxed("""
        import threading
        out["big"] = attempt(lambda: bytearray(512 * 1024 * 1024))
        out["small"] = len(bytearray(16 * 1024 * 1024))
        # Threads reserve address space (an 8 MiB stack each, and a 64 MiB malloc arena unless apply() caps them).
        release, sizes = threading.Event(), []
        def work():
            sizes.append(len(bytearray(1024 * 1024)))
            release.wait()
        threads = [threading.Thread(target=work, daemon=True) for _ in range(8)]
        for t in threads:
            t.start()
        release.set()
        for t in threads:
            t.join()
        out["threads"] = sum(sizes)
    """, scratch, memory_limit=256 * MiB)
    assert out["big"] == "MemoryError"
    assert out["small"] == 16 * MiB
    assert out["threads"] == 8 * MiB
    assert out["report"].endswith(", memory 256 MiB")


@needs_abi(6, "scoping signals and abstract Unix sockets")
def test_signals_and_abstract_unix_sockets_stay_inside(scratch: Path) -> None:
    with socket.socket(socket.AF_UNIX) as listener:
        address = f"\0theater-sandbox-{uuid.uuid4().hex}"
        listener.bind(address)
        listener.listen()
        out = run_sandboxed("""
            import socket
            def connect():
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(ARGS["address"])
            out["abstract"] = attempt(connect)
            out["signal_parent"] = attempt(lambda: os.kill(os.getppid(), 0))
            out["signal_self"] = attempt(lambda: os.kill(os.getpid(), 0))
        """, scratch, unix_sockets=True, address=address)  # the seccomp filter would hide the scope
    assert out["abstract"] == out["signal_parent"] == "EPERM"
    assert out["signal_self"] == "ok"


_UNIX = """
    import socket
    def connect():
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(ARGS["path"])
    def pair():
        a, b = socket.socketpair()
        a.send(b"x")
        assert b.recv(1) == b"x"
    out["connect"] = attempt(connect)
    out["socketpair"] = attempt(pair)
    out["read_dir"] = attempt(lambda: os.listdir(Path(ARGS["path"]).parent))
"""


@pytest.fixture
def unix_listener(tmp_path: Path) -> Iterator[Path]:
    """A socket file outside every sandbox path, like the daemon's, D-Bus's or docker's."""
    path = tmp_path / "elsewhere" / "s.sock"
    path.parent.mkdir()
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(path))
        listener.listen()
        yield path


@needs_landlock
def test_landlock_does_not_cover_connecting_to_a_socket_file(scratch: Path, unix_listener: Path) -> None:
    out = run_sandboxed(_UNIX, scratch, unix_sockets=True, path=str(unix_listener))
    assert out["connect"] == "ok"  # although its directory cannot even be listed
    assert out["read_dir"] == "EACCES"


def test_seccomp_denies_new_unix_sockets_but_not_socketpair(scratch: Path, unix_listener: Path) -> None:
    out = run_sandboxed(_UNIX, scratch, fs_enforced=ABI >= 1, path=str(unix_listener))
    assert out["connect"] == "EPERM"
    assert out["socketpair"] == "ok"
    assert out["report"].endswith("), no unix sockets")


@needs_landlock
def test_descriptors_open_before_apply_stay_usable(tmp_path: Path, scratch: Path) -> None:
    """Landlock checks opening, not using: the worker must inherit only the descriptors it may use."""
    secret = tmp_path / "secret"
    secret.write_text("inherited")
    fd = os.open(secret, os.O_RDONLY)
    try:
        out = run_sandboxed("""
            out["by_fd"] = os.read(ARGS["fd"], 100).decode()
            out["by_path"] = attempt(lambda: open(ARGS["path"]).read())
            out["reopen_via_proc"] = attempt(lambda: open(f"/proc/self/fd/{ARGS['fd']}").read())
        """, scratch, pass_fds=(fd,), fd=fd, path=str(secret))
    finally:
        os.close(fd)
    assert out["by_fd"] == "inherited"
    assert out["by_path"] == out["reopen_via_proc"] == "EACCES"


_PRIVILEGES = """
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    out["no_new_privs"] = libc.prctl(39, 0, 0, 0, 0)  # PR_GET_NO_NEW_PRIVS
    header = sandbox._CapHeader(sandbox._CAP_VERSION_3, 0)
    data = (sandbox._CapData * 2)()
    assert libc.capget(ctypes.byref(header), data) == 0
    out["caps"] = [c for d in data for c in (d.effective, d.permitted, d.inheritable)]
"""


@needs_landlock
def test_no_new_privs_and_no_capabilities(scratch: Path) -> None:
    out = run_sandboxed(_PRIVILEGES, scratch)
    assert out["no_new_privs"] == 1
    assert out["caps"] == [0] * 6


@needs_abi(4, "showing the step down from ABI 4 to 3")
def test_an_older_abi_enforces_what_it_knows_and_says_what_it_cannot(scratch: Path, tcp_listener: int) -> None:
    out = run_sandboxed(_TCP, scratch, network=False, max_abi=3, port=tcp_listener)
    assert out["abi"] == 3
    assert out["report"] == "landlock v3 (fs; not enforced: net needs ABI 4; scope needs ABI 6), no unix sockets"
    assert out["connect"] == "ok"


def test_without_landlock_the_rest_still_applies(scratch: Path) -> None:
    out = run_sandboxed(_PRIVILEGES + """
    out["big"] = attempt(lambda: bytearray(512 * 1024 * 1024))
    """, scratch, max_abi=0, memory_limit=256 * MiB, fs_enforced=False)
    assert out["abi"] == 0
    assert out["report"].startswith("none (") and out["report"].endswith("), no unix sockets, memory 256 MiB")
    assert out["no_new_privs"] == 1
    assert out["caps"] == [0] * 6
    assert out["big"] == "MemoryError"


def test_apply_refuses_to_run_once_threads_exist(scratch: Path) -> None:
    scratch.mkdir()
    code = textwrap.dedent(f"""
        import threading, json
        from pathlib import Path
        from daemon import sandbox
        stop = threading.Event()
        threading.Thread(target=stop.wait).start()
        try:
            sandbox.apply(sandbox.Policy.for_worker(Path({str(scratch)!r})))
            print(json.dumps("applied"))
        except sandbox.SandboxError as e:
            print(json.dumps(str(e)))
        stop.set()
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    message = json.loads(proc.stdout)
    assert message == "apply() must run before any thread starts (2 threads are running)"


def test_a_bad_policy_raises_one_line_before_restricting_anything(tmp_path: Path) -> None:
    code = textwrap.dedent(f"""
        import ctypes, json
        from pathlib import Path
        from daemon import sandbox
        try:
            sandbox.apply(sandbox.Policy(read=sandbox.default_read_paths(), write=(Path({str(tmp_path / "missing")!r}),)))
            message = None
        except sandbox.SandboxError as e:
            message = str(e)
        nnp = ctypes.CDLL(None).prctl(39, 0, 0, 0, 0)
        print(json.dumps([message, nnp, len(open("/etc/passwd").read()) > 0]))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    message, nnp, etc_readable = json.loads(proc.stdout)
    assert message == f"sandbox path does not exist: {str(tmp_path / 'missing')!r}"
    assert (nnp, etc_readable) == (0, True)


def test_default_read_paths_are_few_and_leave_out_data() -> None:
    paths = sandbox.default_read_paths()
    assert Path(sys.prefix).resolve() in paths or any(Path(sys.prefix).resolve().is_relative_to(p) for p in paths)
    assert any(ROOT.is_relative_to(p) for p in paths)  # the editable checkout, wherever it is
    assert Path("/") not in paths
    for denied in ("/etc", "/etc/passwd", "/tmp", "/proc", "/root", "/home", "/run"):
        assert not any(Path(denied).is_relative_to(p) for p in paths), denied
