// hookline example rule "battery_alarm", in AssemblyScript: content-based routing.
//
// On message.publish on devices/+/state, reads the lock's JSON state, e.g.
//   {"process_id":"7802441525528958","action":"unlock","battery":83.4,"lock_state":1,...}
// and routes the event to Kafka topic alarm_state, keyed by the client id, when
// battery < 20 or lock_state is not 0 or 1. Otherwise, and for a payload that cannot
// be read (see scanNumber), it routes nothing and returns 0.
//
// Build: npx asc battery_alarm.ts --runtime stub -O3z --noAssert --use abort= -o battery_alarm.wasm
import {
  ERR_BUFFER_TOO_SMALL, Field, Hook, subscribe, readAll, routeWithKey, ok,
} from "../../../wasm-sdk/assemblyscript/assembly/index";
export { hookline_abi_v2 } from "../../../wasm-sdk/assemblyscript/assembly/index";

const BUF_CAP: i32 = 4096;
const BATTERY_THRESHOLD: i32 = 20;
/** Integer parts saturate here: any larger value compares the same. */
const INT_CAP: i32 = 1000000;

const payload: usize = memory.data(BUF_CAP);
const clientId: usize = memory.data(BUF_CAP);

// The number last read by scanNumber: sign, integer part, whether the fraction is zero.
// (Globals rather than an object: with `--runtime stub` every `new` is never freed.)
let numNegative = false;
let numInteger: i32 = 0;
let numFractionZero = true;

function isDigit(c: u32): bool {
  return c >= 0x30 && c <= 0x39;
}

/**
 * Finds the first `key` (e.g. `"battery":`) in buf[0..len), skips spaces/tabs, then
 * reads a number -?[0-9]+(\.[0-9]+)? that must be followed by ',', '}' or whitespace.
 * Fills the num* globals and returns true, or false (missing or malformed).
 */
function scanNumber(buf: usize, len: i32, key: string): bool {
  const keyLen = key.length; // ASCII keys only: one byte per UTF-16 unit
  let i: i32 = -1;
  for (let at: i32 = 0; at + keyLen <= len; at++) {
    let k: i32 = 0;
    while (k < keyLen && <u32>load<u8>(buf + at + k) == <u32>key.charCodeAt(k)) k++;
    if (k == keyLen) {
      i = at + keyLen;
      break;
    }
  }
  if (i < 0) return false;
  while (i < len && (load<u8>(buf + i) == 0x20 || load<u8>(buf + i) == 0x09)) i++;
  numNegative = false;
  numInteger = 0;
  numFractionZero = true;
  if (i < len && load<u8>(buf + i) == 0x2d) { // '-'
    numNegative = true;
    i++;
  }
  let digits = 0;
  while (i < len && isDigit(load<u8>(buf + i))) {
    numInteger = numInteger * 10 + (<i32>load<u8>(buf + i) - 0x30);
    if (numInteger > INT_CAP) numInteger = INT_CAP;
    i++;
    digits++;
  }
  if (digits == 0) return false;
  if (i < len && load<u8>(buf + i) == 0x2e) { // '.'
    i++;
    digits = 0;
    while (i < len && isDigit(load<u8>(buf + i))) {
      if (load<u8>(buf + i) != 0x30) numFractionZero = false;
      i++;
      digits++;
    }
    if (digits == 0) return false;
  }
  if (i >= len) return false;
  const c = load<u8>(buf + i);
  return c == 0x2c || c == 0x7d || c == 0x20 || c == 0x09 || c == 0x0d || c == 0x0a; // , } ws
}

export function hookline_init(): i32 {
  return ok(subscribe(Hook.MessagePublish, "devices/+/state"));
}

export function hookline_on_event(hook: i32, subscription: i32): i32 {
  const len = readAll(Field.Payload, payload, BUF_CAP);
  if (len == ERR_BUFFER_TOO_SMALL) return 0; // larger than we inspect: no alarm
  if (len < 0) return len; // host error: reject the event
  if (!scanNumber(payload, len, "\"battery\":")) return 0;
  const low = numNegative || numInteger < BATTERY_THRESHOLD;
  if (!scanNumber(payload, len, "\"lock_state\":")) return 0;
  const lockOk = numFractionZero && (numInteger == 0 || (numInteger == 1 && !numNegative));
  if (!low && lockOk) return 0;
  const idLen = readAll(Field.ClientId, clientId, BUF_CAP);
  if (idLen == ERR_BUFFER_TOO_SMALL) return 0;
  if (idLen < 0) return idLen;
  return ok(routeWithKey("alarm_state", clientId, idLen));
}
