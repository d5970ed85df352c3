//! hookline.zig: Zig SDK for hookline routing rules, guest ABI v2 and v1 (see ../ABI.md).
//!
//! One file, no allocator, no std. Target `wasm32-freestanding`. A rule declares its
//! subscriptions in `init`, decides events in `onEvent`, and exports the ABI through
//! `hookline.exportRule` (ABI v2, marker `hookline_abi_v2`) or `hookline.exportRuleV1`
//! (ABI v1, marker `hookline_abi_v1`; same functions, same behaviour):
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
//!         --export=hookline_abi_v2 --export=hookline_init --export=hookline_on_event \
//!         --dep hookline -Mroot=my_rule.zig -Mhookline=path/to/hookline.zig \
//!         -femit-bin=my_rule.wasm
//!
//! The `--export=` flags (`--export=hookline_abi_v1` for `exportRuleV1`), or `-rdynamic`,
//! are required: for wasm, Zig keeps `@export`ed symbols out of the module's export
//! section unless told, and a module exporting only `memory` is rejected by the host.
//! `--stack 65536` keeps an instance at 2 pages instead of the 17 that Zig's default
//! 1 MiB stack needs. (`@export(&f, ...)` and `callconv(.c)` need Zig 0.14 or newer; with
//! an older Zig write the three exports by hand with `export fn` and call `runInit` /
//! `runOnEvent` (v1) or `runInitAbi` / `runOnEventAbi` (v2) from them.)

/// The raw host imports (module `hookline`), exactly as in ABI.md.
pub const raw = struct {
    pub extern "hookline" fn subscribe(hook_ptr: [*]const u8, hook_len: i32, filter_ptr: [*]const u8, filter_len: i32) i32;
    pub extern "hookline" fn event_read(field: i32, dst_ptr: [*]u8, dst_len: i32) i32;
    pub extern "hookline" fn event_qos() i32;
    pub extern "hookline" fn route(topic_ptr: [*]const u8, topic_len: i32, key_ptr: [*]const u8, key_len: i32) i32;
    pub extern "hookline" fn route_header(name_ptr: [*]const u8, name_len: i32, value_ptr: [*]const u8, value_len: i32) i32;
    pub extern "hookline" fn log(level: i32, ptr: [*]const u8, len: i32) void;
    pub extern "hookline" fn config_get(key_ptr: [*]const u8, key_len: i32, dst_ptr: [*]u8, dst_len: i32) i32;
    // ABI v2:
    pub extern "hookline" fn route_value(kind: i32, ptr: [*]const u8, len: i32) i32;
    pub extern "hookline" fn route_to(dest_ptr: [*]const u8, dest_len: i32, topic_ptr: [*]const u8, topic_len: i32, key_ptr: [*]const u8, key_len: i32) i32;
    pub extern "hookline" fn event_header(name_ptr: [*]const u8, name_len: i32, dst_ptr: [*]u8, dst_len: i32) i32;
    pub extern "hookline" fn publish(topic_ptr: [*]const u8, topic_len: i32, qos: i32, retain: i32, payload_ptr: [*]const u8, payload_len: i32) i32;
    pub extern "hookline" fn publish_property(id: i32, ptr: [*]const u8, len: i32) i32;
    pub extern "hookline" fn publish_user_property(name_ptr: [*]const u8, name_len: i32, value_ptr: [*]const u8, value_len: i32) i32;
    // ABI v2.1 (payload fields):
    pub extern "hookline" fn payload_f64(path_ptr: [*]const u8, path_len: i32, dst_ptr: *f64) i32;
    pub extern "hookline" fn payload_bool(path_ptr: [*]const u8, path_len: i32) i32;
    pub extern "hookline" fn payload_str(path_ptr: [*]const u8, path_len: i32, dst_ptr: [*]u8, dst_len: i32) i32;
    pub extern "hookline" fn payload_json(path_ptr: [*]const u8, path_len: i32, dst_ptr: [*]u8, dst_len: i32) i32;
};

/// The ABI version a module speaks (its marker export).
pub const Abi = enum { v1, v2 };

