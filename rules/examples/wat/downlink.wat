;; hookline example rule "downlink", hand-written WebAssembly text (guest ABI v2): the
;; door-lock scenario's commands through Kafka.
;;
;;   kafka.record on Kafka topic device_commands -> MQTT publish of the record's value
;;                                                  to devices/{key}/command, QoS 1
;;
;; A record whose key is missing, empty, longer than 4096 bytes or not one topic level
;; ('/', '+', '#') is rejected with -1: under ABI v2 a negative result rejects (counted,
;; nothing published). A key that is not UTF-8 makes the host refuse the topic (-8),
;; which is returned as is and rejects too.
;;
;; Nothing to build: drop the .wat file into the rules directory, the host compiles it.
(module
  ;; subscribe(hook_ptr, hook_len, filter_ptr, filter_len) -> index | negative error
  (import "hookline" "subscribe" (func $subscribe (param i32 i32 i32 i32) (result i32)))
  ;; event_read(field, dst_ptr, dst_len) -> the field's FULL length | negative error;
  ;; copies min(full length, dst_len) bytes. Field 6: the consumed record's key.
  (import "hookline" "event_read" (func $event_read (param i32 i32 i32) (result i32)))
  ;; publish(topic_ptr, topic_len, qos, retain, payload_ptr, payload_len) -> index |
  ;; negative error; payload_len -1 = the record's value (payload_ptr ignored).
  (import "hookline" "publish" (func $publish (param i32 i32 i32 i32 i32 i32) (result i32)))

  ;; Layout of the one 64 KiB page:
  ;;      0 ..   47  constant strings (below)
  ;;   1024 .. 1031  "devices/", the topic's fixed start
  ;;   1032 .. 5127  the key (4096 bytes, the ABI's key limit), then "/command" after it
  (memory (export "memory") 1)
  (data (i32.const 0)  "kafka.record")        ;;  0  12
  (data (i32.const 16) "device_commands")     ;; 16  15
  (data (i32.const 32) "/command")            ;; 32   8
  (data (i32.const 1024) "devices/")          ;; 1024 8

  (func (export "hookline_abi_v2"))

  (func (export "hookline_init") (result i32)
    (local $rc i32)
    (local.set $rc (call $subscribe (i32.const 0) (i32.const 12) (i32.const 16) (i32.const 15)))
    (select (local.get $rc) (i32.const 0) (i32.lt_s (local.get $rc) (i32.const 0))))

  ;; Only kafka.record on device_commands reaches here (the one subscription).
  (func (export "hookline_on_event") (param $hook i32) (param $subscription i32) (result i32)
    (local $len i32) (local $i i32) (local $c i32) (local $rc i32)
    ;; The key, straight after "devices/".
    (local.set $len (call $event_read (i32.const 6) (i32.const 1032) (i32.const 4096)))
    (if (i32.lt_s (local.get $len) (i32.const 0)) (then (return (local.get $len))))
    ;; No key (empty) or one longer than the buffer: no lock to send to.
    (if (i32.or (i32.eqz (local.get $len)) (i32.gt_s (local.get $len) (i32.const 4096)))
      (then (return (i32.const -1))))
    ;; One topic level only: no '/' (47), '+' (43) or '#' (35).
    (block $done
      (loop $scan
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (local.set $c (i32.load8_u (i32.add (i32.const 1032) (local.get $i))))
        (if (i32.or (i32.eq (local.get $c) (i32.const 47))
                    (i32.or (i32.eq (local.get $c) (i32.const 43)) (i32.eq (local.get $c) (i32.const 35))))
          (then (return (i32.const -1))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    ;; "/command" after the key, then publish 8 + len + 8 bytes of topic at QoS 1, not
    ;; retained, with the record's value as payload.
    (memory.copy (i32.add (i32.const 1032) (local.get $len)) (i32.const 32) (i32.const 8))
    (local.set $rc
      (call $publish (i32.const 1024) (i32.add (local.get $len) (i32.const 16))
                     (i32.const 1) (i32.const 0) (i32.const 0) (i32.const -1)))
    (select (local.get $rc) (i32.const 0) (i32.lt_s (local.get $rc) (i32.const 0))))
)
