;; Version 2 of the example seed rule (rules/examples/wat/seed.wat), for bench/rule_swap.sh:
;; the same routing, plus a Kafka record header `rule_version: 2` on every record, so each
;; record shows which version decided it. The script swaps it in over version 1 mid-run.
(module
  (import "hookline" "subscribe" (func $subscribe (param i32 i32 i32 i32) (result i32)))
  (import "hookline" "route" (func $route (param i32 i32 i32 i32) (result i32)))
  ;; route_header(name_ptr, name_len, value_ptr, value_len) -> 0 | negative error;
  ;; applies to the most recent successful route of this event.
  (import "hookline" "route_header" (func $route_header (param i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  ;; offset  length  text
  (data (i32.const 0)   "message.publish")     ;;   0  15
  (data (i32.const 16)  "devices/+/state")     ;;  16  15
  (data (i32.const 32)  "message.acked")       ;;  32  13
  (data (i32.const 48)  "devices/+/command")   ;;  48  17
  (data (i32.const 80)  "message_state")       ;;  80  13
  (data (i32.const 96)  "message_command")     ;;  96  15
  (data (i32.const 112) "rule_version")        ;; 112  12
  (data (i32.const 128) "2")                   ;; 128   1

  (func (export "hookline_abi_v1"))

  ;; Subscription 0: state publishes; subscription 1: acknowledged commands.
  (func (export "hookline_init") (result i32)
    (local $rc i32)
    (local.set $rc (call $subscribe (i32.const 0) (i32.const 15) (i32.const 16) (i32.const 15)))
    (if (i32.lt_s (local.get $rc) (i32.const 0)) (then (return (local.get $rc))))
    (local.set $rc (call $subscribe (i32.const 32) (i32.const 13) (i32.const 48) (i32.const 17)))
    (if (i32.lt_s (local.get $rc) (i32.const 0)) (then (return (local.get $rc))))
    (i32.const 0))

  ;; The subscription index picks the Kafka topic; the header marks version 2. A failed
  ;; route or header rejects the event.
  (func (export "hookline_on_event") (param $hook i32) (param $subscription i32) (result i32)
    (local $rc i32)
    (local.set $rc
      (if (result i32) (i32.eqz (local.get $subscription))
        (then (call $route (i32.const 80) (i32.const 13) (i32.const 0) (i32.const -1)))
        (else (call $route (i32.const 96) (i32.const 15) (i32.const 0) (i32.const -1)))))
    (if (i32.lt_s (local.get $rc) (i32.const 0)) (then (return (local.get $rc))))
    (local.set $rc (call $route_header (i32.const 112) (i32.const 12) (i32.const 128) (i32.const 1)))
    (select (local.get $rc) (i32.const 0) (i32.lt_s (local.get $rc) (i32.const 0))))
)
