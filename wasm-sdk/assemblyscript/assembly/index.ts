// hookline-rule: AssemblyScript SDK for hookline routing rules, guest ABI v2 and v1
// (../../ABI.md).
//
// Nothing here allocates: text arguments (AssemblyScript strings are UTF-16) are
// encoded to UTF-8 into static scratch buffers, and event fields are read into memory
// you reserve with `memory.data(n)`. So rules built with `--runtime stub` (which never
// frees) do not grow their memory per event.
//
// A rule's entry file re-exports the marker of the ABI version it speaks,
// `hookline_abi_v2` (new modules) or `hookline_abi_v1`, and defines the other two
// exports. `ok()` returns 0 or a negative error, which both versions read alike:
//
//   import { Hook, subscribe, route, ok } from "hookline-rule";
//   export { hookline_abi_v2 } from "hookline-rule";
//   export function hookline_init(): i32 {
//     return ok(subscribe(Hook.MessagePublish, "devices/+/state"));
//   }
//   export function hookline_on_event(hook: i32, subscription: i32): i32 {
//     return ok(route("message_state"));
//   }
//
// Build:  npx asc my_rule.ts --runtime stub -O3z --noAssert --use abort= -o my_rule.wasm
// (`--use abort=` drops the `env.abort` import AssemblyScript adds by default: the host
// accepts imports from module `hookline` only. A failed assertion then traps.)

// ---- Raw host imports (module "hookline") -------------------------------------------

// @ts-ignore: decorator
@external("hookline", "subscribe")
export declare function hookline_subscribe(hookPtr: usize, hookLen: i32, filterPtr: usize, filterLen: i32): i32;
// @ts-ignore: decorator
@external("hookline", "event_read")
export declare function hookline_event_read(field: i32, dstPtr: usize, dstLen: i32): i32;
// @ts-ignore: decorator
@external("hookline", "event_qos")
export declare function hookline_event_qos(): i32;
// @ts-ignore: decorator
@external("hookline", "route")
export declare function hookline_route(topicPtr: usize, topicLen: i32, keyPtr: usize, keyLen: i32): i32;
// @ts-ignore: decorator
@external("hookline", "route_header")
export declare function hookline_route_header(namePtr: usize, nameLen: i32, valuePtr: usize, valueLen: i32): i32;
// @ts-ignore: decorator
@external("hookline", "log")
export declare function hookline_log(level: i32, ptr: usize, len: i32): void;
// @ts-ignore: decorator
@external("hookline", "config_get")
export declare function hookline_config_get(keyPtr: usize, keyLen: i32, dstPtr: usize, dstLen: i32): i32;
// ABI v2 imports:
// @ts-ignore: decorator
@external("hookline", "route_value")
export declare function hookline_route_value(kind: i32, ptr: usize, len: i32): i32;
// @ts-ignore: decorator
@external("hookline", "route_to")
export declare function hookline_route_to(destPtr: usize, destLen: i32, topicPtr: usize, topicLen: i32, keyPtr: usize, keyLen: i32): i32;
// @ts-ignore: decorator
@external("hookline", "event_header")
export declare function hookline_event_header(namePtr: usize, nameLen: i32, dstPtr: usize, dstLen: i32): i32;
// @ts-ignore: decorator
@external("hookline", "publish")
export declare function hookline_publish(topicPtr: usize, topicLen: i32, qos: i32, retain: i32, payloadPtr: usize, payloadLen: i32): i32;
// @ts-ignore: decorator
@external("hookline", "publish_property")
export declare function hookline_publish_property(id: i32, ptr: usize, len: i32): i32;
// @ts-ignore: decorator
@external("hookline", "publish_user_property")
export declare function hookline_publish_user_property(namePtr: usize, nameLen: i32, valuePtr: usize, valueLen: i32): i32;
// ABI v2.1 imports (payload fields; a module importing them needs a 2.1 gateway):
// @ts-ignore: decorator
@external("hookline", "payload_f64")
export declare function hookline_payload_f64(pathPtr: usize, pathLen: i32, dstPtr: usize): i32;
// @ts-ignore: decorator
@external("hookline", "payload_bool")
export declare function hookline_payload_bool(pathPtr: usize, pathLen: i32): i32;
// @ts-ignore: decorator
@external("hookline", "payload_str")
export declare function hookline_payload_str(pathPtr: usize, pathLen: i32, dstPtr: usize, dstLen: i32): i32;
// @ts-ignore: decorator
@external("hookline", "payload_json")
export declare function hookline_payload_json(pathPtr: usize, pathLen: i32, dstPtr: usize, dstLen: i32): i32;