/// The hooks, with their ABI codes (`kafka_record` is new in ABI v2).
pub const Hook = enum(i32) {
    client_connected = 0,
    client_disconnected = 1,
    session_subscribed = 2,
    session_unsubscribed = 3,
    message_publish = 4,
    message_delivered = 5,
    message_acked = 6,
    access_denied = 7,
    kafka_record = 8,

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
            .kafka_record => "kafka.record",
        };
    }
};

/// `event_read` field codes (6..9 are new in ABI v2; partition and offset are decimal text).
pub const Field = enum(i32) { topic = 0, client_id = 1, username = 2, payload = 3, from = 4, peer = 5, key = 6, action = 7, partition = 8, offset = 9 };

/// MQTT QoS of a `publish`.
pub const QoS = enum(i32) { at_most_once = 0, at_least_once = 1, exactly_once = 2 };

/// `publish_property` ids: MQTT 5 property identifiers.
pub const Property = enum(i32) { payload_format_indicator = 1, message_expiry_interval = 2, content_type = 3, response_topic = 8, correlation_data = 9 };

/// `route_value` kinds.
pub const Value = enum(i32) { envelope = 0, payload = 1, bytes = 2 };

/// Log levels.
pub const Level = enum(i32) { err = 0, warn = 1, info = 2, debug = 3 };

/// The host's error codes (-1 .. -12), other negative codes (`Host`), and the SDK's own.
pub const Error = error{
    UnknownName, // -1 (from routeTo: no destination has that name)
    InvalidFilter, // -2
    WrongTime, // -3
    OutOfBounds, // -4
    LimitReached, // -5: voids the event's decision when from route/route_header
    InvalidTopic, // -6 (routeTo: a topic its destination does not take): idem
    TooLong, // -7: idem
    InvalidPublish, // -8: invalid MQTT publish (topic, QoS, property); idem
    NoSuchField, // -9: v2.1 payload lookups: no member or element at that path
    WrongType, // -10: v2.1: the value there is not of the kind asked for
    NotJson, // -11: v2.1: the payload is not JSON
    InvalidPath, // -12: v2.1: not a valid payload path
    Host, // another negative code (a newer host)
    BufferTooSmall, // -100: the field does not fit the buffer given
    UnknownHook, // -103: a hook code this SDK does not know
    Rejected, // 1 (v1) or -105 (v2): the rule declines (refuses loading, or rejects the event)
};

/// The non-zero value a v1 module's export returns for `e` (see `errorCodeFor`).
pub fn errorCode(e: Error) i32 {
    return switch (e) {
        error.UnknownName => -1,
        error.InvalidFilter => -2,
        error.WrongTime => -3,
        error.OutOfBounds => -4,
        error.LimitReached => -5,
        error.InvalidTopic => -6,
        error.TooLong => -7,
        error.InvalidPublish => -8,
        error.NoSuchField => -9,
        error.WrongType => -10,
        error.NotJson => -11,
        error.InvalidPath => -12,
        error.Host => -99,
        error.BufferTooSmall => -100,
        error.UnknownHook => -103,
        error.Rejected => 1,
    };
}

