//! hookline.zig: Zig SDK for hookline routing rules, guest ABI v1 (see ../ABI.md).
//!
//! One file, no allocator, no std. Target `wasm32-freestanding`. A rule declares its
//! subscriptions in `init`, decides events in `onEvent`, and exports the ABI through
//! `hookline.exportRule`:
//!
//!     const hl = @import("hookline");
//!     fn init() hl.Error!void {
//!         _ = try hl.subscribe(.message_publish, "devices/+/state");
//!     }
//!     fn onEvent(hook: hl.Hook, subscription: u32) hl.Error!void {
//!         _ = hook; _ = subscription;
//!         _ = try hl.route("message_state");
//!     }
//!     comptime { hl.exportRule(init, onEvent); }
//!
//! Build (zig from `pip install ziglang`, tested with 0.17.1):
//!
//!     python3 -m ziglang build-exe -target wasm32-freestanding -fno-entry -O ReleaseSmall \
//!         -fstrip --stack 65536 \
//!         --export=hookline_abi_v1 --export=hookline_init --export=hookline_on_event \
//!         --dep hookline -Mroot=my_rule.zig -Mhookline=path/to/hookline.zig \
//!         -femit-bin=my_rule.wasm
//!
//! The `--export=` flags (or `-rdynamic`) are required: for wasm, Zig keeps `@export`ed
//! symbols out of the module's export section unless told, and a module exporting only
//! `memory` is rejected by the host. `--stack 65536` keeps an instance at 2 pages instead
//! of the 17 that Zig's default 1 MiB stack needs. (`@export(&f, ...)` and `callconv(.c)`
//! need Zig 0.14 or newer; with an older Zig write the three exports by hand with
//! `export fn` and call `runInit` / `runOnEvent` from them.)

/// The raw host imports (module `hookline`), exactly as in ABI.md.
pub const raw = struct {
    pub extern "hookline" fn subscribe(hook_ptr: [*]const u8, hook_len: i32, filter_ptr: [*]const u8, filter_len: i32) i32;
    pub extern "hookline" fn event_read(field: i32, dst_ptr: [*]u8, dst_len: i32) i32;
    pub extern "hookline" fn event_qos() i32;
    pub extern "hookline" fn route(topic_ptr: [*]const u8, topic_len: i32, key_ptr: [*]const u8, key_len: i32) i32;
    pub extern "hookline" fn route_header(name_ptr: [*]const u8, name_len: i32, value_ptr: [*]const u8, value_len: i32) i32;
    pub extern "hookline" fn log(level: i32, ptr: [*]const u8, len: i32) void;
    pub extern "hookline" fn config_get(key_ptr: [*]const u8, key_len: i32, dst_ptr: [*]u8, dst_len: i32) i32;
};

/// The eight hooks, with their ABI codes.
pub const Hook = enum(i32) {
    client_connected = 0,
    client_disconnected = 1,
    session_subscribed = 2,
    session_unsubscribed = 3,
    message_publish = 4,
    message_delivered = 5,
    message_acked = 6,
    access_denied = 7,

    /// The hook's name as `subscribe` expects it.
    pub fn name(self: Hook) []const u8 {
        return switch (self) {
            .client_connected => "client.connected",
            .client_disconnected => "client.disconnected",
            .session_subscribed => "session.subscribed",
            .session_unsubscribed => "session.unsubscribed",
            .message_publish => "message.publish",
            .message_delivered => "message.delivered",
            .message_acked => "message.acked",
            .access_denied => "access.denied",
        };
    }
};

/// `event_read` field codes.
pub const Field = enum(i32) { topic = 0, client_id = 1, username = 2, payload = 3, from = 4, peer = 5 };

/// Log levels.
pub const Level = enum(i32) { err = 0, warn = 1, info = 2, debug = 3 };

/// The host's error codes (-1 .. -7), other negative codes (`Host`), and the SDK's own.
pub const Error = error{
    UnknownName, // -1
    InvalidFilter, // -2
    WrongTime, // -3
    OutOfBounds, // -4
    LimitReached, // -5: voids the event's decision when from route/route_header
    InvalidTopic, // -6: idem
    TooLong, // -7: idem
    Host, // another negative code (a newer host)
    BufferTooSmall, // -100: the field does not fit the buffer given
    UnknownHook, // -103: a hook code this SDK does not know
    Rejected, // 1: the rule declines (refuses loading, or rejects the event)
};

