/* hookline example rule "battery_alarm", in C: content-based routing.
 *
 * On message.publish on devices/+/state, reads the lock's JSON state, e.g.
 *   {"process_id":"7802441525528958","action":"unlock","battery":83.4,"lock_state":1,...}
 * and routes the event to Kafka topic alarm_state, keyed by the client id, when
 * battery < 20 or lock_state is not 0 or 1. Otherwise, and for a payload that cannot
 * be read (see scan_number), it routes nothing. It never rejects an event for its
 * content: a malformed payload just raises no alarm.
 *
 * Build: clang-14 --target=wasm32 -O2 -nostdlib -mbulk-memory -fno-builtin \
 *            -I../../../wasm-sdk/c -Wl,--no-entry -Wl,--strip-all \
 *            -o battery_alarm.wasm battery_alarm.c
 */
#include "hookline.h"

#define BUF_CAP 4096
#define BATTERY_THRESHOLD 20
/* Integer parts saturate here: any larger value compares the same. */
#define INT_CAP 1000000

static hl_u8 payload[BUF_CAP];
static hl_u8 client_id[BUF_CAP];

/* A number as the scan sees it: sign, integer part, whether the fraction is zero. */
struct number {
    int negative;
    int32_t integer;
    int fraction_zero;
};

/* Finds the first occurrence of `key` (e.g. "\"battery\":") in buf[0..len), skips
 * spaces/tabs, then reads a JSON-ish number -?[0-9]+(\.[0-9]+)? that must be followed
 * by ',', '}' or whitespace. Returns 1 and fills *out, or 0 (missing or malformed). */
static int scan_number(const hl_u8 *buf, int32_t len, const char *key, struct number *out) {
    int32_t key_len = hl_strlen(key);
    int32_t i = -1;
    for (int32_t at = 0; at + key_len <= len; at++) {
        int32_t k = 0;
        while (k < key_len && buf[at + k] == (hl_u8)key[k]) k++;
        if (k == key_len) { i = at + key_len; break; }
    }
    if (i < 0) return 0;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t')) i++;
    out->negative = 0;
    out->integer = 0;
    out->fraction_zero = 1;
    if (i < len && buf[i] == '-') { out->negative = 1; i++; }
    int32_t digits = 0;
    while (i < len && buf[i] >= '0' && buf[i] <= '9') {
        out->integer = out->integer * 10 + (buf[i] - '0');
        if (out->integer > INT_CAP) out->integer = INT_CAP;
        i++; digits++;
    }
    if (digits == 0) return 0;
    if (i < len && buf[i] == '.') {
        i++;
        digits = 0;
        while (i < len && buf[i] >= '0' && buf[i] <= '9') {
            if (buf[i] != '0') out->fraction_zero = 0;
            i++; digits++;
        }
        if (digits == 0) return 0;
    }
    if (i >= len) return 0;
    hl_u8 c = buf[i];
    return c == ',' || c == '}' || c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int32_t init(void) {
    return hl_subscribe("message.publish", "devices/+/state");
}

static int32_t on_event(int32_t hook, int32_t subscription) {
    (void)hook; (void)subscription;
    int32_t len = hl_read_all(HL_FIELD_PAYLOAD, payload, BUF_CAP);
    if (len == HL_ERR_BUFFER_TOO_SMALL) return 0; /* larger than we inspect: no alarm */
    if (len < 0) return len;                      /* host error: reject the event */
    struct number battery, lock_state;
    if (!scan_number(payload, len, "\"battery\":", &battery)) return 0;
    if (!scan_number(payload, len, "\"lock_state\":", &lock_state)) return 0;
    int low = battery.negative || battery.integer < BATTERY_THRESHOLD;
    int lock_ok = lock_state.fraction_zero &&
                  (lock_state.integer == 0 || (lock_state.integer == 1 && !lock_state.negative));
    if (!low && lock_ok) return 0;
    int32_t id_len = hl_read_all(HL_FIELD_CLIENT_ID, client_id, BUF_CAP);
    if (id_len == HL_ERR_BUFFER_TOO_SMALL) return 0;
    if (id_len < 0) return id_len;
    return hl_route_key("alarm_state", client_id, id_len);
}

HOOKLINE_RULE(init, on_event)
