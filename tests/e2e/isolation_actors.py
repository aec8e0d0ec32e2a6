"""The hostile actor used by the worker-isolation tests, and helpers to stage it.

``HOSTILE`` is the source of one actor module.  Its ``handle_send`` records the
``id`` of every message in its state (so a test can count deliveries), sleeps,
relays or kills its own process on request; its ``handle_request`` does one
hostile thing named by ``do`` and reports what happened instead of raising, so
that a test can assert what the actor could *not* do.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.conftest import DaemonProcess
from theaterctl.client import Client

HOSTILE = r'''
import ctypes, json, os, signal, socket, sys, time
from actors import message_server


def _load(state):
    return json.loads(state) if state else {}


def handle_send(state, params):
    msg = json.loads(params[0])
    time.sleep(msg.get("sleep", 0))
    if msg.get("poison"):
        os._exit(1)
    if "exit_while_asking" in msg:  # the process dies while this handler waits in a host call
        import threading
        threading.Timer(0.3, os._exit, (1,)).start()
        message_server.request(msg["exit_while_asking"], b'{"do": "pid", "after": 2}')
    if "relay" in msg:
        message_server.send(msg["relay"], json.dumps({"id": msg.get("id"), "sleep": msg.get("then_sleep", 0)}).encode())
    if "spray" in msg:  # many sends (stored ahead of the handling in checkpoints), then maybe a crash
        for i in range(msg["spray"]):
            message_server.send(msg["to"], json.dumps({"id": f"{msg.get('id')}-{i}"}).encode())
        n = json.loads(message_server.request(msg["ask"], b'{"do": "count"}'))["count"]
        if n <= msg.get("crash_first", 0):
            os._exit(1)
    if "relay_then_ask" in msg:  # a send, then a request (which stores the send), then maybe a crash
        for target in msg["relay_then_ask"]:
            message_server.send(target, json.dumps({"id": msg.get("id")}).encode())
        n = json.loads(message_server.request(msg["ask"], b'{"do": "count"}'))["count"]
        time.sleep(msg.get("sleep_after_ask", 0))
        if n <= msg.get("crash_first", 0):
            os._exit(1)
        message_server.send(msg["relay_then_ask"][0], json.dumps({"id": msg.get("id") + "-after"}).encode())
    if "try_ghost_then" in msg:  # a send that fails (caught), a good send, a request, maybe a crash
        try:
            message_server.send("no-such-actor", b"{}")
        except message_server.MessageServerError:
            pass
        message_server.send(msg["try_ghost_then"], json.dumps({"id": msg.get("id")}).encode())
        n = json.loads(message_server.request(msg["ask"], b'{"do": "count"}'))["count"]
        if n <= msg.get("crash_first", 0):
            os._exit(1)
    s = _load(state)
    s.setdefault("ids", []).append(msg.get("id"))
    return (json.dumps(s).encode(),)


def _try(fn):
    try:
        return {"ok": True, "result": fn()}
    except BaseException as exc:
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _read(path):
    with open(path, "rb") as f:
        return f.read(64).hex()


def _write(path):
    with open(path, "wb") as f:
        f.write(b"written by an actor")
    return path


def _fill(limit_mib):
    """Write 1 MiB blocks into HOME (the worker's scratch) until refused or limit_mib is reached."""
    written, error = 0, None
    path = os.path.join(os.environ["HOME"], "fill")
    block = b"x" * (1 << 20)
    try:
        with open(path, "wb") as f:
            while written < limit_mib:
                f.write(block)
                f.flush()
                written += 1
    except OSError as exc:
        error = f"{type(exc).__name__}: {exc}"
    finally:
        try:
            os.unlink(path)
        except OSError:
            pass
    return {"written_mib": written, "error": error, "cwd": os.getcwd(), "home": os.environ["HOME"]}


def _hello_frame():
    # {"t": "hello", "version": 1}, hand-encoded CBOR behind a 4-byte big-endian length
    body = bytes([0xa2, 0x61]) + b"t" + bytes([0x65]) + b"hello" + bytes([0x67]) + b"version" + bytes([0x01])
    return len(body).to_bytes(4, "big") + body


def _connect(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(path)
    s.sendall(_hello_frame())
    got = b""
    try:
        while len(got) < 1 << 16:
            data = s.recv(1 << 16)
            if not data:
                break
            got += data
            if len(got) >= 4 and len(got) >= 4 + int.from_bytes(got[:4], "big"):
                break
    except OSError:
        pass
    s.close()
    return got.hex()


def _connect_detached(path):
    """Connect from a grandchild that has left the worker's process tree (double fork)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setsid()
            if os.fork() != 0:
                os._exit(0)
            parent = os.getppid()
            for _ in range(200):
                if os.getppid() != parent:
                    break
                time.sleep(0.01)
            try:
                out = _connect(path).encode()
            except BaseException as exc:
                out = f"error {type(exc).__name__}: {exc}".encode()
            os.write(w, out)
        finally:
            os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    chunks = []
    while True:
        data = os.read(r, 1 << 16)
        if not data:
            break
        chunks.append(data)
    os.close(r)
    text = b"".join(chunks).decode()
    if text.startswith("error "):
        raise OSError(text[6:])
    return text


def _detached_child():
    """A grandchild in a session of its own that sleeps for ten minutes; its pid."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        os.setsid()
        child = os.fork()
        if child != 0:
            os.write(w, str(child).encode())
            os._exit(0)
        os.close(w)
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(600)", "theater-detached-child"])
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    text = os.read(r, 64).decode()
    os.close(r)
    return int(text)


def _store(home):
    from pathlib import Path
    from daemon.store import Store
    store = Store(Path(home))
    return [row.name for row in store.load_actors()]


def _lift_and_allocate(size):
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    block = bytearray(size)
    return len(block)


def handle_request(state, params):
    msg = json.loads(params[0])
    do = msg.get("do")
    time.sleep(msg.get("after", 0))
    if do == "pid":
        reply = {"pid": os.getpid()}
    elif do == "state":
        reply = _load(state)
    elif do == "relay-ask":  # a request whose handler sends, then waits in a request of its own
        message_server.send(msg["to"], json.dumps({"id": msg.get("id")}).encode())
        message_server.request(msg["ask"], json.dumps({"do": "pid", "after": msg.get("wait", 2)}).encode())
        reply = {"ok": True}
    elif do == "count":
        s = _load(state)
        s["count"] = s.get("count", 0) + 1
        return json.dumps(s).encode(), (json.dumps({"count": s["count"]}).encode(),)
    elif do == "exit":
        os._exit(msg["code"])
    elif do == "segv":
        ctypes.string_at(0)
    elif do == "spin":
        while True:
            pass
    elif do == "huge-state":
        return b'"' + b"x" * msg["bytes"] + b'"', (b'{"ok": true}',)
    elif do == "detached-child":
        return state, (json.dumps({"pid": _detached_child()}).encode(),)
    elif do == "fds":
        reply = {}
        for fd in os.listdir("/proc/self/fd"):
            try:
                reply[fd] = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                pass
    elif do == "write-fd":
        reply = _try(lambda: os.write(msg["fd"], msg["text"].encode()))
    elif do == "flood-log":
        import sys, threading

        def flood():
            line = "x" * 8000 + "\n"
            for _ in range(msg["lines"]):
                sys.stdout.write(line)

        threading.Thread(target=flood).start()  # printed outside any handler: no actor to bill
        reply = {"started": True}
    elif do == "hold-the-gil":
        import re
        re.match(r"(a+)+$", "a" * 64 + "b")  # catastrophic backtracking: never releases the GIL
    elif do == "alloc":
        block = bytearray(msg["bytes"])
        reply = {"allocated": len(block)}
    elif do == "read":
        reply = _try(lambda: _read(msg["path"]))
    elif do == "write":
        reply = _try(lambda: _write(msg["path"]))
    elif do == "connect":
        reply = _try(lambda: _connect(msg["path"]))
    elif do == "connect-detached":
        reply = _try(lambda: _connect_detached(msg["path"]))
    elif do == "store":
        reply = _try(lambda: _store(msg["home"]))
    elif do == "kill":
        reply = _try(lambda: os.kill(msg["pid"], signal.SIGKILL))
    elif do == "two-calls-at-once":
        import threading
        host = message_server._host()  # (a thread of its own has no host bound: a hostile handler binds it)

        def ask_slowly():
            message_server._bind_host(host)
            message_server.request(msg["to"], b'{"do": "pid", "after": 1}')

        first = threading.Thread(target=ask_slowly)
        first.start()
        time.sleep(0.3)
        second = _try(lambda: message_server.send(msg["to"], b"{}"))
        first.join()
        reply = second
    elif do == "big-send":
        reply = _try(lambda: message_server.send(msg["to"], b'"' + b"x" * msg["bytes"] + b'"'))
    elif do == "fill":
        reply = _fill(msg["mib"])
    elif do == "lift-memory-limit":
        reply = _try(lambda: _lift_and_allocate(msg["bytes"]))
    else:
        reply = {"unknown": do}
    return state, (json.dumps(reply).encode(),)
'''


def write_actor(folder: Path, name: str, extra: str = "") -> str:
    """A manifest for the hostile actor named ``name`` in ``folder``; its path."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hostile.py").write_text(HOSTILE)
    manifest = folder / f"{name}.toml"
    manifest.write_text(f'name = "{name}"\ncomponent = "hostile.py"\ninit_state = {{ ids = [] }}\n{extra}')
    return str(manifest)


def spawn(d: DaemonProcess, folder: Path, name: str, extra: str = "") -> None:
    r = d.ctl("spawn", write_actor(folder, name, extra))
    assert r.returncode == 0, r.stderr


def ask(d: DaemonProcess, actor: str, message: dict[str, Any], timeout: float = 30.0) -> Any:
    with Client.connect(d.socket) as c:
        return c.request(actor, message, timeout=timeout)


def ids_of(d: DaemonProcess, actor: str) -> list[Any]:
    """The ids the actor's state recorded (the request queues behind every accepted send)."""
    state = ask(d, actor, {"do": "state"})
    return list(state.get("ids", []))


def events(d: DaemonProcess, actor: str) -> list[dict[str, Any]]:
    """The actor's whole chain, with payloads (as ``chain export`` writes it)."""
    with Client.connect(d.socket) as c:
        return [json.loads(line) for line in c.export_lines(actor)]


def handled_ids(d: DaemonProcess, actor: str) -> list[Any]:
    """The ids of the sends the chain says were handled (outcome ok)."""
    return [e["payload"].get("id") for e in events(d, actor)
            if e["type"] == "message-server/handle-send" and e["data"].get("outcome") == "ok"
            and isinstance(e.get("payload"), dict)]


def of_type(d: DaemonProcess, actor: str, etype: str) -> list[dict[str, Any]]:
    return [e for e in events(d, actor) if e["type"] == etype]


def assert_verifies(d: DaemonProcess, *actors: str) -> None:
    for actor in actors:
        r = d.ctl("chain", "verify", actor)
        assert r.returncode == 0, f"chain of {actor}: {r.stderr}"


def wait_for(what: str, check: Callable[[], Any], timeout: float = 15.0, every: float = 0.05) -> Any:
    """Poll ``check`` until it returns something true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def busy_in(d: DaemonProcess, actor: str) -> str | None:
    with Client.connect(d.socket) as c:
        for view in c.list():
            if view["name"] == actor:
                busy = view.get("busy")
                return busy["handler"] if busy else None
    return None


# -- processes, read from /proc -------------------------------------------


def children(pid: int) -> set[int]:
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                found.update(int(p) for p in f.read().split())
        except OSError:
            pass
    return found


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:].split()[0] != b"Z"


def cpu_ticks(pid: int) -> int:
    """utime + stime of ``pid`` in clock ticks (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return 0
    fields = stat[stat.rfind(b")") + 2:].split()
    return int(fields[11]) + int(fields[12])


def worker_pids(d: DaemonProcess) -> set[int]:
    """The daemon's worker processes (as the daemon knows them: its children)."""
    return children(d.pid)


def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (a worker may run under a wrapper, in a PID namespace)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def worker_pid(d: DaemonProcess, actor: str) -> int:
    """The pid of the worker hosting ``actor``, from ``inspect`` (the daemon's view)."""
    view = json.loads(d.ctl("--json", "inspect", actor).stdout)
    return int(view["worker"]["pid"])


def worker_python(d: DaemonProcess, actor: str) -> int:
    """The Python process of the worker hosting ``actor`` (below its wrapper, if any)."""
    pid = worker_pid(d, actor)
    pythons = [p for p in {pid, *descendants(pid)} if _cmdline(p).find(b"daemon.worker") >= 0
               and not _cmdline(p).startswith((b"unshare", b"/usr/bin/unshare", b"setpriv", b"/usr/bin/setpriv"))]
    return min(pythons) if pythons else pid


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def tagged(tag: str) -> set[int]:
    """Processes whose command line holds ``tag``."""
    found = set()
    for name in os.listdir("/proc"):
        if name.isdigit() and tag.encode() in _cmdline(int(name)):
            found.add(int(name))
    return found


def kill_leftovers(pids: set[int]) -> None:
    """Cleanup for tests that expect workers to be gone: never leave one running."""
    for pid in pids:
        if alive(pid):
            try:
                os.kill(pid, 9)
            except OSError:
                pass


def ctl_async(d: DaemonProcess, *args: str) -> subprocess.Popen[str]:
    from tests.daemonproc import command

    return subprocess.Popen([*command("theaterctl"), *args], env=d.env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
