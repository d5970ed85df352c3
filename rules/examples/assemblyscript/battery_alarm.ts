// hookline example rule "battery_alarm", in AssemblyScript: content-based routing.
//
// Locks publish their state as JSON on devices/<id>/state, e.g.
//   {"process_id":"7802441525528958","action":"unlock","battery":83.4,"lock_state":1,...}
// This rule copies the event to Kafka topic alarm_state when the battery is low (< 20)
// or lock_state is anything but 0 or 1, and routes nothing otherwise.
//
// payloadF64 (ABI 2.1) lets the host parse the JSON: no buffer, no parser here, and
// every language reads the payload exactly alike.
//
// Build: npx asc battery_alarm.ts --runtime stub -O3z --noAssert --use abort= -o battery_alarm.wasm
import { Hook, subscribe, payloadF64, route, ok } from "../../../wasm-sdk/assemblyscript/assembly/index";
export { hookline_abi_v2 } from "../../../wasm-sdk/assemblyscript/assembly/index";

const BATTERY_LOW: f64 = 20;

export function hookline_init(): i32 {
  return ok(subscribe(Hook.MessagePublish, "devices/+/state"));
}

export function hookline_on_event(hook: i32, subscription: i32): i32 {
  // NaN: the lookup failed (not JSON, field missing or not a number). A payload we
  // cannot judge raises no alarm, but it is no reason to reject the event: accept it.
  const battery = payloadF64("battery");
  const lockState = payloadF64("lock_state");
  if (isNaN(battery) || isNaN(lockState)) return 0;
  if (battery < BATTERY_LOW || (lockState != 0 && lockState != 1)) {
    // Default key (the client id): one device's alarms stay in order. Only a failed
    // route comes back negative, which rejects the event.
    return ok(route("alarm_state"));
  }
  return 0;
}
