"""#9: WebAssembly component actors against Python actor modules; no daemon needed.

    python -m benchmarks.b9_wasm [--quick]

* 9a/9b: a request through ``ComponentActor.handle_request`` (the C counter,
  wasm-counter) against the same call on the Python module (counter.py), with
  a state of 100 bytes and of 64 KiB; the state crosses both ways, as in the
  daemon.  Three ways into the same component: the core fast path
  (daemon.wasm.core), the component API with bulk list<u8> conversion
  (daemon.wasm.abi), and wasmtime-py's own generic conversion.
* 9c: linear memory and process memory (RSS) per idle instance of the C
  example, and the same for the Python (componentize-py) example.
* 9d: compile once (cold), load from the serialized cache, instantiate,
  ``import wasmtime`` in a fresh interpreter.

Prints one line per figure with the ratio to its baseline; ``run(quick)``
returns the figures in the shape of the other benchmarks.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from .common import EXAMPLES, ROOT, Figure, fmt, median, ratio

COUNTER_WASM = EXAMPLES / "wasm-counter" / "counter.wasm"
GREETER_WASM = EXAMPLES / "wasm-greeter" / "greeter.wasm"
MiB = 1 << 20


def _python_counter() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_counter", EXAMPLES / "counter" / "counter.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _state(size: int) -> bytes:
    head = b'{"count": 1, "pad": "'
    return head + b"x" * max(0, size - len(head) - 2) + b'"}'


def _per_call(fn: Callable[[], Any], seconds: float, min_calls: int = 5) -> float:
    """Median of 5 batches, each about seconds/5 long; seconds per call."""
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    batch = max(1, int(seconds / 5 / one))
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(max(batch, min_calls // 5 or 1)):
            fn()
        times.append((time.perf_counter() - t0) / max(batch, min_calls // 5 or 1))
    return median(times)


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _generic_call(actor: Any, state: bytes, msg: bytes) -> Callable[[], Any]:
    """The same export called through wasmtime-py's Func.__call__ (per-value Python conversion)."""
    func = actor._funcs["handle_request"]
    store = actor._store

    def call() -> Any:
        store.set_fuel(1 << 62)
        store.set_epoch_deadline(1 << 40)
        return func(store, state, (msg,))

    return call


def roundtrip(quick: bool) -> list[Figure]:
    from daemon.wasm import load_component

    py = _python_counter()
    core = load_component(COUNTER_WASM, fuel=100_000_000, memory_limit=64 * MiB, timeout=None)
    comp = load_component(COUNTER_WASM, fuel=100_000_000, memory_limit=64 * MiB, timeout=None, fast=False)
    assert core.fast_path and not comp.fast_path
    msg = b'{"type": "get"}'
    figures = []
    seconds = 0.5 if quick else 2.0
    for key, size in (("9a", 100), ("9b", 64 * 1024)):
        state = _state(size)
        assert core.handle_request(state, (msg,)) == comp.handle_request(state, (msg,)) == \
            py.handle_request(state, (msg,))
        t_py = _per_call(lambda: py.handle_request(state, (msg,)), seconds)
        t_core = _per_call(lambda: core.handle_request(state, (msg,)), seconds)
        t_comp = _per_call(lambda: comp.handle_request(state, (msg,)), seconds)
        t_generic = _per_call(_generic_call(comp, state, msg), seconds)
        label = "100 B" if size == 100 else "64 KiB"
        figures.append(Figure(key, 9, f"request, state {label}: ComponentActor, core fast path (C counter)",
                              t_core, "s", baseline=t_py, baseline_label="Python counter.py",
                              ratio=ratio(t_core, t_py)))
        figures.append(Figure(key + "'", 9, f"request, state {label}: ComponentActor, component API + bulk "
                              "list<u8>", t_comp, "s", baseline=t_py, baseline_label="Python counter.py",
                              ratio=ratio(t_comp, t_py)))
        figures.append(Figure(key + "\"", 9, f"request, state {label}: wasmtime-py generic conversion",
                              t_generic, "s", baseline=t_py, baseline_label="Python counter.py",
                              ratio=ratio(t_generic, t_py)))
    return figures


