"""#1: one-shot ``theaterctl request`` wall time vs ``python -c pass`` and a minimal client.

The three commands run interleaved (round robin) against the same daemon so
that noise hits them alike; the figure is the median wall time of each.  Then
``python -X importtime`` runs every one-shot command once to prove that none
imports trio, and to name the heaviest imports of ``request``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from .common import BENCH, SINK, Daemon, Figure, command, log, median, ratio, spawn

# one-shot commands checked for trio imports: (name, argv after theaterctl)
ONE_SHOT = [
    ("request", ["request", "sink", "{}"]),
    ("send", ["send", "sink", "{}"]),
    ("list", ["list"]),
    ("state", ["state", "sink"]),
    ("inspect", ["inspect", "sink"]),
    ("chain show", ["chain", "show", "sink", "--limit", "5"]),
    ("chain verify", ["chain", "verify", "sink"]),
    ("daemon status", ["daemon", "status"]),
]


def _with_python_flags(argv: list[str], *flags: str) -> list[str]:
    """Run ``argv`` (a console script or ``python -m ...``) under this interpreter with ``flags``."""
    if argv[0] == sys.executable:
        return [sys.executable, *flags, *argv[1:]]
    return [sys.executable, *flags, *argv]


def importtime(argv: list[str], env: dict[str, str]) -> tuple[list[tuple[str, int, int]], subprocess.CompletedProcess[str]]:
    """``(module, self_us, cumulative_us)`` for every import, in the order ``-X importtime`` prints them."""
    r = subprocess.run(_with_python_flags(argv, "-X", "importtime"), capture_output=True, text=True, env=env,
                       timeout=60)
    rows = []
    for line in r.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        try:
            self_us, cum_us, name = line[len("import time:"):].split("|", 2)
            rows.append((name[1:].rstrip(), int(self_us), int(cum_us)))  # nested imports keep their indent
        except ValueError:
            continue
    return rows, r


def _timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, env=env, timeout=60)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"{argv} failed ({r.returncode}): {r.stderr.decode(errors='replace')[-500:]}")
    return dt


def run(quick: bool) -> list[Figure]:
    rounds = 5 if quick else 30
    with Daemon() as d:
        with d.client() as c:
            spawn(c, SINK)
        env = d.env
        commands = {
            "theaterctl": [*command("theaterctl"), "request", "sink", "{}"],
            "minimal": [sys.executable, str(BENCH / "minimal_client.py"), "sink", "{}"],
            "pass": [sys.executable, "-c", "pass"],
        }
        out = subprocess.run(commands["theaterctl"], capture_output=True, text=True, env=env).stdout.strip()
        mout = subprocess.run(commands["minimal"], capture_output=True, text=True, env=env).stdout.strip()
        if out != "{}" or mout != "{}":
            raise RuntimeError(f"unexpected replies: theaterctl {out!r}, minimal {mout!r}")
        times: dict[str, list[float]] = {k: [] for k in commands}
        names = list(commands)
        for _ in range(2):  # warm the page cache and __pycache__
            for k in names:
                _timed(commands[k], env)
        log(f"#1: {rounds} rounds of {', '.join(names)}")
        for i in range(rounds):
            order = names[i % 3:] + names[: i % 3]
            for k in order:
                times[k].append(_timed(commands[k], env))

        # imports of every one-shot command
        trio_in: list[str] = []
        for label, args in ONE_SHOT:
            rows, r = importtime([*command("theaterctl"), *args], env)
            if r.returncode != 0:
                raise RuntimeError(f"theaterctl {' '.join(args)} failed: {r.stderr[-500:]}")
            if not rows:
                raise RuntimeError("python -X importtime printed nothing")
            if any(name.strip() == "trio" or name.strip().startswith("trio.") for name, _, _ in rows):
                trio_in.append(label)
        req_rows, _ = importtime(commands["theaterctl"], env)
        min_rows, _ = importtime(commands["minimal"], env)
        pass_rows, _ = importtime(commands["pass"], env)

    min_names = {n.strip() for n, _, _ in min_rows}
    own = [(n.strip(), self_us) for n, self_us, _ in req_rows if n.strip() not in min_names]
    top_own = sorted(own, key=lambda x: -x[1])[:8]
    t_ctl, t_min, t_pass = (median(times[k]) for k in ("theaterctl", "minimal", "pass"))
    r1 = ratio(t_ctl, t_min)
    return [
        Figure("1a", 1, "theaterctl request, one-shot wall time (median)", t_ctl, "s",
               t_min, "minimal client (click+socket+cbor2)", r1, "<= 1.15x minimal",
               r1 is not None and r1 <= 1.15,
               f"{rounds} runs each, interleaved; modules imported: theaterctl {len(req_rows)}, minimal "
               f"{len(min_rows)}, python -c pass {len(pass_rows)}; the {len(own)} modules only theaterctl imports "
               f"take {sum(us for _, us in own) / 1e3:.0f} ms (self time under -X importtime), heaviest: "
               + ", ".join(f"{n} {us / 1e3:.1f} ms" for n, us in top_own)),
        Figure("1b", 1, "theaterctl request vs interpreter start", t_ctl, "s", t_pass, "python -c pass",
               ratio(t_ctl, t_pass), "", None, f"python -c pass median {t_pass * 1e3:.1f} ms"),
        Figure("1c", 1, "one-shot commands that import trio", float(len(trio_in)), "", 0.0, "",
               None, "0 (trio never imported)", not trio_in,
               f"checked with python -X importtime: {', '.join(l for l, _ in ONE_SHOT)}"
               + (f"; importing trio: {', '.join(trio_in)}" if trio_in else "")),
    ]
