#!/bin/sh
# Rebuild echo.wasm from echo.c (see ../wasm-common/build-c.sh for the tools).
set -eu
cd "$(dirname "$0")"
exec sh ../wasm-common/build-c.sh echo.c echo.wasm