// ---- ABI constants --------------------------------------------------------------------

/** Hook codes: the first argument of `hookline_on_event`. */
export enum Hook {
  ClientConnected = 0,
  ClientDisconnected = 1,
  SessionSubscribed = 2,
  SessionUnsubscribed = 3,
  MessagePublish = 4,
  MessageDelivered = 5,
  MessageAcked = 6,
  AccessDenied = 7,
  /** v2: a record consumed from Kafka; the topic is the Kafka topic. */
  KafkaRecord = 8,
}

/** `event_read` field codes. */
export enum Field {
  Topic = 0,
  ClientId = 1,
  Username = 2,
  Payload = 3,
  From = 4,
  Peer = 5,
  /** kafka.record: the record's key. */
  Key = 6,
  /** access.denied: "publish", "subscribe" or "will". */
  Action = 7,
  /** kafka.record: the partition, decimal text. */
  Partition = 8,
  /** kafka.record: the offset, decimal text. */
  Offset = 9,
}

/** `route_value` kinds (v2). */
export enum Value {
  Envelope = 0,
  Payload = 1,
  Bytes = 2,
}

/** `publish_property` ids (v2): MQTT 5 property identifiers. */
export enum Property {
  PayloadFormatIndicator = 1,
  MessageExpiryInterval = 2,
  ContentType = 3,
  ResponseTopic = 8,
  CorrelationData = 9,
}

/** Log levels. */
export enum Level {
  Error = 0,
  Warn = 1,
  Info = 2,
  Debug = 3,
}

/** Host error codes (negative), plus this SDK's own. */
export const ERR_UNKNOWN: i32 = -1;
export const ERR_FILTER: i32 = -2;
export const ERR_WRONG_TIME: i32 = -3;
export const ERR_MEMORY: i32 = -4;
/** Too many subscriptions/routes/headers; from route/route_header it voids the decision. */
export const ERR_LIMIT: i32 = -5;
/** Invalid Kafka topic name (routeTo: a topic its destination does not take); voids the decision. */
export const ERR_TOPIC: i32 = -6;
/** Key or header too long (voids the decision); also: text argument longer than SCRATCH_BYTES. */
export const ERR_TOO_LONG: i32 = -7;
/** v2: invalid MQTT publish (topic, QoS or property value); voids the decision. */
export const ERR_PUBLISH: i32 = -8;
/** v2.1 payload lookups: the payload has no member or element at that path. */
export const ERR_NO_FIELD: i32 = -9;
/** v2.1: the value at that path is not of the kind asked for (a string for payloadF64, ...). */
export const ERR_WRONG_TYPE: i32 = -10;
/** v2.1: the payload is not JSON. */
export const ERR_NOT_JSON: i32 = -11;
/** v2.1: not a valid payload path. */
export const ERR_PATH: i32 = -12;
/** `readAll`: the field is longer than the buffer. */
export const ERR_BUFFER_TOO_SMALL: i32 = -100;
/** `route`'s and `routeTo`'s key length meaning "the default key" (the event's client id). */
export const DEFAULT_KEY: i32 = -1;
/** `publish`'s payload length meaning "the consumed record's value" (v2). */
export const RECORD_VALUE: i32 = -1;

/** The ABI's name of a hook, as `subscribe` takes it. */
export function hookName(hook: Hook): string {
  switch (hook) {
    case Hook.ClientConnected: return "client.connected";
    case Hook.ClientDisconnected: return "client.disconnected";
    case Hook.SessionSubscribed: return "session.subscribed";
    case Hook.SessionUnsubscribed: return "session.unsubscribed";
    case Hook.MessagePublish: return "message.publish";
    case Hook.MessageDelivered: return "message.delivered";
    case Hook.MessageAcked: return "message.acked";
    case Hook.AccessDenied: return "access.denied";
    case Hook.KafkaRecord: return "kafka.record";
    default: return ""; // not a hook: subscribe answers ERR_UNKNOWN
  }
}

// ---- UTF-8 scratch buffers ---------------------------------------------------------------

/** Largest UTF-8 encoding of one text argument (topic, filter, header name, ...). */
export const SCRATCH_BYTES: i32 = 4096;
const scratchA: usize = memory.data(SCRATCH_BYTES);
const scratchB: usize = memory.data(SCRATCH_BYTES);

