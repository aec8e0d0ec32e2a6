/* wasm-echo: the echo example (../echo/echo.py) as a C component.
 *
 * Replies to every request with the message itself; counts what it saw
 * (state {"seen": N}, byte for byte what echo.py writes).  On a channel it
 * echoes every message back on the same channel. */
#define HAVE_SEND
#define HAVE_REQUEST
#define HAVE_CHANNEL_OPEN
#define HAVE_CHANNEL_MESSAGE
#define HAVE_CHANNEL_CLOSE
#include "../wasm-common/stubs.h"

static bytes bump(const bytes *state) {
    bytes v;
    i64 seen = 0;
    if (state && state->len && json_get(*state, "seen", &v)) json_int(v, &seen);
    buf b = {0};
    buf_str(&b, "{\"seen\": ");
    buf_int(&b, seen + 1);
    buf_str(&b, "}");
    return buf_view(&b);
}

EXPORT(CLIENT "handle-send")
u8 *handle_send(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {
    bytes next = bump(STATE_PARAM(has_state, state, state_len));
    return ok_state(&next);
}

EXPORT(CLIENT "handle-request")
u8 *handle_request(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {
    bytes next = bump(STATE_PARAM(has_state, state, state_len));
    return ok_reply(&next, (bytes){msg, msg_len});
}

EXPORT(CLIENT "handle-channel-open")
u8 *handle_channel_open(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {
    return ok_accept(STATE_PARAM(has_state, state, state_len), 1, 0);
}

EXPORT(CLIENT "handle-channel-message")
u8 *handle_channel_message(i32 has_state, const u8 *state, size_t state_len,
                           const u8 *ch, size_t ch_len, const u8 *msg, size_t msg_len) {
    bytes error;
    if (send_on_channel((bytes){ch, ch_len}, (bytes){msg, msg_len}, &error)) return err_bytes(error);
    bytes next = bump(STATE_PARAM(has_state, state, state_len));
    return ok_state(&next);
}

EXPORT(CLIENT "handle-channel-close")
u8 *handle_channel_close(i32 has_state, const u8 *state, size_t state_len, const u8 *ch, size_t ch_len) {
    return ok_state(STATE_PARAM(has_state, state, state_len));
}