/// The non-zero value an export returns for `e`.
pub fn errorCode(e: Error) i32 {
    return switch (e) {
        error.UnknownName => -1,
        error.InvalidFilter => -2,
        error.WrongTime => -3,
        error.OutOfBounds => -4,
        error.LimitReached => -5,
        error.InvalidTopic => -6,
        error.TooLong => -7,
        error.Host => -99,
        error.BufferTooSmall => -100,
        error.UnknownHook => -103,
        error.Rejected => 1,
    };
}

fn check(rc: i32) Error!u32 {
    if (rc >= 0) return @intCast(rc);
    return switch (rc) {
        -1 => error.UnknownName,
        -2 => error.InvalidFilter,
        -3 => error.WrongTime,
        -4 => error.OutOfBounds,
        -5 => error.LimitReached,
        -6 => error.InvalidTopic,
        -7 => error.TooLong,
        else => error.Host,
    };
}

fn len32(n: usize) Error!i32 {
    if (n > 0x7fff_ffff) return error.TooLong;
    return @intCast(n);
}

/// During `init`: subscribe to `hook` and MQTT topic filter `filter`. Returns the
/// subscription index later passed to `onEvent`.
pub fn subscribe(hook: Hook, filter: []const u8) Error!u32 {
    const h = hook.name();
    return check(raw.subscribe(h.ptr, try len32(h.len), filter.ptr, try len32(filter.len)));
}

/// Copies up to `buf.len` bytes of `field`; returns the field's FULL length.
pub fn read(field: Field, buf: []u8) Error!usize {
    return check(raw.event_read(@intFromEnum(field), buf.ptr, try len32(buf.len)));
}

/// The whole of `field`, copied into `buf`; `error.BufferTooSmall` if it does not fit.
pub fn bytes(field: Field, buf: []u8) Error![]u8 {
    const n = try read(field, buf);
    if (n > buf.len) return error.BufferTooSmall;
    return buf[0..n];
}

/// QoS of the message (0..2); 0 for client events.
pub fn qos() Error!u8 {
    return @intCast(@min(try check(raw.event_qos()), 255));
}

/// Routes the current event to Kafka topic `topic` with the default key (the client
/// id). Returns the route's index.
pub fn route(topic: []const u8) Error!u32 {
    return check(raw.route(topic.ptr, try len32(topic.len), topic.ptr, -1));
}

/// Routes the current event to `topic` with record key `key` (empty = empty key).
pub fn routeWithKey(topic: []const u8, key: []const u8) Error!u32 {
    return check(raw.route(topic.ptr, try len32(topic.len), key.ptr, try len32(key.len)));
}

/// Adds a header to the most recent successful route.
pub fn header(name: []const u8, value: []const u8) Error!void {
    _ = try check(raw.route_header(name.ptr, try len32(name.len), value.ptr, try len32(value.len)));
}

/// Writes a line to the gateway's log (rate-limited by the host).
pub fn log(level: Level, message: []const u8) void {
    raw.log(@intFromEnum(level), message.ptr, @intCast(@min(message.len, 0x7fff_ffff)));
}

/// Runs a rule's `init` and turns the result into `hookline_init`'s return value.
pub fn runInit(comptime init: fn () Error!void) i32 {
    init() catch |e| return errorCode(e);
    return 0;
}

/// Runs a rule's `onEvent` and turns the result into `hookline_on_event`'s return value.
pub fn runOnEvent(comptime onEvent: fn (Hook, u32) Error!void, hook: i32, subscription: i32) i32 {
    if (hook < 0 or hook > @intFromEnum(Hook.access_denied)) return errorCode(error.UnknownHook);
    onEvent(@enumFromInt(hook), @bitCast(subscription)) catch |e| return errorCode(e);
    return 0;
}

/// Exports the ABI v1 functions (`hookline_abi_v1`, `hookline_init`,
/// `hookline_on_event`) wired to `init` and `onEvent`. Call it once from a `comptime`
/// block of the root file: `comptime { hookline.exportRule(init, onEvent); }`.
pub fn exportRule(
    comptime init: fn () Error!void,
    comptime onEvent: fn (Hook, u32) Error!void,
) void {
    const exports = struct {
        fn abi() callconv(.c) void {}
        fn initExport() callconv(.c) i32 {
            return runInit(init);
        }
        fn onEventExport(hook: i32, subscription: i32) callconv(.c) i32 {
            return runOnEvent(onEvent, hook, subscription);
        }
    };
    @export(&exports.abi, .{ .name = "hookline_abi_v1" });
    @export(&exports.initExport, .{ .name = "hookline_init" });
    @export(&exports.onEventExport, .{ .name = "hookline_on_event" });
}
