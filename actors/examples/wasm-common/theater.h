/* theater.h: the canonical-ABI glue for a C actor of the theater:simple
 * message-server-actor world (wit/message-server.wit), with no libc.
 *
 * Build for wasm32-unknown-unknown, embed the WIT and wrap the module as a
 * component (see build.sh in each example).  What this header provides:
 *
 *   - a bump allocator and the `cabi_realloc` export the host uses to pass
 *     strings and lists into the guest; the heap is reset after every export
 *     returns (`cabi_post_*`), so an actor keeps nothing in linear memory
 *     between calls: its state comes in as a parameter and goes out as a result;
 *   - `bytes`, a (pointer, length) view, and a few builders;
 *   - result writers for the export functions' return areas, laid out as
 *     the canonical ABI lays out result<tuple<option<json>, ...>, string>;
 *   - imports of message-server-host with their return areas decoded;
 *   - a tiny JSON reader: find a key in a top-level object, read an integer
 *     or a string token.  Enough for the examples, not a general parser.
 *
 * Canonical ABI layouts used (all fields 4-byte aligned, wasm32):
 *   option<list<u8>>        disc u8 @0, ptr @4, len @8            (12 bytes)
 *   result<_, string>       disc u8 @0, ptr @4, len @8            (12 bytes)
 *   result<list|string, string>  same shape                        (12 bytes)
 *   channel-accept          accepted u8 @0, option<json> @4        (16 bytes)
 */
#ifndef THEATER_H
#define THEATER_H

typedef unsigned char u8;
typedef unsigned int u32;
typedef int i32;
typedef long long i64;
typedef unsigned long size_t;

#define EXPORT(name) __attribute__((export_name(name)))
#define IMPORT(module, name) __attribute__((import_module(module), import_name(name)))

/* ---- memory ------------------------------------------------------------ */

extern u8 __heap_base;
static u8 *heap_top;

void *memcpy(void *dst, const void *src, size_t n) {
    u8 *d = dst;
    const u8 *s = src;
    while (n--) *d++ = *s++;
    return dst;
}

void *memset(void *dst, int c, size_t n) {
    u8 *d = dst;
    while (n--) *d++ = (u8)c;
    return dst;
}

static void *alloc(size_t size, size_t align) {
    if (!heap_top) heap_top = &__heap_base;
    if (align < 1) align = 1;
    size_t p = ((size_t)heap_top + align - 1) & ~(align - 1);
    size_t end = p + size;
    size_t have = __builtin_wasm_memory_size(0) * 65536ul;
    if (end > have) {
        size_t pages = (end - have + 65535) / 65536;
        if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) __builtin_trap();
    }
    heap_top = (u8 *)end;
    return (void *)p;
}

static void heap_reset(void) { heap_top = &__heap_base; }

EXPORT("cabi_realloc")
void *cabi_realloc(void *old, size_t old_size, size_t align, size_t new_size) {
    if (new_size <= old_size && old) return old;
    void *p = alloc(new_size, align);
    if (old && old_size) memcpy(p, old, old_size);
    return p;
}

/* ---- bytes ------------------------------------------------------------- */

typedef struct { const u8 *ptr; size_t len; } bytes;

static bytes cstr(const char *s) {
    size_t n = 0;
    while (s[n]) n++;
    return (bytes){(const u8 *)s, n};
}

static int bytes_eq(bytes a, const char *s) {
    bytes b = cstr(s);
    if (a.len != b.len) return 0;
    for (size_t i = 0; i < a.len; i++) if (a.ptr[i] != b.ptr[i]) return 0;
    return 1;
}

/* A growable buffer on the heap; only the most recent buffer may grow. */
typedef struct { u8 *ptr; size_t len, cap; } buf;

static void buf_put(buf *b, const u8 *p, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = (b->cap ? b->cap * 2 : 64);
        while (cap < b->len + n) cap *= 2;
        b->ptr = cabi_realloc(b->ptr, b->len, 1, cap);
        b->cap = cap;
    }
    memcpy(b->ptr + b->len, p, n);
    b->len += n;
}

static void buf_str(buf *b, const char *s) { bytes t = cstr(s); buf_put(b, t.ptr, t.len); }
static void buf_bytes(buf *b, bytes t) { buf_put(b, t.ptr, t.len); }

