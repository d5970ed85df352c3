//! hookline example rule "battery_alarm", in Zig: content-based routing.
//!
//! Locks publish their state as JSON on devices/<id>/state, e.g.
//!   {"process_id":"7802441525528958","action":"unlock","battery":83.4,"lock_state":1,...}
//! This rule copies the event to Kafka topic alarm_state when the battery is low (< 20)
//! or lock_state is anything but 0 or 1, and routes nothing otherwise.
//!
//! hl.payloadF64 (ABI 2.1) lets the host parse the JSON: no buffer, no parser here, and
//! every language reads the payload exactly alike.
//!
//! Build: python3 -m ziglang build-exe -target wasm32-freestanding -fno-entry \
//!   -O ReleaseSmall -fstrip -rdynamic --dep hookline -Mroot=battery_alarm.zig \
//!   -Mhookline=../../../wasm-sdk/zig/hookline.zig -femit-bin=battery_alarm.wasm
const hl = @import("hookline");

const battery_low = 20.0;

fn init() hl.Error!void {
    _ = try hl.subscribe(.message_publish, "devices/+/state");
}

fn onEvent(hook: hl.Hook, subscription: u32) hl.Error!void {
    _ = hook; // a single subscription: nothing to tell apart
    _ = subscription;
    // A payload we cannot judge (not JSON, a field missing or not a number) raises no
    // alarm, but it is no reason to reject the event: `catch return` accepts it.
    const battery = hl.payloadF64("battery") catch return;
    const lock_state = hl.payloadF64("lock_state") catch return;
    if (battery < battery_low or (lock_state != 0 and lock_state != 1)) {
        // Default key (the client id): one device's alarms stay in order. Only a failed
        // route is an error, which rejects the event.
        _ = try hl.route("alarm_state");
    }
}

comptime {
    hl.exportRule(init, onEvent);
}