/// The value a module speaking `abi` returns for `e`: always a rejection (under v2,
/// where a positive result accepts, `error.Rejected` is -105).
pub fn errorCodeFor(abi: Abi, e: Error) i32 {
    const code = errorCode(e);
    return if (abi == .v2 and code >= 0) -105 else code;
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
        -8 => error.InvalidPublish,
        -9 => error.NoSuchField,
        -10 => error.WrongType,
        -11 => error.NotJson,
        -12 => error.InvalidPath,
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

/// The whole of `field` as a number (partition, offset); null when the field is empty.
pub fn number(field: Field) Error!?i64 {
    var buf: [20]u8 = undefined;
    const text = try bytes(field, &buf);
    if (text.len == 0) return null;
    var negative = false;
    var value: i64 = 0;
    for (text, 0..) |c, i| {
        if (i == 0 and c == '-') {
            negative = true;
        } else if (c >= '0' and c <= '9') {
            value = value *% 10 +% (c - '0');
        } else return error.Host;
    }
    return if (negative) -value else value;
}

/// v2 (kafka.record): copies up to `buf.len` bytes of the consumed record's first header
/// named `name`; returns its FULL length, or null when the record has no such header.
pub fn readHeader(name: []const u8, buf: []u8) Error!?usize {
    const rc = raw.event_header(name.ptr, try len32(name.len), buf.ptr, try len32(buf.len));
    if (rc == -1) return null;
    return try check(rc);
}

/// v2: the whole header value, copied into `buf`; null when absent, or
/// `error.BufferTooSmall` if it does not fit.
pub fn headerValue(name: []const u8, buf: []u8) Error!?[]u8 {
    const n = (try readHeader(name, buf)) orelse return null;
    if (n > buf.len) return error.BufferTooSmall;
    return buf[0..n];
}

/// QoS of the message (0..2); 0 for client events and kafka.record.
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

/// v2: routes the current event, with the default key, to the destination named `dest`
/// ("kafka" or "file" for the `[sink] kind`, "<name>" for a RabbitMQ `[sink.<name>]`;
/// `route` uses the first configured one). `topic` is the Kafka topic, the RabbitMQ
/// exchange ("" = the default exchange; the key is the routing key) or the file sink's
/// topic field. Returns the route's index; `error.UnknownName` for no such destination.
pub fn routeTo(dest: []const u8, topic: []const u8) Error!u32 {
    return check(raw.route_to(dest.ptr, try len32(dest.len), topic.ptr, try len32(topic.len), topic.ptr, -1));
}

/// v2: `routeTo` with record (routing) key `key` (empty = empty key).
pub fn routeToWithKey(dest: []const u8, topic: []const u8, key: []const u8) Error!u32 {
    return check(raw.route_to(dest.ptr, try len32(dest.len), topic.ptr, try len32(topic.len), key.ptr, try len32(key.len)));
}

/// Adds a header to the most recent successful route.
pub fn header(name: []const u8, value: []const u8) Error!void {
    _ = try check(raw.route_header(name.ptr, try len32(name.len), value.ptr, try len32(value.len)));
}

/// v2: chooses the record value of the most recent successful route: `.envelope`
/// (default), `.payload` (the MQTT payload), or `.bytes` (`data`; ignored otherwise).
pub fn routeValue(kind: Value, data: []const u8) Error!void {
    _ = try check(raw.route_value(@intFromEnum(kind), data.ptr, try len32(data.len)));
}

/// v2 (kafka.record): publishes the consumed record's value to MQTT topic `topic` (a
/// topic name) at `q`, retained if `retain`. Returns the publish's index.
pub fn publish(topic: []const u8, q: QoS, retain: bool) Error!u32 {
    return check(raw.publish(topic.ptr, try len32(topic.len), @intFromEnum(q), @intFromBool(retain), topic.ptr, -1));
}

/// v2 (kafka.record): as `publish`, with `payload` instead of the record's value.
pub fn publishPayload(topic: []const u8, q: QoS, retain: bool, payload: []const u8) Error!u32 {
    return check(raw.publish(topic.ptr, try len32(topic.len), @intFromEnum(q), @intFromBool(retain), payload.ptr, try len32(payload.len)));
}

/// v2: sets MQTT 5 property `id` of the most recent successful publish to `data`
/// (payload format indicator: 1 byte 0/1; message expiry interval: 4 bytes big-endian).
pub fn publishProperty(id: Property, data: []const u8) Error!void {
    _ = try check(raw.publish_property(@intFromEnum(id), data.ptr, try len32(data.len)));
}

/// v2: message expiry interval (seconds) of the most recent successful publish.
pub fn publishExpiry(seconds: u32) Error!void {
    const be = [4]u8{ @truncate(seconds >> 24), @truncate(seconds >> 16), @truncate(seconds >> 8), @truncate(seconds) };
    return publishProperty(.message_expiry_interval, &be);
}

/// v2: adds an MQTT 5 user property to the most recent successful publish.
pub fn publishUserProperty(name: []const u8, value: []const u8) Error!void {
    _ = try check(raw.publish_user_property(name.ptr, try len32(name.len), value.ptr, try len32(value.len)));
}

// v2.1 payload fields, by path into the event's JSON payload: "battery", "lock.state",
// "readings[0]", "" for the whole payload (ABI.md, "Payload fields"). A failed lookup
// is `error.NoSuchField`, `WrongType`, `NotJson` or `InvalidPath` and voids nothing.

/// v2.1: the number at `path`.
pub fn payloadF64(path: []const u8) Error!f64 {
    var value: f64 = undefined;
    _ = try check(raw.payload_f64(path.ptr, try len32(path.len), &value));
    return value;
}

/// v2.1: the bool at `path`.
pub fn payloadBool(path: []const u8) Error!bool {
    return (try check(raw.payload_bool(path.ptr, try len32(path.len)))) != 0;
}

/// v2.1: the string at `path` (unescaped UTF-8, no quotes), copied into `buf`;
/// `error.BufferTooSmall` if it does not fit.
pub fn payloadStr(path: []const u8, buf: []u8) Error![]u8 {
    const n = try check(raw.payload_str(path.ptr, try len32(path.len), buf.ptr, try len32(buf.len)));
    if (n > buf.len) return error.BufferTooSmall;
    return buf[0..n];
}

/// v2.1: the JSON text of the value at `path`, as written, copied into `buf`;
/// `error.BufferTooSmall` if it does not fit.
pub fn payloadJson(path: []const u8, buf: []u8) Error![]u8 {
    const n = try check(raw.payload_json(path.ptr, try len32(path.len), buf.ptr, try len32(buf.len)));
    if (n > buf.len) return error.BufferTooSmall;
    return buf[0..n];
}

/// Writes a line to the gateway's log (rate-limited by the host).
pub fn log(level: Level, message: []const u8) void {
    raw.log(@intFromEnum(level), message.ptr, @intCast(@min(message.len, 0x7fff_ffff)));
}

/// Runs a rule's `init` and turns the result into a v1 `hookline_init`'s return value.
pub fn runInit(comptime init: fn () Error!void) i32 {
    return runInitAbi(.v1, init);
}

/// Runs a rule's `onEvent` and turns the result into a v1 `hookline_on_event`'s return
/// value.
pub fn runOnEvent(comptime onEvent: fn (Hook, u32) Error!void, hook: i32, subscription: i32) i32 {
    return runOnEventAbi(.v1, onEvent, hook, subscription);
}

/// `runInit` for a module speaking `abi`.
pub fn runInitAbi(comptime abi: Abi, comptime init: fn () Error!void) i32 {
    init() catch |e| return errorCodeFor(abi, e);
    return 0;
}

/// `runOnEvent` for a module speaking `abi`.
pub fn runOnEventAbi(comptime abi: Abi, comptime onEvent: fn (Hook, u32) Error!void, hook: i32, subscription: i32) i32 {
    if (hook < 0 or hook > @intFromEnum(Hook.kafka_record)) return errorCodeFor(abi, error.UnknownHook);
    onEvent(@enumFromInt(hook), @bitCast(subscription)) catch |e| return errorCodeFor(abi, e);
    return 0;
}

/// Exports the ABI v2 functions (`hookline_abi_v2`, `hookline_init`,
/// `hookline_on_event`) wired to `init` and `onEvent`. Call it once from a `comptime`
/// block of the root file: `comptime { hookline.exportRule(init, onEvent); }`.
pub fn exportRule(
    comptime init: fn () Error!void,
    comptime onEvent: fn (Hook, u32) Error!void,
) void {
    exportRuleAbi(.v2, init, onEvent);
}

/// As `exportRule`, for a module speaking ABI v1 (marker `hookline_abi_v1`).
pub fn exportRuleV1(
    comptime init: fn () Error!void,
    comptime onEvent: fn (Hook, u32) Error!void,
) void {
    exportRuleAbi(.v1, init, onEvent);
}

fn exportRuleAbi(
    comptime abi: Abi,
    comptime init: fn () Error!void,
    comptime onEvent: fn (Hook, u32) Error!void,
) void {
    const exports = struct {
        fn marker() callconv(.c) void {}
        fn initExport() callconv(.c) i32 {
            return runInitAbi(abi, init);
        }
        fn onEventExport(hook: i32, subscription: i32) callconv(.c) i32 {
            return runOnEventAbi(abi, onEvent, hook, subscription);
        }
    };
    const marker_name = switch (abi) {
        .v1 => "hookline_abi_v1",
        .v2 => "hookline_abi_v2",
    };
    @export(&exports.marker, .{ .name = marker_name });
    @export(&exports.initExport, .{ .name = "hookline_init" });
    @export(&exports.onEventExport, .{ .name = "hookline_on_event" });
}