static void buf_int(buf *b, i64 v) {
    u8 digits[24];
    int n = 0;
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    do { digits[n++] = (u8)('0' + u % 10); u /= 10; } while (u);
    if (v < 0) buf_put(b, (const u8 *)"-", 1);
    while (n) buf_put(b, &digits[--n], 1);
}

static bytes buf_view(buf *b) { return (bytes){b->ptr, b->len}; }

/* ---- results of exports -------------------------------------------------- */

static u32 ret_area[8];  /* the largest result (handle-channel-open) is 32 bytes */

static void put_option(u8 *at, const bytes *value) {
    at[0] = value != 0;
    if (value) {
        *(u32 *)(at + 4) = (u32)(size_t)value->ptr;
        *(u32 *)(at + 8) = (u32)value->len;
    }
}

/* result<tuple<option<json>>, string>: ok(state) */
static u8 *ok_state(const bytes *state) {
    u8 *r = (u8 *)ret_area;
    r[0] = 0;
    put_option(r + 4, state);
    return r;
}

/* result<tuple<option<json>, tuple<json>>, string>: ok((state, (reply,))) */
static u8 *ok_reply(const bytes *state, bytes reply) {
    u8 *r = ok_state(state);
    *(u32 *)(r + 16) = (u32)(size_t)reply.ptr;
    *(u32 *)(r + 20) = (u32)reply.len;
    return r;
}

/* result<tuple<option<json>, tuple<channel-accept>>, string> */
static u8 *ok_accept(const bytes *state, int accepted, const bytes *message) {
    u8 *r = ok_state(state);
    r[16] = accepted != 0;
    put_option(r + 20, message);
    return r;
}

/* err(message), for every export */
static u8 *err_bytes(bytes message) {
    u8 *r = (u8 *)ret_area;
    r[0] = 1;
    *(u32 *)(r + 4) = (u32)(size_t)message.ptr;
    *(u32 *)(r + 8) = (u32)message.len;
    return r;
}

static u8 *err(const char *message) { return err_bytes(cstr(message)); }

/* An option<json> parameter as (present, bytes). */
#define STATE_PARAM(disc, ptr, len) ((disc) ? &(bytes){(const u8 *)(ptr), (size_t)(len)} : (const bytes *)0)

/* ---- imports: message-server-host -------------------------------------------- */

#define HOST "theater:simple/message-server-host"
IMPORT(HOST, "send") void host_send(const u8 *, size_t, const u8 *, size_t, u32 *);
IMPORT(HOST, "request") void host_request(const u8 *, size_t, const u8 *, size_t, u32 *);
IMPORT(HOST, "open-channel") void host_open_channel(const u8 *, size_t, const u8 *, size_t, u32 *);
IMPORT(HOST, "send-on-channel") void host_send_on_channel(const u8 *, size_t, const u8 *, size_t, u32 *);
IMPORT(HOST, "close-channel") void host_close_channel(const u8 *, size_t, u32 *);

/* Each host call returns result<X, string>: 0 on ok (X in *out if asked), else 1
 * with the error message in *out. */
static int host_result(const u32 *r, bytes *out) {
    if (out) *out = (bytes){(const u8 *)(size_t)r[1], r[2]};
    return ((const u8 *)r)[0];
}

static int send_on_channel(bytes channel, bytes msg, bytes *error) {
    u32 r[3];
    host_send_on_channel(channel.ptr, channel.len, msg.ptr, msg.len, r);
    return host_result(r, error);
}

static int request(bytes actor, bytes msg, bytes *reply_or_error) {
    u32 r[3];
    host_request(actor.ptr, actor.len, msg.ptr, msg.len, r);
    return host_result(r, reply_or_error);
}

/* ---- imports: message-context (wit/theater.wit; build for the theater-actor world) ---- */

#define CONTEXT "theater:simple/message-context"
IMPORT(CONTEXT, "current-channel") void host_current_channel(u32 *);
IMPORT(CONTEXT, "current-actor") void host_current_actor(u32 *);

/* Inside handle-channel-open: 1 with the channel's id and its opener ("external" for a client). */
static int current_channel(bytes *channel, bytes *opener) {
    u32 r[5];
    host_current_channel(r);
    if (!((const u8 *)r)[0]) return 0;
    *channel = (bytes){(const u8 *)(size_t)r[1], r[2]};
    *opener = (bytes){(const u8 *)(size_t)r[3], r[4]};
    return 1;
}

