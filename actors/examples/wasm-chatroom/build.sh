#!/bin/sh
# Rebuild chatroom.wasm from chatroom.c (see ../wasm-common/build-c.sh for the tools).
# Built for theater's theater-actor world: it imports message-context (wit/theater.wit).
set -eu
cd "$(dirname "$0")"
WIT=../../../wit WORLD=theater-actor exec sh ../wasm-common/build-c.sh chatroom.c chatroom.wasm
