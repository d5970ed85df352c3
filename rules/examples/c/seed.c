/* hookline example rule "seed", in C: the door-lock scenario's default routing.
 *
 *   message.publish on devices/+/state   -> Kafka topic message_state   (default key)
 *   message.acked   on devices/+/command -> Kafka topic message_command (default key)
 *
 * Built as a guest ABI v1 module (HOOKLINE_RULE_V1), to show that v1 rules keep
 * building; new rules use HOOKLINE_RULE (v2).
 *
 * Build: clang-14 --target=wasm32 -O2 -nostdlib -mbulk-memory -fno-builtin \
 *            -I../../../wasm-sdk/c -Wl,--no-entry -Wl,--strip-all -o seed.wasm seed.c
 */
#include "hookline.h"

static int32_t init(void) {
    int32_t rc = hl_subscribe("message.publish", "devices/+/state");   /* index 0 */
    if (rc < 0) return rc;
    return hl_subscribe("message.acked", "devices/+/command");          /* index 1 */
}

static int32_t on_event(int32_t hook, int32_t subscription) {
    (void)hook;
    return hl_route(subscription == 0 ? "message_state" : "message_command");
}

HOOKLINE_RULE_V1(init, on_event)
