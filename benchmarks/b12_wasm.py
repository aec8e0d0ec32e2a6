"""#12: WebAssembly component actors beside Python actors, through the daemon.

The C counter component (``wasm-counter``) and ``counter.py`` answer a
``get`` request with the state unchanged, so a state padded to a given size
stays that size: both are spawned from manifests written here whose
``init_state`` is ``{"count": 1, "pad": "xxx..."}``.  One daemon runs both
actors; requests alternate in blocks on one persistent connection.

* 12a/12b: request round trip p50, state of 100 B / 64 KiB: component vs
  Python actor (target: within 1.5x).
* 12c/12d: handled requests/s, pipelined, same states (reported with the
  ratio).
* 12e: memory per idle component instance of the C example: VmRSS of the
  daemon plus its workers (and their processes) over N spawns, divided by N,
  after N others of the kind so that what is loaded once per worker is not
  counted (target < 64 KiB), beside the same for ``counter.py``.

``python -m benchmarks.b9_wasm`` measures the component calls themselves,
without the daemon.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from .common import EXAMPLES, Daemon, Figure, log, percentile, pipelined, ratio, daemon_and_workers_rss_kib

COUNTER_PY = EXAMPLES / "counter" / "counter.py"
COUNTER_WASM = EXAMPLES / "wasm-counter" / "counter.wasm"
GET = b'{"type": "get"}'
KiB = 1024


def _manifest(directory: Path, name: str, component: Path, size: int) -> Path:
    """A manifest for ``component`` whose initial state is ``size`` bytes of counter state."""
    head = '{"count": 1, "pad": "'
    pad = "x" * max(0, size - len(head) - 2)
    state = json.dumps({"count": 1, "pad": pad})
    assert abs(len(state) - size) <= 2, len(state)
    path = directory / f"{name}.toml"
    path.write_text(f'name = "{name}"\ncomponent = "{component}"\ninit_state = {{ count = 1, pad = "{pad}" }}\n')
    return path


def _latencies(client: Any, actor: str, n: int) -> list[float]:
    call, clock, out = client.call, time.perf_counter, []
    for _ in range(n):
        t = clock()
        call("request", actor=actor, msg=GET)
        out.append(clock() - t)
    return out


def _rate(client: Any, actor: str, n: int) -> float:
    calls = [("request", {"actor": actor, "msg": GET})] * n
    t = time.perf_counter()
    pipelined(client, calls, 200)
    return n / (time.perf_counter() - t)


def _idle_memory(d: Daemon, client: Any, manifests: dict[str, Path], n: int) -> dict[str, float]:
    """KiB per idle actor of each kind: n are spawned first so that every worker has loaded
    what the kind needs once (wasmtime, the compiled component), then n more are measured."""
    per: dict[str, float] = {}
    for kind, manifest in manifests.items():
        for batch in ("warm", "idle"):
            time.sleep(0.3)
            before = daemon_and_workers_rss_kib(d, client)
            pipelined(client, [("spawn", {"manifest": str(manifest), "name": f"{batch}-{kind}-{i}"})
                               for i in range(n)], 100)
            time.sleep(0.5)
            per[kind] = (daemon_and_workers_rss_kib(d, client) - before) / n
    return per


def run(quick: bool) -> list[Figure]:
    blocks, per_block, rate_n, idle_n = (2, 50, 200, 50) if quick else (8, 250, 2000, 500)
    figures: list[Figure] = []
    throughput: list[Figure] = []
    with Daemon() as d, d.client(timeout=None) as c:
        made = d.tmp / "manifests"
        made.mkdir()
        for key, size in (("a", 100), ("b", 64 * KiB)):
            label = "100 B" if size == 100 else "64 KiB"
            py = _manifest(made, f"py-{key}", COUNTER_PY, size)
            wasm = _manifest(made, f"wasm-{key}", COUNTER_WASM, size)
            c.spawn(str(py))
            c.spawn(str(wasm))
            assert c.call("request", actor=f"py-{key}", msg=GET) == c.call("request", actor=f"wasm-{key}", msg=GET)
            _latencies(c, f"py-{key}", 50)
            _latencies(c, f"wasm-{key}", 50)
            log(f"#12: state {label}: {blocks} x {per_block} requests to each kind, alternating")
            lat: dict[str, list[float]] = {"py": [], "wasm": []}
            rates: dict[str, list[float]] = {"py": [], "wasm": []}
            for _ in range(blocks):
                lat["py"].extend(_latencies(c, f"py-{key}", per_block))
                lat["wasm"].extend(_latencies(c, f"wasm-{key}", per_block))
            for _ in range(2):
                rates["py"].append(_rate(c, f"py-{key}", rate_n))
                rates["wasm"].append(_rate(c, f"wasm-{key}", rate_n))
            w50, p50 = percentile(lat["wasm"], 50), percentile(lat["py"], 50)
            r = ratio(w50, p50)
            notes = (f"{len(lat['wasm'])} requests each; p99 component {percentile(lat['wasm'], 99) * 1e6:.0f} us, "
                     f"Python {percentile(lat['py'], 99) * 1e6:.0f} us")
            figures.append(Figure(f"12{key}", 12, f"component actor request p50, state {label} (C counter)", w50,
                                  "s", p50, "counter.py in the same daemon", r, "<= 1.5x Python actor",
                                  r is not None and r <= 1.5, notes))
            wr, pr = max(rates["wasm"]), max(rates["py"])
            throughput.append(Figure(f"12{'c' if key == 'a' else 'd'}", 12,
                                  f"component actor handled requests/s, state {label}, pipelined", wr, "msgs/s",
                                  pr, "counter.py in the same daemon", ratio(wr, pr), "(reported)", None,
                                  f"{rate_n} requests, 200 in flight, best of 2"))
        log(f"#12: {idle_n} idle actors of each kind")
        per = _idle_memory(d, c, {"wasm": _manifest(made, "idle-wasm", COUNTER_WASM, 100),
                                  "py": _manifest(made, "idle-py", COUNTER_PY, 100)}, idle_n)
        workers = len(c.status().get("workers", []))
    figures.extend(throughput)
    figures.append(Figure("12e", 12, f"memory per idle component instance, C counter ({idle_n} actors)", per["wasm"],
                          "KiB", per["py"], "counter.py actors, same daemon", ratio(per["wasm"], per["py"]),
                          "< 64 KiB", per["wasm"] < 64,
                          f"VmRSS of the daemon (about 12 KiB per actor of its own) plus its {workers} workers over "
                          f"{idle_n} spawns of each kind, after {idle_n} others of the kind"))
    return figures


if __name__ == "__main__":
    from .run import main

    raise SystemExit(main(["--only", "12"]))
