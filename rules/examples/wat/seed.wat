;; hookline example rule "seed", hand-written WebAssembly text (guest ABI v1).
;;
;;   message.publish on devices/+/state   -> Kafka topic message_state   (default key)
;;   message.acked   on devices/+/command -> Kafka topic message_command (default key)
;;
;; Nothing to build: drop the .wat file into the rules directory, the host compiles it.
(module
  ;; subscribe(hook_ptr, hook_len, filter_ptr, filter_len) -> index | negative error
  (import "hookline" "subscribe" (func $subscribe (param i32 i32 i32 i32) (result i32)))
  ;; route(topic_ptr, topic_len, key_ptr, key_len) -> index | negative error;
  ;; key_len -1 = default key (the client id)
  (import "hookline" "route" (func $route (param i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  ;; offset  length  text
  (data (i32.const 0)  "message.publish")     ;;  0  15
  (data (i32.const 16) "devices/+/state")     ;; 16  15
  (data (i32.const 32) "message.acked")       ;; 32  13
  (data (i32.const 48) "devices/+/command")   ;; 48  17
  (data (i32.const 80) "message_state")       ;; 80  13
  (data (i32.const 96) "message_command")     ;; 96  15

  (func (export "hookline_abi_v1"))

  ;; Subscription 0: state publishes; subscription 1: acknowledged commands.
  ;; A negative answer refuses loading.
  (func (export "hookline_init") (result i32)
    (local $rc i32)
    (local.set $rc (call $subscribe (i32.const 0) (i32.const 15) (i32.const 16) (i32.const 15)))
    (if (i32.lt_s (local.get $rc) (i32.const 0)) (then (return (local.get $rc))))
    (local.set $rc (call $subscribe (i32.const 32) (i32.const 13) (i32.const 48) (i32.const 17)))
    (if (i32.lt_s (local.get $rc) (i32.const 0)) (then (return (local.get $rc))))
    (i32.const 0))

  ;; The subscription index picks the Kafka topic. A failed route rejects the event.
  (func (export "hookline_on_event") (param $hook i32) (param $subscription i32) (result i32)
    (local $rc i32)
    (local.set $rc
      (if (result i32) (i32.eqz (local.get $subscription))
        (then (call $route (i32.const 80) (i32.const 13) (i32.const 0) (i32.const -1)))
        (else (call $route (i32.const 96) (i32.const 15) (i32.const 0) (i32.const -1)))))
    (select (local.get $rc) (i32.const 0) (i32.lt_s (local.get $rc) (i32.const 0))))
)
