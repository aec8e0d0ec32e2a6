#!/usr/bin/env bash
# Set up theater on a fresh machine and run the main job: the daemon with the
# example actors, answering requests.  Safe to run again; leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/theaterctl ]; then
    python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet -e '.[test]'
fi
export PATH="$PWD/.venv/bin:$PATH"
demo_dir="$(mktemp -d /tmp/theater-demo.XXXXXX)"
chmod 700 "$demo_dir"
export THEATER_SOCKET="$demo_dir/theaterd.sock" THEATER_HOME="$demo_dir/home"
trap 'theaterctl daemon stop >/dev/null 2>&1 || true; rm -rf "$demo_dir"' EXIT

run() { printf '$ %s\n' "$*"; "$@"; }
run theaterctl daemon start
run theaterctl spawn actors/examples/counter/manifest.toml
run theaterctl send counter '{"type": "increment", "amount": 2}'
run theaterctl request counter '{"type": "get"}'
run theaterctl spawn actors/examples/names/manifest.toml
run theaterctl spawn actors/examples/greeter/manifest.toml
run theaterctl request greeter '{"type": "greet"}'
run theaterctl list
run theaterctl chain show counter
run theaterctl chain verify counter
run theaterctl daemon stop
