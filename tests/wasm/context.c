/* context: reports what message-context tells it (built for the theater-actor world).
 * A request replies {"actor": <current-actor>}; a channel open is accepted with the
 * message {"channel": <id>, "opener": <opener>}, or refused when current-channel is none. */
#define HAVE_REQUEST
#define HAVE_CHANNEL_OPEN
#include "../../actors/examples/wasm-common/stubs.h"

EXPORT(CLIENT "handle-request")
u8 *handle_request(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {
    buf b = {0};
    buf_str(&b, "{\"actor\": ");
    buf_json_string(&b, current_actor());
    buf_str(&b, "}");
    return ok_reply(STATE_PARAM(has_state, state, state_len), buf_view(&b));
}

EXPORT(CLIENT "handle-channel-open")
u8 *handle_channel_open(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {
    bytes channel, opener;
    if (!current_channel(&channel, &opener)) return ok_accept(STATE_PARAM(has_state, state, state_len), 0, 0);
    buf b = {0};
    buf_str(&b, "{\"channel\": ");
    buf_json_string(&b, channel);
    buf_str(&b, ", \"opener\": ");
    buf_json_string(&b, opener);
    buf_str(&b, "}");
    bytes answer = buf_view(&b);
    return ok_accept(STATE_PARAM(has_state, state, state_len), 1, &answer);
}
