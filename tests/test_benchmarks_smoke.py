"""The benchmark suite must keep running: ``python -m benchmarks.run --quick`` end to end.

Asserts only that every benchmark completes and that the JSON carries every
figure with a value; never asserts on time (targets are the benchmark's
business, not the test suite's).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# every figure key the suite reports
FIGURES = {"1a", "1b", "1c", "2a", "2b", "3", "4a", "4b", "5", "5b", "6a", "6b", "6c", "7a", "7b", "7c", "8a", "8b", "8c", "9", "10",
           "11a", "11b", "12a", "12b", "12c", "12d", "12e"}
FIELDS = {"key", "bench", "name", "value", "unit", "baseline", "baseline_label", "ratio", "target", "met", "notes"}
# figures compared with a baseline measured in the same run
WITH_BASELINE = {"1a", "1b", "2a", "2b", "3", "5", "5b", "6c", "9", "10", "11a", "12a", "12b", "12c", "12d", "12e"}


def _has_pykka() -> bool:
    try:
        import pykka  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.slow
def test_quick_benchmark_run(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--json-out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=110, stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, f"stdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-5000:]}"
    doc = json.loads(out.read_text())
    assert doc["mode"] == "quick" and not doc["crashed"]
    assert doc["machine"]["nproc"] >= 1 and doc["machine"]["python"]
    figures = {f["key"]: f for f in doc["figures"]}
    assert set(figures) == FIGURES
    for key, f in figures.items():
        assert set(f) >= FIELDS, key
        assert isinstance(f["value"], (int, float)), (key, f)
        assert f["met"] in (True, False, None), key
    for key in WITH_BASELINE:
        assert isinstance(figures[key]["baseline"], (int, float)) and figures[key]["ratio"] is not None, key
    if _has_pykka():
        assert isinstance(figures["4a"]["baseline"], float) and isinstance(figures["4b"]["baseline"], float)
    # the printed table names every figure
    for key in FIGURES:
        assert any(line.startswith(key + " ") for line in r.stdout.splitlines()), key


def test_only_and_bad_options(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "benchmarks.run", "--only", "99"], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert r.returncode == 2 and "unknown benchmark" in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["request", "send"])
def test_ab_comparison_runs(mode: str) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.ab", "--base", "HEAD", "--mode", mode, "--runs", "1", "-n", "60"],
        cwd=ROOT, capture_output=True, text=True, timeout=110, stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, f"stdout:\n{r.stdout[-3000:]}\nstderr:\n{r.stderr[-3000:]}"
    lines = r.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["base", "working"]
    unit = "us (runs" if mode == "request" else "/s (runs"
    assert all(unit in line and "daemon CPU" in line for line in lines), lines


def test_ab_refuses_a_base_git_cannot_check_out() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "benchmarks.ab", "--base", "no-such-revision-xyz", "--runs", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 2 and "cannot check out 'no-such-revision-xyz'" in r.stderr
    assert "Traceback" not in r.stderr
