//! hookline example rule "battery_alarm", in Zig: content-based routing.
//!
//! On message.publish on devices/+/state, reads the lock's JSON state, e.g.
//!   {"process_id":"7802441525528958","action":"unlock","battery":83.4,"lock_state":1,...}
//! and routes the event to Kafka topic alarm_state, keyed by the client id, when
//! battery < 20 or lock_state is not 0 or 1. Otherwise, and for a payload that cannot
//! be read (see scanNumber), it routes nothing and returns 0.
//!
//! Build: python3 -m ziglang build-exe -target wasm32-freestanding -fno-entry \
//!   -O ReleaseSmall -fstrip --dep hookline -Mroot=battery_alarm.zig \
//!   -Mhookline=../../../wasm-sdk/zig/hookline.zig -femit-bin=battery_alarm.wasm
const hl = @import("hookline");

const buf_cap = 4096;
const battery_threshold = 20;
/// Integer parts saturate here: any larger value compares the same.
const int_cap = 1_000_000;

var payload_buf: [buf_cap]u8 = undefined;
var client_id_buf: [buf_cap]u8 = undefined;

/// A number as the scan sees it: sign, integer part, whether the fraction is zero.
const Number = struct { negative: bool, integer: u32, fraction_zero: bool };

fn isDigit(c: u8) bool {
    return c >= '0' and c <= '9';
}

/// Finds the first `key` (e.g. "\"battery\":") in `buf`, skips spaces/tabs, then reads
/// a number -?[0-9]+(\.[0-9]+)? that must be followed by ',', '}' or whitespace.
/// Returns null when the key is missing or the number malformed.
fn scanNumber(buf: []const u8, key: []const u8) ?Number {
    var i: usize = blk: {
        var at: usize = 0;
        while (at + key.len <= buf.len) : (at += 1) {
            var k: usize = 0;
            while (k < key.len and buf[at + k] == key[k]) k += 1;
            if (k == key.len) break :blk at + key.len;
        }
        return null;
    };
    while (i < buf.len and (buf[i] == ' ' or buf[i] == '\t')) i += 1;
    var n = Number{ .negative = false, .integer = 0, .fraction_zero = true };
    if (i < buf.len and buf[i] == '-') {
        n.negative = true;
        i += 1;
    }
    var digits: usize = 0;
    while (i < buf.len and isDigit(buf[i])) : (i += 1) {
        n.integer = @min(n.integer * 10 + (buf[i] - '0'), int_cap);
        digits += 1;
    }
    if (digits == 0) return null;
    if (i < buf.len and buf[i] == '.') {
        i += 1;
        digits = 0;
        while (i < buf.len and isDigit(buf[i])) : (i += 1) {
            if (buf[i] != '0') n.fraction_zero = false;
            digits += 1;
        }
        if (digits == 0) return null;
    }
    if (i >= buf.len) return null;
    return switch (buf[i]) {
        ',', '}', ' ', '\t', '\r', '\n' => n,
        else => null,
    };
}

fn init() hl.Error!void {
    _ = try hl.subscribe(.message_publish, "devices/+/state");
}

fn onEvent(hook: hl.Hook, subscription: u32) hl.Error!void {
    _ = hook;
    _ = subscription;
    // Larger than we inspect: no alarm.
    const payload = hl.bytes(.payload, &payload_buf) catch |e| switch (e) {
        error.BufferTooSmall => return,
        else => return e,
    };
    const battery = scanNumber(payload, "\"battery\":") orelse return;
    const lock_state = scanNumber(payload, "\"lock_state\":") orelse return;
    const low = battery.negative or battery.integer < battery_threshold;
    const lock_ok = lock_state.fraction_zero and
        (lock_state.integer == 0 or (lock_state.integer == 1 and !lock_state.negative));
    if (!low and lock_ok) return;
    const client_id = hl.bytes(.client_id, &client_id_buf) catch |e| switch (e) {
        error.BufferTooSmall => return,
        else => return e,
    };
    _ = try hl.routeWithKey("alarm_state", client_id);
}

comptime {
    hl.exportRule(init, onEvent);
}