/* The id of the actor whose handler is running. */
static bytes current_actor(void) {
    u32 r[2];
    host_current_actor(r);
    return (bytes){(const u8 *)(size_t)r[0], r[1]};
}

/* ---- a tiny JSON reader ---------------------------------------------------- */

static size_t json_ws(bytes j, size_t i) {
    while (i < j.len && (j.ptr[i] == ' ' || j.ptr[i] == '\t' || j.ptr[i] == '\n' || j.ptr[i] == '\r')) i++;
    return i;
}

static int is_digit(u8 c) { return c >= '0' && c <= '9'; }

/* Index just past the literal or number starting at i, or 0 when it is neither (JSON's grammar). */
static size_t json_scalar(bytes j, size_t i) {
    static const char *const words[] = {"true", "false", "null"};
    for (int w = 0; w < 3; w++) {
        bytes word = cstr(words[w]);
        if (j.len - i >= word.len && bytes_eq((bytes){j.ptr + i, word.len}, words[w])) return i + word.len;
    }
    if (i < j.len && j.ptr[i] == '-') i++;
    if (i >= j.len || !is_digit(j.ptr[i])) return 0;
    if (j.ptr[i] == '0') i++;
    else while (i < j.len && is_digit(j.ptr[i])) i++;
    if (i < j.len && j.ptr[i] == '.') {
        if (++i >= j.len || !is_digit(j.ptr[i])) return 0;
        while (i < j.len && is_digit(j.ptr[i])) i++;
    }
    if (i < j.len && (j.ptr[i] == 'e' || j.ptr[i] == 'E')) {
        i++;
        if (i < j.len && (j.ptr[i] == '+' || j.ptr[i] == '-')) i++;
        if (i >= j.len || !is_digit(j.ptr[i])) return 0;
        while (i < j.len && is_digit(j.ptr[i])) i++;
    }
    return i;
}

