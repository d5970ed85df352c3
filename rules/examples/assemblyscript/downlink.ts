// hookline example rule "downlink", in AssemblyScript (guest ABI v2): the door-lock
// scenario's commands through Kafka.
//
//   kafka.record on Kafka topic device_commands -> MQTT publish of the record's value
//                                                  to devices/{key}/command, QoS 1
//
// A record whose key is missing, empty, longer than 4096 bytes or not one topic level
// ('/', '+', '#') is rejected (negative result): counted, nothing published. A key that
// is not UTF-8 makes the host refuse the topic (ERR_PUBLISH), which rejects too.
//
// Build: npx asc downlink.ts --runtime stub -O3z --noAssert --use abort= -o downlink.wasm
import {
  ERR_UNKNOWN, Field, Hook, RECORD_VALUE, subscribe, read, publishRaw, ok,
} from "../../../wasm-sdk/assemblyscript/assembly/index";
export { hookline_abi_v2 } from "../../../wasm-sdk/assemblyscript/assembly/index";

const PREFIX_LEN: i32 = 8; // "devices/"
const SUFFIX_LEN: i32 = 8; // "/command"
const MAX_KEY: i32 = 4096;

// "devices/" + key + "/command", assembled in memory reserved once (nothing allocates).
const topic: usize = memory.data(PREFIX_LEN + MAX_KEY + SUFFIX_LEN);
const prefix: usize = memory.data<u8>([0x64, 0x65, 0x76, 0x69, 0x63, 0x65, 0x73, 0x2f]); // devices/
const suffix: usize = memory.data<u8>([0x2f, 0x63, 0x6f, 0x6d, 0x6d, 0x61, 0x6e, 0x64]); // /command

export function hookline_init(): i32 {
  return ok(subscribe(Hook.KafkaRecord, "device_commands")); // index 0
}

export function hookline_on_event(hook: i32, subscription: i32): i32 {
  memory.copy(topic, prefix, PREFIX_LEN);
  const keyLen = read(Field.Key, topic + PREFIX_LEN, MAX_KEY);
  if (keyLen < 0) return keyLen;
  if (keyLen == 0 || keyLen > MAX_KEY) return ERR_UNKNOWN; // no lock id: reject
  for (let i: i32 = 0; i < keyLen; i++) {
    const c = load<u8>(topic + PREFIX_LEN + i);
    if (c == 0x2f || c == 0x2b || c == 0x23) return ERR_UNKNOWN; // '/', '+', '#'
  }
  memory.copy(topic + PREFIX_LEN + keyLen, suffix, SUFFIX_LEN);
  return ok(publishRaw(topic, PREFIX_LEN + keyLen + SUFFIX_LEN, 1, false, 0, RECORD_VALUE));
}
