/* stubs.h: the message-server-client exports an example leaves out, each
 * answering like a Python actor without that handler would be treated:
 * define HAVE_<NAME> before including to provide your own. */
#ifndef THEATER_STUBS_H
#define THEATER_STUBS_H
#include "theater.h"

#define CLIENT "theater:simple/message-server-client#"

#ifndef HAVE_INIT
EXPORT("theater:simple/actor#init")
u8 *init(i32 has_state, const u8 *state, size_t state_len, const u8 *id, size_t id_len) {
    return ok_state(STATE_PARAM(has_state, state, state_len));
}
#endif

#ifndef HAVE_SEND
EXPORT(CLIENT "handle-send")
u8 *handle_send(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {
    return err("actor does not handle messages");
}
#endif

#ifndef HAVE_REQUEST
EXPORT(CLIENT "handle-request")
u8 *handle_request(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {
    return err("actor does not handle requests");
}
#endif

#ifndef HAVE_CHANNEL_OPEN
EXPORT(CLIENT "handle-channel-open")
u8 *handle_channel_open(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {
    bytes reason = cstr("actor does not accept channels");
    return ok_accept(STATE_PARAM(has_state, state, state_len), 0, &reason);
}
#endif

#ifndef HAVE_CHANNEL_MESSAGE
EXPORT(CLIENT "handle-channel-message")
u8 *handle_channel_message(i32 has_state, const u8 *state, size_t state_len,
                           const u8 *ch, size_t ch_len, const u8 *msg, size_t msg_len) {
    return ok_state(STATE_PARAM(has_state, state, state_len));
}
#endif

#ifndef HAVE_CHANNEL_CLOSE
EXPORT(CLIENT "handle-channel-close")
u8 *handle_channel_close(i32 has_state, const u8 *state, size_t state_len, const u8 *ch, size_t ch_len) {
    return ok_state(STATE_PARAM(has_state, state, state_len));
}
#endif

/* The heap holds only one call's data: drop it once the host has read the results. */
EXPORT("cabi_post_theater:simple/actor#init") void post_init(u8 *r) { heap_reset(); }
EXPORT("cabi_post_" CLIENT "handle-send") void post_send(u8 *r) { heap_reset(); }
EXPORT("cabi_post_" CLIENT "handle-request") void post_request(u8 *r) { heap_reset(); }
EXPORT("cabi_post_" CLIENT "handle-channel-open") void post_open(u8 *r) { heap_reset(); }
EXPORT("cabi_post_" CLIENT "handle-channel-message") void post_message(u8 *r) { heap_reset(); }
EXPORT("cabi_post_" CLIENT "handle-channel-close") void post_close(u8 *r) { heap_reset(); }

#endif
