/* only-request: a component exporting handle-request and nothing else (built against the
 * trimmed world in only-request-wit/); it replies with the message. */
#include "../../actors/examples/wasm-common/theater.h"

EXPORT("theater:simple/message-server-client#handle-request")
u8 *handle_request(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {
    return ok_reply(STATE_PARAM(has_state, state, state_len), (bytes){msg, msg_len});
}

EXPORT("cabi_post_theater:simple/message-server-client#handle-request") void post_request(u8 *r) { heap_reset(); }
