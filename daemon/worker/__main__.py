"""``python -m daemon.worker FD``: a worker process (started by theaterd only)."""

from __future__ import annotations

import sys

from .runner import main

if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.stderr.write("daemon.worker is started by theaterd; it is not a command\n")
        raise SystemExit(2)
    main(int(sys.argv[1]))
