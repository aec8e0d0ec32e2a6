#!/usr/bin/env python3
"""Generate theaterctl's shell completion scripts from click's completion machinery.

    python scripts/gen_completions.py              # rewrite completions/ in the repository
    python scripts/gen_completions.py -o DIR       # write them somewhere else
    python scripts/gen_completions.py --check      # exit 1 if completions/ is stale

Each file is exactly what ``theaterctl completion <shell>`` (and
``_THEATERCTL_COMPLETE=<shell>_source theaterctl``) prints: a small shell function that calls theaterctl back with
``_THEATERCTL_COMPLETE=<shell>_complete`` on every <TAB>, so subcommands,
options and actor names always come from the installed CLI (and, for actor
names, from the running daemon).  Regenerate after upgrading click or
renaming the program; tests/test_completions.py fails when they are stale.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from theaterctl.completion import source  # noqa: E402

# file name -> shell
TARGETS: dict[str, str] = {
    "theaterctl.bash": "bash",
    "_theaterctl": "zsh",
    "theaterctl.fish": "fish",
}


def render(shell: str) -> str:
    """The completion script for one shell: what ``theaterctl completion SHELL`` prints."""
    return source(shell)


def generate() -> dict[str, str]:
    """File name -> contents, for every supported shell."""
    return {name: render(shell) for name, shell in TARGETS.items()}


def write(out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in generate().items():
        path = out_dir / name
        path.write_bytes(text.encode())
        written.append(path)
    return written


def stale(out_dir: Path) -> list[str]:
    """Names of the files in ``out_dir`` that are missing or differ from a fresh generation."""
    bad = []
    for name, text in generate().items():
        try:
            current = (out_dir / name).read_bytes()
        except OSError:
            current = None
        if current != text.encode():
            bad.append(name)
    return bad


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output-dir", type=Path, default=ROOT / "completions",
                        help="Directory to write into (default: completions/ in the repository).")
    parser.add_argument("--check", action="store_true", help="Write nothing; exit 1 if any file is stale.")
    args = parser.parse_args(argv)
    if args.check:
        bad = stale(args.output_dir)
        for name in bad:
            print(f"stale: {args.output_dir / name} (run: python scripts/gen_completions.py)", file=sys.stderr)
        return 1 if bad else 0
    for path in write(args.output_dir):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
