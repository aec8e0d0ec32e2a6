#!/bin/sh
# Rebuild hog.wasm from hog.c (see ../wasm-common/build-c.sh for the tools).
set -eu
cd "$(dirname "$0")"
exec sh ../wasm-common/build-c.sh hog.c hog.wasm
