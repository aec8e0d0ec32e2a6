/* evil: a component that breaks the canonical ABI in its results and host calls,
 * to show both call paths trap instead of reading outside the guest's memory.
 *   request:          ok reply pointing past the end of memory
 *   send:             err with a message that is not UTF-8
 *   channel-open:     a bool that is neither 0 nor 1
 *   channel-message:  calls send-on-channel with a channel id out of bounds */
#define HAVE_REQUEST
#define HAVE_SEND
#define HAVE_CHANNEL_OPEN
#define HAVE_CHANNEL_MESSAGE
#include "../../actors/examples/wasm-common/stubs.h"

EXPORT(CLIENT "handle-request")
u8 *handle_request(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {
    return ok_reply(0, (bytes){(const u8 *)0xFFFFFF00u, 4096});
}

static const u8 not_utf8[] = {0xff, 0xfe, 0x00};

EXPORT(CLIENT "handle-send")
u8 *handle_send(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {
    return err_bytes((bytes){not_utf8, 2});
}

EXPORT(CLIENT "handle-channel-open")
u8 *handle_channel_open(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {
    u8 *r = ok_accept(0, 1, 0);
    r[16] = 7;
    return r;
}

EXPORT(CLIENT "handle-channel-message")
u8 *handle_channel_message(i32 has_state, const u8 *state, size_t state_len,
                           const u8 *ch, size_t ch_len, const u8 *msg, size_t msg_len) {
    bytes error;
    send_on_channel((bytes){(const u8 *)0xFFFFFF00u, 64}, (bytes){msg, msg_len}, &error);
    return ok_state(0);
}
