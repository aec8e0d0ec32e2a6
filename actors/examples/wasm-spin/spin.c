/* wasm-spin: a request never returns (an infinite loop), for the fuel and
 * time limits.  {"type": "ping"} (send) is answered at once, so the test
 * can show the actor works again after its Store was rebuilt. */
#define HAVE_REQUEST
#define HAVE_SEND
#include "../wasm-common/stubs.h"

static volatile u32 spins;

EXPORT(CLIENT "handle-request")
u8 *handle_request(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {
    for (;;) spins++;
}

EXPORT(CLIENT "handle-send")
u8 *handle_send(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {
    return ok_state(&(bytes){msg, msg_len});
}
