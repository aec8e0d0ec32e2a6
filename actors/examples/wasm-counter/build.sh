#!/bin/sh
# Rebuild counter.wasm from counter.c (see ../wasm-common/build-c.sh for the tools).
set -eu
cd "$(dirname "$0")"
exec sh ../wasm-common/build-c.sh counter.c counter.wasm
