// hookline example rule "seed", in AssemblyScript: the door-lock scenario's routing.
//
//   message.publish on devices/+/state   -> Kafka topic message_state   (default key)
//   message.acked   on devices/+/command -> Kafka topic message_command (default key)
//
// Build: npx asc seed.ts --runtime stub -O3z --noAssert --use abort= -o seed.wasm
import { Hook, subscribe, route, ok } from "../../../wasm-sdk/assemblyscript/assembly/index";
export { hookline_abi_v1 } from "../../../wasm-sdk/assemblyscript/assembly/index";

export function hookline_init(): i32 {
  const rc = subscribe(Hook.MessagePublish, "devices/+/state"); // index 0
  if (rc < 0) return rc;
  return ok(subscribe(Hook.MessageAcked, "devices/+/command")); // index 1
}

export function hookline_on_event(hook: i32, subscription: i32): i32 {
  return ok(route(subscription == 0 ? "message_state" : "message_command"));
}
