;; hookline example rule "battery_alarm", hand-written WebAssembly text (guest ABI v2.1).
;;
;; On message.publish on devices/+/state, reads two fields of the lock's JSON state, e.g.
;;   {"process_id":"7802441525528958","action":"unlock","battery":83.4,"lock_state":1,...}
;; and routes the event to Kafka topic alarm_state (keyed by the client id, the default
;; key) when battery < 20 or lock_state is not 0 or 1. A payload without both numbers
;; (not JSON, a field missing, a string) routes nothing: no alarm.
;;
;; Nothing to build: drop the .wat file into the rules directory, the host compiles it.
(module
  (import "hookline" "subscribe" (func $subscribe (param i32 i32 i32 i32) (result i32)))
  (import "hookline" "route" (func $route (param i32 i32 i32 i32) (result i32)))
  ;; payload_f64(path_ptr, path_len, dst_ptr) -> 0 | negative error: the host parses the
  ;; payload as JSON and writes the number at path as an f64 at dst_ptr.
  (import "hookline" "payload_f64" (func $payload_f64 (param i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 0)  "message.publish")     ;;  0  15
  (data (i32.const 16) "devices/+/state")     ;; 16  15
  (data (i32.const 32) "alarm_state")         ;; 32  11
  (data (i32.const 48) "battery")             ;; 48   7
  (data (i32.const 64) "lock_state")          ;; 64  10
  ;; 128: battery, 136: lock_state, as the host writes them (f64)

  (func (export "hookline_abi_v2"))

  (func (export "hookline_init") (result i32)
    (local $rc i32)
    (local.set $rc (call $subscribe (i32.const 0) (i32.const 15) (i32.const 16) (i32.const 15)))
    (select (local.get $rc) (i32.const 0) (i32.lt_s (local.get $rc) (i32.const 0))))

  (func (export "hookline_on_event") (param $hook i32) (param $subscription i32) (result i32)
    (local $lock_state f64)
    (local $rc i32)
    ;; A lookup that fails (not JSON, no such field, not a number) is a report we cannot
    ;; judge: no alarm, and the event is still accepted.
    (if (i32.lt_s (call $payload_f64 (i32.const 48) (i32.const 7) (i32.const 128)) (i32.const 0))
      (then (return (i32.const 0))))
    (if (i32.lt_s (call $payload_f64 (i32.const 64) (i32.const 10) (i32.const 136)) (i32.const 0))
      (then (return (i32.const 0))))
    (local.set $lock_state (f64.load (i32.const 136)))
    (if (i32.and
          (f64.ge (f64.load (i32.const 128)) (f64.const 20))
          (i32.or (f64.eq (local.get $lock_state) (f64.const 0))
                  (f64.eq (local.get $lock_state) (f64.const 1))))
      (then (return (i32.const 0))))
    ;; key_len -1: the default key, the client id. A refused route is passed on.
    (local.set $rc (call $route (i32.const 32) (i32.const 11) (i32.const 0) (i32.const -1)))
    (select (local.get $rc) (i32.const 0) (i32.lt_s (local.get $rc) (i32.const 0)))))
