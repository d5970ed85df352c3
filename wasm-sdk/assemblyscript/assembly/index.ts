// hookline-rule: AssemblyScript SDK for hookline routing rules, guest ABI v1 (../../ABI.md).
//
// Nothing here allocates: text arguments (AssemblyScript strings are UTF-16) are
// encoded to UTF-8 into static scratch buffers, and event fields are read into memory
// you reserve with `memory.data(n)`. So rules built with `--runtime stub` (which never
// frees) do not grow their memory per event.
//
// A rule's entry file re-exports `hookline_abi_v1` and defines the other two exports:
//
//   import { Hook, subscribe, route } from "hookline-rule";
//   export { hookline_abi_v1 } from "hookline-rule";
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
}

/** `event_read` field codes. */
export enum Field {
  Topic = 0,
  ClientId = 1,
  Username = 2,
  Payload = 3,
  From = 4,
  Peer = 5,
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
/** Invalid Kafka topic name; voids the decision. */
export const ERR_TOPIC: i32 = -6;
/** Key or header too long (voids the decision); also: text argument longer than SCRATCH_BYTES. */
export const ERR_TOO_LONG: i32 = -7;
/** `readAll`: the field is longer than the buffer. */
export const ERR_BUFFER_TOO_SMALL: i32 = -100;
/** `route`'s key length meaning "the default key" (the event's client id). */
export const DEFAULT_KEY: i32 = -1;

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

/** QoS of the message (0..2); 0 for client events. */
export function qos(): i32 {
  return hookline_event_qos();
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

/** The ABI v1 marker. Re-export it from the rule's entry file:
 *  `export { hookline_abi_v1 } from "hookline-rule";` */
export function hookline_abi_v1(): void {}
