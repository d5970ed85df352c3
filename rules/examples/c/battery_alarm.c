/* hookline example rule "battery_alarm", in C: content-based routing.
 *
 * Locks publish their state as JSON on devices/<id>/state, e.g.
 *   {"process_id":"7802441525528958","action":"unlock","battery":83.4,"lock_state":1,...}
 * This rule copies the event to Kafka topic alarm_state when the battery is low
 * (< 20) or lock_state is anything but 0 or 1, and routes nothing otherwise.
 *
 * hl_payload_f64 (ABI 2.1) lets the host parse the JSON: no buffer, no parser here,
 * and every language reads the payload exactly alike.
 *
 * Build: clang-14 --target=wasm32 -O2 -nostdlib -mbulk-memory -fno-builtin \
 *            -I../../../wasm-sdk/c -Wl,--no-entry -Wl,--strip-all \
 *            -o battery_alarm.wasm battery_alarm.c
 */
#include "hookline.h"

#define BATTERY_LOW 20.0

static int32_t init(void) {
    return hl_subscribe("message.publish", "devices/+/state");
}

static int32_t on_event(int32_t hook, int32_t subscription) {
    (void)hook; (void)subscription; /* a single subscription: nothing to tell apart */
    double battery, lock_state;
    /* A payload we cannot judge (not JSON, a field missing or not a number) raises no
     * alarm, but it is no reason to reject the event either: accept, route nothing. */
    if (hl_payload_f64("battery", &battery) < 0) return 0;
    if (hl_payload_f64("lock_state", &lock_state) < 0) return 0;
    if (battery < BATTERY_LOW || (lock_state != 0.0 && lock_state != 1.0)) {
        /* Default key (the client id): one device's alarms stay in order. Only a
         * failed route is returned as an error, which rejects the event. */
        return hl_route("alarm_state");
    }
    return 0;
}

HOOKLINE_RULE(init, on_event)
