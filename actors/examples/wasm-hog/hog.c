/* wasm-hog: a request allocates memory without bound (64 KiB at a time,
 * every page touched) until allocation fails, then aborts like C's malloc
 * failure would; for the memory limit.  A send is handled at once, so the
 * test can show the actor works again after its Store was rebuilt. */
#define HAVE_REQUEST
#define HAVE_SEND
#include "../wasm-common/stubs.h"

EXPORT(CLIENT "handle-request")
u8 *handle_request(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {
    for (;;) {
        u8 *chunk = alloc(65536, 16);  /* traps (unreachable) when memory.grow fails */
        for (size_t i = 0; i < 65536; i += 4096) chunk[i] = 1;
    }
}

EXPORT(CLIENT "handle-send")
u8 *handle_send(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {
    return ok_state(&(bytes){msg, msg_len});
}
