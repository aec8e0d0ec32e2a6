/* wasm-chatroom: the chatroom example (../chatroom/chatroom.py) as a C component.
 *
 * Every channel is a member; what one member says, the others hear.  Open a
 * channel to join; the initial message names you ({"join": "bob"}, default
 * "anon").  Members receive {"joined": name}, {"from": name, "msg": message}
 * and {"left": name}, never their own words.  The state is what chatroom.py
 * keeps, byte for byte: {"members": {channel_id: name}}.  The one difference:
 * a message that is JSON is passed on as it was sent (chatroom.py re-encodes
 * it, so its spacing may differ); anything else becomes a JSON string.
 *
 * The spec's handle-channel-open is not told which channel is opening, so this
 * actor is built for theater's `theater-actor` world and asks with
 * message-context's current-channel (wit/theater.wit). */
#define HAVE_CHANNEL_OPEN
#define HAVE_CHANNEL_MESSAGE
#define HAVE_CHANNEL_CLOSE
#include "../wasm-common/stubs.h"

#define MAX_NAME 64 /* code points, as chatroom.py's MAX_NAME */

static int same(bytes a, bytes b) {
    if (a.len != b.len) return 0;
    for (size_t i = 0; i < a.len; i++) if (a.ptr[i] != b.ptr[i]) return 0;
    return 1;
}

typedef struct {
    bytes channel; /* the channel id (UTF-8) */
    bytes name;    /* the member's name (UTF-8) */
    int gone;
} member;

typedef struct {
    member *at;
    size_t len, cap;
} roster;

static member *find(roster *r, bytes channel) {
    for (size_t i = 0; i < r->len; i++) {
        if (!r->at[i].gone && same(r->at[i].channel, channel)) return &r->at[i];
    }
    return 0;
}

static void add(roster *r, bytes channel, bytes name) {
    member *known = find(r, channel);
    if (known) {
        known->name = name;
        return;
    }
    if (r->len == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        member *grown = alloc(cap * sizeof(member), 4);
        if (r->len) memcpy(grown, r->at, r->len * sizeof(member));
        r->at = grown;
        r->cap = cap;
    }
    r->at[r->len++] = (member){channel, name, 0};
}

/* The members in the state (none when there is no state or it has none). */
static roster members(const bytes *state) {
    roster r = {0};
    bytes all, key, value, channel, name;
    if (!state || !json_get(*state, "members", &all)) return r;
    for (size_t at = 0; json_next(all, &at, &key, &value);) {
        if (!json_string_value(key, &channel)) continue;
        if (!json_string_value(value, &name)) name = value;
        add(&r, channel, name);
    }
    return r;
}

/* The state as chatroom.py writes it: json.dumps({"members": {...}}). */
static bytes state_of(roster *r) {
    buf b = {0};
    buf_str(&b, "{\"members\": {");
    int first = 1;
    for (size_t i = 0; i < r->len; i++) {
        if (r->at[i].gone) continue;
        if (!first) buf_str(&b, ", ");
        first = 0;
        buf_json_string(&b, r->at[i].channel);
        buf_str(&b, ": ");
        buf_json_string(&b, r->at[i].name);
    }
    buf_str(&b, "}}");
    return buf_view(&b);
}

static int contains(bytes text, const char *word) {
    bytes w = cstr(word);
    for (size_t i = 0; i + w.len <= text.len; i++) {
        if (same((bytes){text.ptr + i, w.len}, w)) return 1;
    }
    return 0;
}

/* Send `msg` to every member except the channel `sender` (none: sender.ptr == 0).  A member whose
 * channel the daemon no longer knows (it restarted since the member joined) is dropped. */
static void broadcast(roster *r, bytes sender, bytes msg) {
    for (size_t i = 0; i < r->len; i++) {
        member *m = &r->at[i];
        if (m->gone || (sender.ptr && same(m->channel, sender))) continue;
        bytes error;
        if (send_on_channel(m->channel, msg, &error) && contains(error, "unknown channel")) m->gone = 1;
    }
}

/* {"<key>": <name as a JSON string>} */
static bytes event(const char *key, bytes name) {
    buf b = {0};
    buf_str(&b, "{\"");
    buf_str(&b, key);
    buf_str(&b, "\": ");
    buf_json_string(&b, name);
    buf_str(&b, "}");
    return buf_view(&b);
}

static int space(u8 c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }

/* The name an initial message asks for: its "join" string, stripped and cut to MAX_NAME, else "anon". */
static bytes name_from(bytes initial) {
    bytes token, name;
    if (!json_valid(initial) || !utf8_valid(initial) || !json_get(initial, "join", &token)
        || !json_string_value(token, &name)) return cstr("anon");
    while (name.len && space(name.ptr[0])) { name.ptr++; name.len--; }
    while (name.len && space(name.ptr[name.len - 1])) name.len--;
    size_t points = 0, i = 0;
    for (; i < name.len; i++) {
        if ((name.ptr[i] & 0xC0) != 0x80 && ++points > MAX_NAME) break;
    }
    name.len = i;
    return name.len ? name : cstr("anon");
}

EXPORT(CLIENT "handle-channel-open")
u8 *handle_channel_open(i32 has_state, const u8 *state, size_t state_len, const u8 *msg, size_t msg_len) {
    const bytes *old = STATE_PARAM(has_state, state, state_len);
    bytes channel, opener;
    if (!current_channel(&channel, &opener)) {
        bytes why = cstr("no channel");
        return ok_accept(old, 0, &why);
    }
    roster r = members(old);
    bytes name = name_from((bytes){msg, msg_len});
    broadcast(&r, channel, event("joined", name));
    add(&r, channel, name);
    bytes next = state_of(&r);
    return ok_accept(&next, 1, 0);
}

EXPORT(CLIENT "handle-channel-message")
u8 *handle_channel_message(i32 has_state, const u8 *state, size_t state_len,
                           const u8 *ch, size_t ch_len, const u8 *msg, size_t msg_len) {
    roster r = members(STATE_PARAM(has_state, state, state_len));
    bytes channel = {ch, ch_len}, text = {msg, msg_len};
    member *from = find(&r, channel);
    buf b = {0};
    buf_str(&b, "{\"from\": ");
    buf_json_string(&b, from ? from->name : cstr("anon"));
    buf_str(&b, ", \"msg\": ");
    if (json_valid(text) && utf8_valid(text)) buf_bytes(&b, text);
    else buf_json_string(&b, text);
    buf_str(&b, "}");
    broadcast(&r, channel, buf_view(&b));
    bytes next = state_of(&r);
    return ok_state(&next);
}

EXPORT(CLIENT "handle-channel-close")
u8 *handle_channel_close(i32 has_state, const u8 *state, size_t state_len, const u8 *ch, size_t ch_len) {
    roster r = members(STATE_PARAM(has_state, state, state_len));
    member *gone = find(&r, (bytes){ch, ch_len});
    if (gone) {
        gone->gone = 1;
        broadcast(&r, (bytes){0, 0}, event("left", gone->name));
    }
    bytes next = state_of(&r);
    return ok_state(&next);
}
