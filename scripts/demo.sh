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

# One stream, so that notes (stderr) and results (stdout) stay in order even when piped.
exec 2>&1
# Each command is shown as it could be typed: arguments with spaces or quotes are quoted.
quote() {
    local arg out=()
    for arg in "$@"; do
        if [[ $arg =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
            out+=("$arg")
        else
            out+=("'${arg//\'/\'\\\'\'}'")
        fi
    done
    printf '%s' "${out[*]}"
}
run() { printf '$ %s\n' "$(quote "$@")"; "$@"; }
run theaterctl daemon start
run theaterctl spawn actors/examples/counter/manifest.toml
run theaterctl send counter '{"type": "increment", "amount": 2}'
run theaterctl request counter '{"type": "get"}'
run theaterctl spawn actors/examples/names/manifest.toml
run theaterctl spawn actors/examples/greeter/manifest.toml
run theaterctl request greeter '{"type": "greet"}'
run theaterctl list
run theaterctl spawn actors/examples/echo/manifest.toml
printf '$ %s\n' "printf '{\"n\":1}\\n{\"n\":2}\\n' | theaterctl channel echo"
printf '{"n":1}\n{"n":2}\n' | theaterctl channel echo
run theaterctl chain show counter
run theaterctl chain verify counter
run theaterctl daemon stop