/**
 * Encodes `s` as UTF-8 into `dst` (capacity `cap`) without allocating. Returns the byte
 * length, or ERR_TOO_LONG when it does not fit. Lone surrogates become U+FFFD.
 */
export function encodeUtf8(s: string, dst: usize, cap: i32): i32 {
  const src = changetype<usize>(s);
  const n = s.length;
  let o: i32 = 0;
  for (let i = 0; i < n; i++) {
    let c = <u32>load<u16>(src + (<usize>i << 1));
    if (c < 0x80) {
      if (o + 1 > cap) return ERR_TOO_LONG;
      store<u8>(dst + o, <u8>c);
      o += 1;
    } else if (c < 0x800) {
      if (o + 2 > cap) return ERR_TOO_LONG;
      store<u8>(dst + o, <u8>(0xc0 | (c >> 6)));
      store<u8>(dst + o + 1, <u8>(0x80 | (c & 0x3f)));
      o += 2;
    } else {
      if (c >= 0xd800 && c < 0xdc00 && i + 1 < n) {
        const d = <u32>load<u16>(src + (<usize>(i + 1) << 1));
        if (d >= 0xdc00 && d < 0xe000) {
          if (o + 4 > cap) return ERR_TOO_LONG;
          const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
          store<u8>(dst + o, <u8>(0xf0 | (cp >> 18)));
          store<u8>(dst + o + 1, <u8>(0x80 | ((cp >> 12) & 0x3f)));
          store<u8>(dst + o + 2, <u8>(0x80 | ((cp >> 6) & 0x3f)));
          store<u8>(dst + o + 3, <u8>(0x80 | (cp & 0x3f)));
          o += 4;
          i++;
          continue;
        }
      }
      if (c >= 0xd800 && c < 0xe000) c = 0xfffd;
      if (o + 3 > cap) return ERR_TOO_LONG;
      store<u8>(dst + o, <u8>(0xe0 | (c >> 12)));
      store<u8>(dst + o + 1, <u8>(0x80 | ((c >> 6) & 0x3f)));
      store<u8>(dst + o + 2, <u8>(0x80 | (c & 0x3f)));
      o += 3;
    }
  }
  return o;
}

// ---- Helpers ------------------------------------------------------------------------------

/** During `hookline_init`: subscribe to `hook` and MQTT filter `filter`. Returns the
 *  subscription index (>= 0) or a negative error. */
export function subscribe(hook: Hook, filter: string): i32 {
  const h = encodeUtf8(hookName(hook), scratchA, SCRATCH_BYTES);
  const f = encodeUtf8(filter, scratchB, SCRATCH_BYTES);
  if (f < 0) return f;
  return hookline_subscribe(scratchA, h, scratchB, f);
}

/** Routes the current event to Kafka topic `topic` with the default key. Returns the
 *  route index or a negative error. */
export function route(topic: string): i32 {
  const t = encodeUtf8(topic, scratchA, SCRATCH_BYTES);
  if (t < 0) return t;
  return hookline_route(scratchA, t, 0, DEFAULT_KEY);
}

/** Routes with an explicit record key: `keyLen` bytes at `keyPtr` (0 = empty key). */
export function routeWithKey(topic: string, keyPtr: usize, keyLen: i32): i32 {
  const t = encodeUtf8(topic, scratchA, SCRATCH_BYTES);
  if (t < 0) return t;
  return hookline_route(scratchA, t, keyPtr, keyLen);
}

/** Routes with a text key (encoded to UTF-8). */
export function routeWithTextKey(topic: string, key: string): i32 {
  const t = encodeUtf8(topic, scratchA, SCRATCH_BYTES);
  if (t < 0) return t;
  const k = encodeUtf8(key, scratchB, SCRATCH_BYTES);
  if (k < 0) return k;
  return hookline_route(scratchA, t, scratchB, k);
}

/** v2: routes the current event, with the default key, to the destination named `dest`
 *  ("kafka" or "file" for the [sink] kind, "<name>" for a RabbitMQ [sink.<name>]; `route`
 *  uses the first configured one). `topic` is the Kafka topic, the RabbitMQ exchange
 *  ("" = the default exchange; the key is the routing key) or the file sink's topic
 *  field. Returns the route index, ERR_UNKNOWN for no such destination, or another
 *  negative error. */
