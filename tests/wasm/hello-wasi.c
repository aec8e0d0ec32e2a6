/* hello-wasi: a component that uses WASI (stdout and the monotonic clock), for
 * the grants.  A request prints "hello from wasm" on stdout and replies with
 * {"ticked": true} when the clock moved between two readings around the write. */
#define HAVE_REQUEST
#include "../../actors/examples/wasm-common/stubs.h"

IMPORT("wasi:cli/stdout@0.2.0", "get-stdout") i32 get_stdout(void);
IMPORT("wasi:io/streams@0.2.0", "[method]output-stream.blocking-write-and-flush")
void write_and_flush(i32 stream, const u8 *ptr, size_t len, u32 *ret);
IMPORT("wasi:io/streams@0.2.0", "[resource-drop]output-stream") void drop_stream(i32 stream);
IMPORT("wasi:clocks/monotonic-clock@0.2.0", "now") i64 clock_now(void);

EXPORT(CLIENT "handle-request")
u8 *handle_request(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {
    i64 before = clock_now();
    i32 out = get_stdout();
    u32 ret[3];
    bytes text = cstr("hello from wasm\n");
    write_and_flush(out, text.ptr, text.len, ret);
    drop_stream(out);
    if (((u8 *)ret)[0]) return err("writing to stdout failed");
    i64 after = clock_now();
    bytes reply = cstr(after > before ? "{\"ticked\": true}" : "{\"ticked\": false}");
    return ok_reply(STATE_PARAM(has_state, state, state_len), reply);
}