static int is_hex(u8 c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/* Index just past the value starting at i (after whitespace), or 0 when malformed. */
static size_t json_skip(bytes j, size_t i, int depth) {
    i = json_ws(j, i);
    if (i >= j.len || depth > 64) return 0;
    u8 c = j.ptr[i];
    if (c == '"') {
        for (i++; i < j.len; i++) {
            u8 d = j.ptr[i];
            if (d == '"') return i + 1;
            if (d < 0x20) return 0;
            if (d != '\\') continue;
            if (++i >= j.len) return 0;
            d = j.ptr[i];
            if (d == 'u') {
                if (j.len - i < 5 || !is_hex(j.ptr[i + 1]) || !is_hex(j.ptr[i + 2]) || !is_hex(j.ptr[i + 3])
                    || !is_hex(j.ptr[i + 4])) return 0;
                i += 4;
            } else if (d != '"' && d != '\\' && d != '/' && d != 'b' && d != 'f' && d != 'n' && d != 'r'
                       && d != 't') {
                return 0;
            }
        }
        return 0;
    }
    if (c == '{' || c == '[') {
        u8 close = c == '{' ? '}' : ']';
        i = json_ws(j, i + 1);
        if (i < j.len && j.ptr[i] == close) return i + 1;
        for (;;) {
            if (c == '{') {
                i = json_ws(j, i);
                if (i >= j.len || j.ptr[i] != '"') return 0;
                i = json_skip(j, i, depth + 1);
                if (!i) return 0;
                i = json_ws(j, i);
                if (i >= j.len || j.ptr[i] != ':') return 0;
                i++;
            }
            i = json_skip(j, i, depth + 1);
            if (!i) return 0;
            i = json_ws(j, i);
            if (i >= j.len) return 0;
            if (j.ptr[i] == close) return i + 1;
            if (j.ptr[i] != ',') return 0;
            i++;
        }
    }
    return json_scalar(j, i);
}

/* Is `j` one well-formed JSON value?  (Strings are checked for escapes, not for UTF-8.) */
static int json_valid(bytes j) {
    size_t end = json_skip(j, 0, 0);
    return end && json_ws(j, end) == j.len;
}

static int json_is_object(bytes j) {
    size_t i = json_ws(j, 0);
    return i < j.len && j.ptr[i] == '{';
}

/* The raw value of `key` in the top-level object `j`; 0 when absent. */
static int json_get(bytes j, const char *key, bytes *value) {
    size_t i = json_ws(j, 0);
    if (i >= j.len || j.ptr[i] != '{') return 0;
    i = json_ws(j, i + 1);
    if (i < j.len && j.ptr[i] == '}') return 0;
    for (;;) {
        i = json_ws(j, i);
        size_t kstart = i;
        size_t kend = json_skip(j, i, 1);
        if (!kend || j.ptr[kstart] != '"') return 0;
        i = json_ws(j, kend);
        if (i >= j.len || j.ptr[i] != ':') return 0;
        size_t vstart = json_ws(j, i + 1);
        size_t vend = json_skip(j, vstart, 1);
        if (!vend) return 0;
        if (bytes_eq((bytes){j.ptr + kstart + 1, kend - kstart - 2}, key)) {
            *value = (bytes){j.ptr + vstart, vend - vstart};
            return 1;
        }
        i = json_ws(j, vend);
        if (i >= j.len || j.ptr[i] != ',') return 0;
        i++;
    }
}

/* A JSON integer token (no fraction, no exponent) that fits in 62 bits. */
static int json_int(bytes v, i64 *out) {
    size_t i = 0;
    int neg = 0;
    if (i < v.len && v.ptr[i] == '-') { neg = 1; i++; }
    if (i >= v.len) return 0;
    i64 n = 0;
    for (; i < v.len; i++) {
        if (v.ptr[i] < '0' || v.ptr[i] > '9') return 0;
        if (n > (1ll << 58)) return 0;
        n = n * 10 + (v.ptr[i] - '0');
    }
    *out = neg ? -n : n;
    return 1;
}

/* The contents of a JSON string token without escapes in it. */
static int json_plain_string(bytes v, bytes *out) {
    if (v.len < 2 || v.ptr[0] != '"' || v.ptr[v.len - 1] != '"') return 0;
    for (size_t i = 1; i + 1 < v.len; i++) if (v.ptr[i] == '\\') return 0;
    *out = (bytes){v.ptr + 1, v.len - 2};
    return 1;
}

/* Iterate the members of the object `j`: start with *at = 0; 1 with the next key token (quotes
 * included) and raw value, 0 at the end or when malformed. */
static int json_next(bytes j, size_t *at, bytes *key, bytes *value) {
    size_t i = json_ws(j, *at);
    if (*at == 0) {
        if (i >= j.len || j.ptr[i] != '{') return 0;
        i = json_ws(j, i + 1);
    } else if (i < j.len && j.ptr[i] == ',') {
        i = json_ws(j, i + 1);
    } else {
        return 0;
    }
    if (i >= j.len || j.ptr[i] != '"') return 0;
    size_t kend = json_skip(j, i, 1);
    if (!kend) return 0;
    *key = (bytes){j.ptr + i, kend - i};
    i = json_ws(j, kend);
    if (i >= j.len || j.ptr[i] != ':') return 0;
    size_t vstart = json_ws(j, i + 1);
    size_t vend = json_skip(j, vstart, 1);
    if (!vend) return 0;
    *value = (bytes){j.ptr + vstart, vend - vstart};
    *at = vend;
    return 1;
}

/* ---- UTF-8 and JSON strings ------------------------------------------------ */

static void buf_utf8(buf *b, u32 cp) {
    u8 out[4];
    size_t n;
    if (cp < 0x80) { out[0] = (u8)cp; n = 1; }
    else if (cp < 0x800) { out[0] = (u8)(0xC0 | cp >> 6); out[1] = (u8)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) {
        out[0] = (u8)(0xE0 | cp >> 12); out[1] = (u8)(0x80 | ((cp >> 6) & 0x3F)); out[2] = (u8)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        out[0] = (u8)(0xF0 | cp >> 18); out[1] = (u8)(0x80 | ((cp >> 12) & 0x3F));
        out[2] = (u8)(0x80 | ((cp >> 6) & 0x3F)); out[3] = (u8)(0x80 | (cp & 0x3F));
        n = 4;
    }
    buf_put(b, out, n);
}

/* The code point at s[i] into *cp; returns how many bytes it took (an invalid sequence: 1 byte, U+FFFD). */
static size_t utf8_next(bytes s, size_t i, u32 *cp) {
    u8 c = s.ptr[i];
    size_t n = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    static const u32 least[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (n == 1) { *cp = c; return 1; }
    if (n == 0 || s.len - i < n) { *cp = 0xFFFD; return 1; }
    u32 v = c & (0x7F >> n);
    for (size_t k = 1; k < n; k++) {
        if ((s.ptr[i + k] & 0xC0) != 0x80) { *cp = 0xFFFD; return 1; }
        v = v << 6 | (s.ptr[i + k] & 0x3F);
    }
    if (v < least[n] || v > 0x10FFFF || (v >= 0xD800 && v < 0xE000)) { *cp = 0xFFFD; return 1; }
    *cp = v;
    return n;
}

static int utf8_valid(bytes s) {
    u32 cp;
    for (size_t i = 0, n; i < s.len; i += n) {
        n = utf8_next(s, i, &cp);
        if (n == 1 && s.ptr[i] >= 0x80) return 0;
    }
    return 1;
}

static void buf_hex4(buf *b, u32 v) {
    static const char hex[] = "0123456789abcdef";
    u8 out[6] = {'\\', 'u', (u8)hex[v >> 12 & 15], (u8)hex[v >> 8 & 15], (u8)hex[v >> 4 & 15], (u8)hex[v & 15]};
    buf_put(b, out, 6);
}

/* `s` (UTF-8; invalid bytes become U+FFFD) as a JSON string token, escaped as Python's json.dumps
 * escapes it (ensure_ascii: everything outside ' '..'~' as \uXXXX). */
static void buf_json_string(buf *b, bytes s) {
    buf_str(b, "\"");
    u32 cp;
    for (size_t i = 0, n; i < s.len; i += n) {
        n = utf8_next(s, i, &cp);
        const char *esc = cp == '"' ? "\\\"" : cp == '\\' ? "\\\\" : cp == '\n' ? "\\n" : cp == '\r' ? "\\r"
                          : cp == '\t' ? "\\t" : cp == '\b' ? "\\b" : cp == '\f' ? "\\f" : 0;
        if (esc) buf_str(b, esc);
        else if (cp >= 0x20 && cp < 0x7F) { u8 c = (u8)cp; buf_put(b, &c, 1); }
        else if (cp >= 0x10000) { buf_hex4(b, 0xD800 + ((cp - 0x10000) >> 10)); buf_hex4(b, 0xDC00 + (cp & 0x3FF)); }
        else buf_hex4(b, cp);
    }
    buf_str(b, "\"");
}

static u32 hex4(const u8 *p) {
    u32 v = 0;
    for (int k = 0; k < 4; k++) v = v << 4 | (u32)(is_digit(p[k]) ? p[k] - '0' : (p[k] | 0x20) - 'a' + 10);
    return v;
}

/* The UTF-8 text of the JSON string token `tok` (escapes resolved; a lone surrogate becomes U+FFFD). */
static int json_string_value(bytes tok, bytes *out) {
    if (tok.len < 2 || tok.ptr[0] != '"' || json_skip(tok, 0, 0) != tok.len) return 0;
    buf b = {0};
    for (size_t i = 1; i + 1 < tok.len; i++) {
        u8 c = tok.ptr[i];
        if (c != '\\') { buf_put(&b, &c, 1); continue; }
        c = tok.ptr[++i];
        if (c != 'u') {
            u8 plain = c == 'b' ? '\b' : c == 'f' ? '\f' : c == 'n' ? '\n' : c == 'r' ? '\r' : c == 't' ? '\t' : c;
            buf_put(&b, &plain, 1);
            continue;
        }
        u32 cp = hex4(tok.ptr + i + 1);
        i += 4;
        if (cp >= 0xD800 && cp < 0xDC00 && i + 6 < tok.len && tok.ptr[i + 1] == '\\' && tok.ptr[i + 2] == 'u') {
            u32 low = hex4(tok.ptr + i + 3);
            if (low >= 0xDC00 && low < 0xE000) { cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00); i += 6; }
        }
        if (cp >= 0xD800 && cp < 0xE000) cp = 0xFFFD;
        buf_utf8(&b, cp);
    }
    *out = buf_view(&b);
    return 1;
}

#endif
