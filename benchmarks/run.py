"""Run the benchmark suite: ``python -m benchmarks.run [--quick] [--only N,...] [--json-out PATH]``.

Every benchmark starts its own theaterd (short temp dir under /tmp), measures
its baseline in the same run, and stops the daemon.  Prints one table
(figure, value, baseline, ratio, target, met) and writes the same as JSON
(default ``benchmarks/results/latest.json``).  Exit status: 0 when every
benchmark ran (met or not), 1 when one crashed, 2 for bad options.  Targets
not met do not change the exit status: this is a measuring tool.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from .common import Figure, fmt

MODULES = {
    1: "b1_cli",
    2: "b2_roundtrip",
    3: "b3_send",
    4: "b4_actors",
    5: "b5_durable",
    6: "b6_many",
    7: "b7_concurrent",
    8: "b8_chain",
    9: "b9_cpu",
    10: "b10_crash",
    11: "b11_hop",
    12: "b12_wasm",
}
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "latest.json"


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    commit, dirty = "", None
    try:
        import subprocess

        root = Path(__file__).resolve().parent.parent
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=10).stdout
        dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "commit": commit,
        "dirty": dirty,
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(x, 2) for x in load],
    }


def _parse_only(text: str | None) -> list[int]:
    if not text:
        return list(MODULES)
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if not part.isdigit() or int(part) not in MODULES:
            raise argparse.ArgumentTypeError(f"unknown benchmark {part!r} (use 1-{len(MODULES)})")
        out.append(int(part))
    return out


def _met(f: dict[str, Any]) -> str:
    if f["met"] is None:
        return "-"
    return "yes" if f["met"] else "NO"


def table(figures: list[dict[str, Any]]) -> str:
    rows = [("#", "figure", "value", "baseline (same run)", "ratio", "target", "met")]
    for f in figures:
        base = ""
        if f["baseline"] is not None and f["baseline_label"]:
            base = f"{fmt(f['baseline'], f['unit'])} ({f['baseline_label']})"
        rows.append((
            f["key"], f["name"], fmt(f["value"], f["unit"]), base,
            "" if f["ratio"] is None else f"{f['ratio']:.2f}x", f["target"], _met(f),
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for i, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(figures: list[dict[str, Any]]) -> str:
    out = ["| # | figure | value | baseline (same run) | ratio | target | met |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for f in figures:
        base = ""
        if f["baseline"] is not None and f["baseline_label"]:
            base = f"{fmt(f['baseline'], f['unit'])} ({f['baseline_label']})"
        ratio = "" if f["ratio"] is None else f"{f['ratio']:.2f}x"
        out.append(f"| {f['key']} | {f['name']} | {fmt(f['value'], f['unit'])} | {base} | {ratio} | "
                   f"{f['target']} | {_met(f)} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[1])
    parser.add_argument("--quick", action="store_true", help="small sizes: seconds instead of minutes")
    parser.add_argument("--only", type=_parse_only, default=None, metavar="N,...",
                        help=f"run only these benchmarks (1-{len(MODULES)})")
    parser.add_argument("--json-out", type=Path, default=DEFAULT_OUT, metavar="PATH",
                        help=f"where to write the JSON results (default {DEFAULT_OUT})")
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = parser.parse_args(argv)
    selected = args.only or list(MODULES)

    info = machine()
    print(f"theater benchmarks ({'quick' if args.quick else 'full'}): {info['nproc']} cores, {info['cpu']}, "
          f"Python {info['python']}, load {info['loadavg_at_start']}, commit {info['commit'] or '?'}"
          f"{' (with uncommitted changes)' if info['dirty'] else ''}", file=sys.stderr, flush=True)
    figures: list[dict[str, Any]] = []
    crashed: list[str] = []
    durations: dict[str, float] = {}
    t_all = time.perf_counter()
    for n in selected:
        name = MODULES[n]
        print(f"[{n}] {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            module = importlib.import_module(f"benchmarks.{name}")
            result: list[Figure] = module.run(args.quick)
            figures.extend(f.as_dict() for f in result)
        except Exception as exc:  # noqa: BLE001 - one broken benchmark must not hide the others
            traceback.print_exc()
            crashed.append(f"{n} ({name}): {type(exc).__name__}: {exc}")
            figures.append(Figure(str(n), n, f"{name} crashed", None, "", target="", met=False,
                                  notes=f"{type(exc).__name__}: {exc}").as_dict())
        durations[str(n)] = round(time.perf_counter() - t0, 2)
        print(f"[{n}] done in {durations[str(n)]:.1f} s", file=sys.stderr, flush=True)

    doc = {
        "mode": "quick" if args.quick else "full",
        "selected": selected,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.perf_counter() - t_all, 2),
        "benchmark_seconds": durations,
        "machine": info,
        "figures": figures,
        "crashed": crashed,
    }
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps(doc, indent=2) + "\n")

    print()
    print(table(figures))
    print()
    for f in figures:
        if f["notes"]:
            print(f"{f['key']}: {f['notes']}")
    if args.markdown:
        print()
        print(markdown_table(figures))
    targets = [f for f in figures if f["met"] is not None]
    print(f"\n{sum(1 for f in targets if f['met'])} of {len(targets)} targets met; "
          f"{doc['seconds']:.0f} s; results in {args.json_out}")
    if crashed:
        print("crashed: " + "; ".join(crashed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
