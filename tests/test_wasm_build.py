"""The committed .wasm files are what their build scripts make from the sources in this checkout.

Each build runs in a copy of the tree (the committed files are never touched).
C examples and the test components (WAT and C) must come out byte-equal; componentize-py
is not byte-reproducible (componentize-py#247), so the Python example is rebuilt
to prove the build works and its committed file is checked against the source
hash stamped into it.  A test skips only when a tool is missing, or (for the byte comparisons) when its
version is not the one in actors/examples/wasm-common/toolchain.txt.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, ROOT

BIN = Path(sys.executable).parent  # wasm-tools and componentize-py install next to the interpreter
C_EXAMPLES = {"wasm-counter": "counter", "wasm-echo": "echo", "wasm-spin": "spin", "wasm-hog": "hog",
              "wasm-chatroom": "chatroom"}


def _tool(name: str) -> str | None:
    local = BIN / name
    if local.exists():
        return str(local)
    return shutil.which(name)


def _require(*names: str) -> dict[str, str]:
    found = {name: _tool(name) for name in names}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        pytest.skip(f"toolchain missing: {', '.join(missing)} not found on PATH or in {BIN}")
    return {name: path for name, path in found.items() if path is not None}


def _tool_version(path: str) -> str:
    r = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    match = re.search(r"\d+\.\d+\.\d+", r.stdout)
    return match.group(0) if match else r.stdout.strip()


def _require_pinned(tools: dict[str, str]) -> None:
    """Byte-equality holds for the pinned versions (wasm-common/toolchain.txt); skip for others."""
    pins = {}
    for line in (EXAMPLES / "wasm-common" / "toolchain.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split()
            pins[name] = version
    for name, version in pins.items():
        if name in tools and _tool_version(tools[name]) != version:
            pytest.skip(f"toolchain differs: {name} {_tool_version(tools[name])}, the committed files were built "
                        f"with {version}")


def _env() -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def _copy_tree(tmp: Path, *parts: str) -> Path:
    """Copy wit/ and the given paths (relative to the repo) into ``tmp``; returns the new root."""
    root = tmp / "repo"
    shutil.copytree(ROOT / "wit", root / "wit")
    for part in parts:
        src = ROOT / part
        dst = root / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.wasm.tmp"))
        else:
            shutil.copy2(src, dst)
    return root


def _run(script: Path) -> None:
    r = subprocess.run(["sh", str(script)], env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"{script} failed:\n{r.stdout}{r.stderr}"


@pytest.mark.parametrize("example", sorted(C_EXAMPLES))
def test_c_example_is_fresh(example: str, tmp_path: Path) -> None:
    _require_pinned(_require("clang", "wasm-ld", "wasm-tools"))
    root = _copy_tree(tmp_path, "actors/examples/wasm-common", f"actors/examples/{example}")
    built = root / "actors" / "examples" / example / f"{C_EXAMPLES[example]}.wasm"
    built.unlink()
    _run(built.parent / "build.sh")
    committed = EXAMPLES / example / built.name
    assert built.read_bytes() == committed.read_bytes(), f"{committed} is stale: run {example}/build.sh and commit"


def test_test_components_are_fresh(tmp_path: Path) -> None:
    _require_pinned(_require("clang", "wasm-ld", "wasm-tools"))
    root = _copy_tree(tmp_path, "tests/wasm", "actors/examples/wasm-common")
    for wasm in (root / "tests" / "wasm").glob("*.wasm"):
        wasm.unlink()
    _run(root / "tests" / "wasm" / "build.sh")
    committed = sorted((ROOT / "tests" / "wasm").glob("*.wasm"))
    assert [p.name for p in committed] == sorted(p.name for p in (root / "tests" / "wasm").glob("*.wasm"))
    for path in committed:
        assert (root / "tests" / "wasm" / path.name).read_bytes() == path.read_bytes(), f"{path} is stale"


def test_python_example_is_stamped_with_its_current_sources() -> None:
    """No toolchain needed: the hash of the sources in the committed component must match the checkout."""
    sys.path.insert(0, str(EXAMPLES / "wasm-common"))
    try:
        import stamp  # type: ignore[import-not-found]
    finally:
        sys.path.pop(0)
    example = EXAMPLES / "wasm-greeter"
    digest = stamp.sources_digest([example / "app" / "greeter_app.py", ROOT / "wit" / "message-server.wit"])
    found = stamp.read_stamp((example / "greeter.wasm").read_bytes())
    assert found == digest, "wasm-greeter/greeter.wasm is stale: run wasm-greeter/build.sh and commit"


@pytest.mark.slow
def test_python_example_builds_the_same_component_shape(tmp_path: Path) -> None:
    tools = _require("componentize-py", "wasm-tools")
    root = _copy_tree(tmp_path, "actors/examples/wasm-common", "actors/examples/wasm-greeter")
    built = root / "actors" / "examples" / "wasm-greeter" / "greeter.wasm"
    built.unlink()
    _run(built.parent / "build.sh")

    def world(path: Path) -> str:
        r = subprocess.run([tools["wasm-tools"], "component", "wit", str(path)], capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert world(built) == world(EXAMPLES / "wasm-greeter" / "greeter.wasm")
    committed = (EXAMPLES / "wasm-greeter" / "greeter.wasm").read_bytes()
    assert built.read_bytes()[-100:] == committed[-100:]  # the same source stamp at the end
