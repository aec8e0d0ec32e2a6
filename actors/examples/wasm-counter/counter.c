/* wasm-counter: the counter example (../counter/counter.py) as a C component.
 *
 * Messages (JSON):
 *     {"type": "increment", "amount": 2}   (send; amount defaults to 1)
 *     {"type": "reset"}                    (send)
 *     {"type": "get"}                      (request) -> {"count": N}
 *
 * The state is {"count": N}, byte for byte what counter.py writes.
 */
#define HAVE_INIT
#define HAVE_SEND
#define HAVE_REQUEST
#include "../wasm-common/stubs.h"  /* counter.py has no channel handlers: refuse channels like the daemon */

static i64 count_of(const bytes *state) {
    bytes v;
    i64 n;
    if (state && state->len && json_get(*state, "count", &v) && json_int(v, &n)) return n;
    return 0;
}

static bytes state_of(i64 count) {
    buf b = {0};
    buf_str(&b, "{\"count\": ");
    buf_int(&b, count);
    buf_str(&b, "}");
    return buf_view(&b);
}

/* Python's repr of the "type" value, as counter.py puts it in its errors. */
static bytes type_repr(bytes msg) {
    bytes v, s;
    buf b = {0};
    if (!json_get(msg, "type", &v)) return cstr("None");
    if (json_plain_string(v, &s)) {
        buf_str(&b, "'");
        buf_bytes(&b, s);
        buf_str(&b, "'");
        return buf_view(&b);
    }
    return v;
}

static int message_ok(bytes msg) { return json_valid(msg) && json_is_object(msg); }

EXPORT("theater:simple/actor#init")
u8 *init(i32 has_state, const u8 *state, size_t state_len, const u8 *id, size_t id_len) {
    if (has_state && state_len) return ok_state(&(bytes){state, state_len});
    bytes zero = state_of(0);
    return ok_state(&zero);
}

EXPORT(CLIENT "handle-send")
u8 *handle_send(i32 has_state, const u8 *state_ptr, size_t state_len, const u8 *msg_ptr, size_t msg_len) {
    const bytes *state = STATE_PARAM(has_state, state_ptr, state_len);
    bytes msg = {msg_ptr, msg_len};
    bytes kind, amount;
    if (!message_ok(msg)) return err("message must be a JSON object");
    if (json_get(msg, "type", &kind) && bytes_eq(kind, "\"increment\"")) {
        i64 n = 1;
        if (json_get(msg, "amount", &amount) && !json_int(amount, &n)) return err("amount must be an integer");
        bytes next = state_of(count_of(state) + n);
        return ok_state(&next);
    }
    if (json_get(msg, "type", &kind) && bytes_eq(kind, "\"reset\"")) {
        bytes zero = state_of(0);
        return ok_state(&zero);
    }
    buf b = {0};
    buf_str(&b, "unknown message type ");
    buf_bytes(&b, type_repr(msg));
    buf_str(&b, " (expected increment or reset)");
    return err_bytes(buf_view(&b));
}

EXPORT(CLIENT "handle-request")
u8 *handle_request(i32 has_state, const u8 *state_ptr, size_t state_len, const u8 *msg_ptr, size_t msg_len) {
    const bytes *state = STATE_PARAM(has_state, state_ptr, state_len);
    bytes msg = {msg_ptr, msg_len};
    bytes kind;
    if (!message_ok(msg)) return err("message must be a JSON object");
    if (!json_get(msg, "type", &kind) || !bytes_eq(kind, "\"get\"")) {
        buf b = {0};
        buf_str(&b, "unknown request type ");
        buf_bytes(&b, type_repr(msg));
        buf_str(&b, " (expected get)");
        return err_bytes(buf_view(&b));
    }
    return ok_reply(state, state_of(count_of(state)));
}

