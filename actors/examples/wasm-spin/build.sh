#!/bin/sh
# Rebuild spin.wasm from spin.c (see ../wasm-common/build-c.sh for the tools).
set -eu
cd "$(dirname "$0")"
exec sh ../wasm-common/build-c.sh spin.c spin.wasm