def memory(quick: bool) -> list[Figure]:
    from daemon.wasm import load_component

    n = 50 if quick else 200
    load_component(COUNTER_WASM, fuel=None, memory_limit=64 * MiB, timeout=None)  # compiled once
    gc.collect()
    before = _rss()
    actors = [load_component(COUNTER_WASM, fuel=None, memory_limit=64 * MiB, timeout=None) for _ in range(n)]
    for a in actors:
        a.init(None)
    gc.collect()
    per_rss = (_rss() - before) / n
    linear = actors[0].memory_bytes
    py_before = _rss()
    modules = [_python_counter() for _ in range(n)]
    py_per = (_rss() - py_before) / n
    del modules
    figures = [Figure("9c", 9, "idle C instance (wasm-counter): RSS per instance", per_rss / 1024, "KiB",
                      baseline=py_per / 1024, baseline_label="a loaded counter.py module",
                      ratio=ratio(per_rss, py_per), notes=f"linear memory {linear // 1024} KiB")]
    if GREETER_WASM.exists():
        load_component(GREETER_WASM, fuel=None, memory_limit=256 * MiB, timeout=None)
        gc.collect()
        before = _rss()
        k = 3
        greeters = [load_component(GREETER_WASM, fuel=None, memory_limit=256 * MiB, timeout=None) for _ in range(k)]
        per = (_rss() - before) / k
        figures.append(Figure("9c'", 9, "idle Python component (wasm-greeter): RSS per instance", per / 1024, "KiB",
                              notes=f"linear memory {greeters[0].memory_bytes // 1024} KiB"))
    return figures


def startup(quick: bool) -> list[Figure]:
    from daemon import wasm
    from daemon.wasm import engine as wasm_engine

    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, path in (("C counter", COUNTER_WASM), ("Python greeter", GREETER_WASM)):
            if not path.exists():
                continue
            copy = Path(tmp) / path.name
            copy.write_bytes(path.read_bytes())
            cache = Path(tmp) / "cache"
            wasm_engine.forget_compiled()
            t0 = time.perf_counter()
            wasm.load_component(copy, fuel=None, memory_limit=256 * MiB, timeout=None, cache_dir=cache)
            cold = time.perf_counter() - t0
            wasm_engine.forget_compiled()
            t0 = time.perf_counter()
            wasm.load_component(copy, fuel=None, memory_limit=256 * MiB, timeout=None, cache_dir=cache)
            cached = time.perf_counter() - t0
            t0 = time.perf_counter()
            wasm.load_component(copy, fuel=None, memory_limit=256 * MiB, timeout=None, cache_dir=cache)
            warm = time.perf_counter() - t0
            figures.append(Figure("9d", 9, f"{label} ({path.stat().st_size // 1024} KiB): load, compiled in "
                                  "this process", warm, "s", baseline=cold, baseline_label="cold compile",
                                  ratio=ratio(warm, cold), notes=f"from the disk cache: {fmt(cached, 's')}"))
    code = "import time; t = time.perf_counter(); import wasmtime, wasmtime.component; print(time.perf_counter() - t)"
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                                 cwd=ROOT).stdout) for _ in range(3 if quick else 7)]
    figures.append(Figure("9e", 9, "import wasmtime (fresh interpreter)", median(runs), "s"))
    return figures


def run(quick: bool) -> list[Figure]:
    return roundtrip(quick) + memory(quick) + startup(quick)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.b9_wasm", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs, fewer instances")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = run(args.quick)
    if args.json:
        print(json.dumps([f.as_dict() for f in figures], indent=2))
        return 0
    for f in figures:
        base = f"  vs {fmt(f.baseline, f.unit)} ({f.baseline_label})" if f.baseline is not None else ""
        ratio_text = f"  ratio {f.ratio:.2f}" if f.ratio is not None else ""
        notes = f"  [{f.notes}]" if f.notes else ""
        print(f"{f.key:4} {f.name}: {fmt(f.value, f.unit)}{base}{ratio_text}{notes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
