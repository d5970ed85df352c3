//! hookline example rule "downlink", in Zig (guest ABI v2): the door-lock scenario's
//! commands through Kafka.
//!
//!   kafka.record on Kafka topic device_commands -> MQTT publish of the record's value
//!                                                  to devices/{key}/command, QoS 1
//!
//! A record whose key is missing, empty, longer than 4096 bytes or not one topic level
//! ('/', '+', '#') is rejected (negative result): counted, nothing published. A key that
//! is not UTF-8 makes the host refuse the topic (error.InvalidPublish), which rejects too.
//!
//! Build: python3 -m ziglang build-exe -target wasm32-freestanding -fno-entry \
//!   -O ReleaseSmall -fstrip -rdynamic --dep hookline -Mroot=downlink.zig \
//!   -Mhookline=../../../wasm-sdk/zig/hookline.zig -femit-bin=downlink.wasm
const hl = @import("hookline");

const prefix = "devices/";
const suffix = "/command";
const max_key = 4096;

/// "devices/" + key + "/command"; a global, not on the stack.
var topic: [prefix.len + max_key + suffix.len]u8 = undefined;

fn init() hl.Error!void {
    _ = try hl.subscribe(.kafka_record, "device_commands"); // index 0
}

fn onEvent(hook: hl.Hook, subscription: u32) hl.Error!void {
    _ = hook;
    _ = subscription;
    @memcpy(topic[0..prefix.len], prefix);
    const key = hl.bytes(.key, topic[prefix.len .. prefix.len + max_key]) catch |e| switch (e) {
        error.BufferTooSmall => return error.Rejected,
        else => return e,
    };
    if (key.len == 0) return error.Rejected; // no lock id
    for (key) |c| {
        if (c == '/' or c == '+' or c == '#') return error.Rejected;
    }
    const end = prefix.len + key.len + suffix.len;
    @memcpy(topic[prefix.len + key.len .. end], suffix);
    _ = try hl.publish(topic[0..end], .at_least_once, false);
}

comptime {
    hl.exportRule(init, onEvent);
}
