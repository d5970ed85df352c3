//! hookline example rule "seed", in Zig: the door-lock scenario's default routing.
//!
//!   message.publish on devices/+/state   -> Kafka topic message_state   (default key)
//!   message.acked   on devices/+/command -> Kafka topic message_command (default key)
//!
//! Built as a guest ABI v1 module (exportRuleV1), to show that v1 rules keep building;
//! new rules use exportRule (v2).
//!
//! Build: python3 -m ziglang build-exe -target wasm32-freestanding -fno-entry \
//!   -O ReleaseSmall -fstrip --dep hookline -Mroot=seed.zig \
//!   -Mhookline=../../../wasm-sdk/zig/hookline.zig -femit-bin=seed.wasm
const hl = @import("hookline");

fn init() hl.Error!void {
    _ = try hl.subscribe(.message_publish, "devices/+/state"); // index 0
    _ = try hl.subscribe(.message_acked, "devices/+/command"); // index 1
}

fn onEvent(hook: hl.Hook, subscription: u32) hl.Error!void {
    _ = hook;
    _ = try hl.route(if (subscription == 0) "message_state" else "message_command");
}

comptime {
    hl.exportRuleV1(init, onEvent);
}
