;; hookline rule `message_command`, hand-written in the WebAssembly text format.
;;
;; Every `message.acked` event whose topic matches the MQTT filter `devices/+/command`
;; is routed to the Kafka topic `message_command` with the default key (the event's
;; client id). Guest ABI v1: see wasm-sdk/ABI.md.
;;
;; The host compiles `.wat` files directly; nothing needs to be built. It imports only
;; the two `hookline` functions it uses, and exports exactly what ABI v1 requires:
;; `memory`, `hookline_abi_v1`, `hookline_init` and `hookline_on_event`.
(module
  ;; subscribe(hook_ptr, hook_len, filter_ptr, filter_len) -> index, or a negative error.
  ;; Only valid during hookline_init.
  (import "hookline" "subscribe"
    (func $subscribe (param $hook_ptr i32) (param $hook_len i32)
                     (param $filter_ptr i32) (param $filter_len i32)
                     (result i32)))

  ;; route(topic_ptr, topic_len, key_ptr, key_len) -> route index, or a negative error.
  ;; key_len = -1 selects the default key (the client id); key_ptr is then ignored.
  ;; Only valid during hookline_on_event.
  (import "hookline" "route"
    (func $route (param $topic_ptr i32) (param $topic_len i32)
                 (param $key_ptr i32) (param $key_len i32)
                 (result i32)))

  ;; One 64 KiB page holds the three constant strings below; the host reads them
  ;; through this export.
  (memory (export "memory") 1)

  ;; Constant strings (no terminator: the ABI passes pointer + length).
  ;;   offset  0, length 13: hook name
  ;;   offset 16, length 17: MQTT topic filter
  ;;   offset 48, length 15: Kafka topic
  (data (i32.const 0)  "message.acked")
  (data (i32.const 16) "devices/+/command")
  (data (i32.const 48) "message_command")

  ;; ABI version marker: must be exported, is never called.
  (func (export "hookline_abi_v1"))

  ;; Declares the rule's only subscription (index 0). A negative answer from the host
  ;; is returned as is: non-zero refuses loading this module.
  (func (export "hookline_init") (result i32)
    (local $rc i32)
    (local.set $rc
      (call $subscribe
        (i32.const 0)  (i32.const 13)     ;; "message.acked"
        (i32.const 16) (i32.const 17)))   ;; "devices/+/command"
    (if (i32.lt_s (local.get $rc) (i32.const 0))
      (then (return (local.get $rc))))
    (i32.const 0))

  ;; Called once per event that matched the subscription; $hook is always 6
  ;; (message.acked) and $subscription always 0 here, so both go unused.
  ;; Returns 0 once the route is taken, or the host's negative error, which rejects
  ;; the event (its routes are discarded and the rule's error counter goes up).
  (func (export "hookline_on_event") (param $hook i32) (param $subscription i32) (result i32)
    (local $rc i32)
    (local.set $rc
      (call $route
        (i32.const 48) (i32.const 15)     ;; "message_command"
        (i32.const 0)  (i32.const -1)))   ;; default key
    (if (result i32) (i32.lt_s (local.get $rc) (i32.const 0))
      (then (local.get $rc))
      (else (i32.const 0))))
)