export function routeTo(dest: string, topic: string): i32 {
  const d = encodeUtf8(dest, scratchA, SCRATCH_BYTES);
  if (d < 0) return d;
  const t = encodeUtf8(topic, scratchB, SCRATCH_BYTES);
  if (t < 0) return t;
  return hookline_route_to(scratchA, d, scratchB, t, 0, DEFAULT_KEY);
}

/** v2: `routeTo` with an explicit record (routing) key: `keyLen` bytes at `keyPtr`. (For
 *  a text key, `encodeUtf8` it into your own memory first.) */
export function routeToWithKey(dest: string, topic: string, keyPtr: usize, keyLen: i32): i32 {
  const d = encodeUtf8(dest, scratchA, SCRATCH_BYTES);
  if (d < 0) return d;
  const t = encodeUtf8(topic, scratchB, SCRATCH_BYTES);
  if (t < 0) return t;
  return hookline_route_to(scratchA, d, scratchB, t, keyPtr, keyLen);
}

/** Adds header `name` with `valueLen` bytes at `valuePtr` to the most recent route. */
export function header(name: string, valuePtr: usize, valueLen: i32): i32 {
  const n = encodeUtf8(name, scratchA, SCRATCH_BYTES);
  if (n < 0) return n;
  return hookline_route_header(scratchA, n, valuePtr, valueLen);
}

/** Adds a header with a text value. */
export function textHeader(name: string, value: string): i32 {
  const n = encodeUtf8(name, scratchA, SCRATCH_BYTES);
  if (n < 0) return n;
  const v = encodeUtf8(value, scratchB, SCRATCH_BYTES);
  if (v < 0) return v;
  return hookline_route_header(scratchA, n, scratchB, v);
}

/** Copies up to `cap` bytes of `field` to `dst`; returns the field's FULL length (may
 *  exceed `cap`) or a negative error. */
export function read(field: Field, dst: usize, cap: i32): i32 {
  return hookline_event_read(field, dst, cap);
}

/** Copies the whole `field` to `dst`; returns its length, or ERR_BUFFER_TOO_SMALL when
 *  it is longer than `cap` (never a cut value), or another negative error. */
export function readAll(field: Field, dst: usize, cap: i32): i32 {
  const n = hookline_event_read(field, dst, cap);
  return n > cap ? ERR_BUFFER_TOO_SMALL : n;
}

/** QoS of the message (0..2); 0 for client events and kafka.record. */
export function qos(): i32 {
  return hookline_event_qos();
}

/** v2: chooses the record value of the most recent route: Value.Envelope (default),
 *  Value.Payload, or Value.Bytes with `len` bytes at `ptr`. 0 or a negative error. */
export function routeValue(kind: Value, ptr: usize = 0, len: i32 = 0): i32 {
  return hookline_route_value(kind, ptr, len);
}

/** v2 (kafka.record): copies up to `cap` bytes of the consumed record's first header
 *  named `name` to `dst`; returns its FULL length, or ERR_UNKNOWN (-1) when absent. */
export function readHeader(name: string, dst: usize, cap: i32): i32 {
  const n = encodeUtf8(name, scratchA, SCRATCH_BYTES);
  if (n < 0) return n;
  return hookline_event_header(scratchA, n, dst, cap);
}

/** v2 (kafka.record): publishes the consumed record's value to MQTT topic `topic` at
 *  `qos` 0..2, retained if `retain`. Returns the publish index or a negative error. */
export function publish(topic: string, qos: i32, retain: bool): i32 {
  const t = encodeUtf8(topic, scratchA, SCRATCH_BYTES);
  if (t < 0) return t;
  return hookline_publish(scratchA, t, qos, retain ? 1 : 0, 0, RECORD_VALUE);
}

/** v2 (kafka.record): publishes `len` bytes at `ptr` instead of the record's value. */
export function publishPayload(topic: string, qos: i32, retain: bool, ptr: usize, len: i32): i32 {
  const t = encodeUtf8(topic, scratchA, SCRATCH_BYTES);
  if (t < 0) return t;
  return hookline_publish(scratchA, t, qos, retain ? 1 : 0, ptr, len);
}

/** v2: publishes to a topic given as UTF-8 bytes (`topicLen` bytes at `topicPtr`), e.g.
 *  one assembled in your own memory; `payloadLen` RECORD_VALUE for the record's value. */
export function publishRaw(topicPtr: usize, topicLen: i32, qos: i32, retain: bool, payloadPtr: usize, payloadLen: i32): i32 {
  return hookline_publish(topicPtr, topicLen, qos, retain ? 1 : 0, payloadPtr, payloadLen);
}

