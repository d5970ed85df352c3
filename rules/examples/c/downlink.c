/* hookline example rule "downlink", in C (guest ABI v2): the door-lock scenario's
 * commands through Kafka.
 *
 *   kafka.record on Kafka topic device_commands -> MQTT publish of the record's value
 *                                                  to devices/{key}/command, QoS 1
 *
 * A record whose key is missing, empty, longer than 4096 bytes or not one topic level
 * ('/', '+', '#') is rejected (negative result): counted, nothing published. A key
 * that is not UTF-8 makes the host refuse the topic (HL_ERR_PUBLISH), which rejects too.
 *
 * Build: clang-14 --target=wasm32 -O2 -nostdlib -mbulk-memory -fno-builtin \
 *            -I../../../wasm-sdk/c -Wl,--no-entry -Wl,--strip-all -o downlink.wasm downlink.c
 */
#include "hookline.h"

#define PREFIX "devices/"
#define PREFIX_LEN 8
#define SUFFIX "/command"
#define SUFFIX_LEN 8
#define MAX_KEY 4096

/* "devices/" + key + "/command"; static, not on the 64 KiB shadow stack. */
static char topic[PREFIX_LEN + MAX_KEY + SUFFIX_LEN];

static int32_t init(void) {
    return hl_subscribe("kafka.record", "device_commands"); /* index 0 */
}

static int32_t on_event(int32_t hook, int32_t subscription) {
    (void)hook;
    (void)subscription;
    int32_t i;
    for (i = 0; i < PREFIX_LEN; i++) topic[i] = PREFIX[i];
    int32_t key_len = hl_read(HL_FIELD_KEY, topic + PREFIX_LEN, MAX_KEY);
    if (key_len < 0) return key_len;
    if (key_len == 0 || key_len > MAX_KEY) return HL_ERR_UNKNOWN; /* no lock id: reject */
    for (i = 0; i < key_len; i++) {
        char c = topic[PREFIX_LEN + i];
        if (c == '/' || c == '+' || c == '#') return HL_ERR_UNKNOWN;
    }
    for (i = 0; i < SUFFIX_LEN; i++) topic[PREFIX_LEN + key_len + i] = SUFFIX[i];
    return hookline_publish(topic, PREFIX_LEN + key_len + SUFFIX_LEN, 1, 0, (const void *)0, HL_RECORD_VALUE);
}

HOOKLINE_RULE(init, on_event)