/** v2: sets MQTT 5 property `id` of the most recent publish to `len` bytes at `ptr`. */
export function publishProperty(id: Property, ptr: usize, len: i32): i32 {
  return hookline_publish_property(id, ptr, len);
}

/** v2: sets a text MQTT 5 property (content type, response topic) of the most recent
 *  publish. */
export function publishTextProperty(id: Property, value: string): i32 {
  const v = encodeUtf8(value, scratchA, SCRATCH_BYTES);
  if (v < 0) return v;
  return hookline_publish_property(id, scratchA, v);
}

/** v2: sets the message expiry interval (seconds) of the most recent publish. */
export function publishExpiry(seconds: u32): i32 {
  store<u8>(scratchA, <u8>(seconds >> 24));
  store<u8>(scratchA + 1, <u8>(seconds >> 16));
  store<u8>(scratchA + 2, <u8>(seconds >> 8));
  store<u8>(scratchA + 3, <u8>seconds);
  return hookline_publish_property(Property.MessageExpiryInterval, scratchA, 4);
}

/** v2: adds an MQTT 5 user property to the most recent publish. */
export function publishUserProperty(name: string, value: string): i32 {
  const n = encodeUtf8(name, scratchA, SCRATCH_BYTES);
  if (n < 0) return n;
  const v = encodeUtf8(value, scratchB, SCRATCH_BYTES);
  if (v < 0) return v;
  return hookline_publish_user_property(scratchA, n, scratchB, v);
}

// v2.1 payload fields, by path into the event's JSON payload: "battery", "lock.state",
// "readings[0]", "" for the whole payload (ABI.md, "Payload fields"). A failed lookup
// returns ERR_NO_FIELD, ERR_WRONG_TYPE, ERR_NOT_JSON or ERR_PATH and voids nothing.

/** v2.1: the number at `path`, or NaN when the lookup fails for any reason (a JSON
 *  number is never NaN). `payloadF64Into` says why. */
export function payloadF64(path: string): f64 {
  return payloadF64Into(path, scratchB) < 0 ? NaN : load<f64>(scratchB);
}

/** v2.1: stores the number at `path` as an f64 (8 bytes) at `dst`; returns 0 or a
 *  negative error. */
export function payloadF64Into(path: string, dst: usize): i32 {
  const p = encodeUtf8(path, scratchA, SCRATCH_BYTES);
  if (p < 0) return p;
  return hookline_payload_f64(scratchA, p, dst);
}

/** v2.1: the bool at `path`: 1 (true), 0 (false) or a negative error. */
export function payloadBool(path: string): i32 {
  const p = encodeUtf8(path, scratchA, SCRATCH_BYTES);
  if (p < 0) return p;
  return hookline_payload_bool(scratchA, p);
}

/** v2.1: copies up to `cap` bytes of the string at `path` (unescaped UTF-8, no quotes)
 *  to `dst`; returns its FULL length or a negative error. */
export function payloadStr(path: string, dst: usize, cap: i32): i32 {
  const p = encodeUtf8(path, scratchA, SCRATCH_BYTES);
  if (p < 0) return p;
  return hookline_payload_str(scratchA, p, dst, cap);
}

/** v2.1: as `payloadStr`, for the JSON text of any value at `path`, as written. */
export function payloadJson(path: string, dst: usize, cap: i32): i32 {
  const p = encodeUtf8(path, scratchA, SCRATCH_BYTES);
  if (p < 0) return p;
  return hookline_payload_json(scratchA, p, dst, cap);
}

/** Writes a line to the gateway's log (rate-limited by the host; cut at 4096 bytes). */
export function log(level: Level, message: string): void {
  const n = encodeUtf8(message, scratchA, SCRATCH_BYTES);
  hookline_log(level, scratchA, n < 0 ? 0 : n);
}

/** Maps a helper's result to an export's: negative errors pass through, the rest is 0. */
export function ok(rc: i32): i32 {
  return rc < 0 ? rc : 0;
}

// ---- Exports -------------------------------------------------------------------------------

/** The ABI v2 marker, for new modules. Re-export it (or `hookline_abi_v1`, never both)
 *  from the rule's entry file: `export { hookline_abi_v2 } from "hookline-rule";` */
export function hookline_abi_v2(): void {}

/** The ABI v1 marker, for a module speaking v1 (0 accepts, anything else rejects). */
export function hookline_abi_v1(): void {}
