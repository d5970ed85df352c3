;; hookline example rule "battery_alarm", hand-written WebAssembly text (guest ABI v2).
;;
;; On message.publish on devices/+/state, reads the lock's JSON state, e.g.
;;   {"process_id":"7802441525528958","action":"unlock","battery":83.4,"lock_state":1,...}
;; and routes the event to Kafka topic alarm_state, keyed by the client id, when
;; battery < 20 or lock_state is not 0 or 1. Otherwise, and for a payload that cannot
;; be read (see $scan), it routes nothing and returns 0.
;;
;; Nothing to build: drop the .wat file into the rules directory, the host compiles it.
(module
  (import "hookline" "subscribe" (func $subscribe (param i32 i32 i32 i32) (result i32)))
  ;; event_read(field, dst_ptr, dst_len) -> the field's FULL length | negative error;
  ;; copies min(full length, dst_len) bytes. Fields: 1 client id, 3 payload.
  (import "hookline" "event_read" (func $event_read (param i32 i32 i32) (result i32)))
  (import "hookline" "route" (func $route (param i32 i32 i32 i32) (result i32)))

  ;; Layout of the one 64 KiB page:
  ;;      0 ..   127  constant strings (below)
  ;;   1024 ..  5119  payload buffer (4096 bytes; larger payloads are not inspected)
  ;;   5120 ..  9215  client id buffer (4096 bytes, the ABI's key limit)
  (memory (export "memory") 1)
  (data (i32.const 0)  "message.publish")     ;;  0  15
  (data (i32.const 16) "devices/+/state")     ;; 16  15
  (data (i32.const 32) "alarm_state")         ;; 32  11
  (data (i32.const 48) "\"battery\":")        ;; 48  10
  (data (i32.const 64) "\"lock_state\":")     ;; 64  13

  ;; The number last read by $scan: sign, integer part (saturated at 1000000), and
  ;; whether its fraction is zero.
  (global $negative (mut i32) (i32.const 0))
  (global $integer (mut i32) (i32.const 0))
  (global $fraction_zero (mut i32) (i32.const 1))

  (func (export "hookline_abi_v2"))

  (func (export "hookline_init") (result i32)
    (local $rc i32)
    (local.set $rc (call $subscribe (i32.const 0) (i32.const 15) (i32.const 16) (i32.const 15)))
    (select (local.get $rc) (i32.const 0) (i32.lt_s (local.get $rc) (i32.const 0))))

  ;; payload[$i]
  (func $byte (param $i i32) (result i32)
    (i32.load8_u offset=1024 (local.get $i)))

  (func $is_digit (param $c i32) (result i32)
    (i32.lt_u (i32.sub (local.get $c) (i32.const 48)) (i32.const 10)))

  ;; Finds the first occurrence of the $key_len bytes at $key in payload[0..$len), skips
  ;; spaces/tabs, then reads a number -?[0-9]+(\.[0-9]+)? that must be followed by
  ;; ',', '}' or whitespace. Sets the three globals and returns 1, or returns 0 (key
  ;; missing or number malformed).
  (func $scan (param $key i32) (param $key_len i32) (param $len i32) (result i32)
    (local $at i32) (local $k i32) (local $i i32) (local $digits i32) (local $c i32)
    ;; 1. the key
    (local.set $i (i32.const -1))
    (block $searched
      (loop $next_at
        (br_if $searched (i32.gt_s (i32.add (local.get $at) (local.get $key_len)) (local.get $len)))
        (local.set $k (i32.const 0))
        (block $mismatch
          (loop $next_k
            (if (i32.eq (local.get $k) (local.get $key_len))
              (then
                (local.set $i (i32.add (local.get $at) (local.get $key_len)))
                (br $searched)))
            (br_if $mismatch
              (i32.ne (call $byte (i32.add (local.get $at) (local.get $k)))
                      (i32.load8_u (i32.add (local.get $key) (local.get $k)))))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $next_k)))
        (local.set $at (i32.add (local.get $at) (i32.const 1)))
        (br $next_at)))
    (if (i32.lt_s (local.get $i) (i32.const 0)) (then (return (i32.const 0))))
    ;; 2. spaces and tabs
    (block $skipped
      (loop $skip
        (br_if $skipped (i32.ge_s (local.get $i) (local.get $len)))
        (local.set $c (call $byte (local.get $i)))
        (br_if $skipped (i32.and (i32.ne (local.get $c) (i32.const 32))    ;; ' '
                                 (i32.ne (local.get $c) (i32.const 9))))   ;; '\t'
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $skip)))
    (global.set $negative (i32.const 0))
    (global.set $integer (i32.const 0))
    (global.set $fraction_zero (i32.const 1))
    ;; 3. sign
    (if (i32.lt_s (local.get $i) (local.get $len))
      (then
        (if (i32.eq (call $byte (local.get $i)) (i32.const 45))            ;; '-'
          (then
            (global.set $negative (i32.const 1))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))))))
    ;; 4. integer part: at least one digit
    (block $int_done
      (loop $int_digit
        (br_if $int_done (i32.ge_s (local.get $i) (local.get $len)))
        (local.set $c (call $byte (local.get $i)))
        (br_if $int_done (i32.eqz (call $is_digit (local.get $c))))
        (global.set $integer
          (i32.add (i32.mul (global.get $integer) (i32.const 10))
                   (i32.sub (local.get $c) (i32.const 48))))
        (if (i32.gt_s (global.get $integer) (i32.const 1000000))
          (then (global.set $integer (i32.const 1000000))))
        (local.set $digits (i32.add (local.get $digits) (i32.const 1)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $int_digit)))
    (if (i32.eqz (local.get $digits)) (then (return (i32.const 0))))
    ;; 5. optional fraction: '.' and at least one digit
    (if (i32.lt_s (local.get $i) (local.get $len))
      (then
        (if (i32.eq (call $byte (local.get $i)) (i32.const 46))            ;; '.'
          (then
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (local.set $digits (i32.const 0))
            (block $frac_done
              (loop $frac_digit
                (br_if $frac_done (i32.ge_s (local.get $i) (local.get $len)))
                (local.set $c (call $byte (local.get $i)))
                (br_if $frac_done (i32.eqz (call $is_digit (local.get $c))))
                (if (i32.ne (local.get $c) (i32.const 48))
                  (then (global.set $fraction_zero (i32.const 0))))
                (local.set $digits (i32.add (local.get $digits) (i32.const 1)))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br $frac_digit)))
            (if (i32.eqz (local.get $digits)) (then (return (i32.const 0))))))))
    ;; 6. terminator: , } space \t \r \n (the end of the payload is not one)
    (if (i32.ge_s (local.get $i) (local.get $len)) (then (return (i32.const 0))))
    (local.set $c (call $byte (local.get $i)))
    (i32.or
      (i32.or (i32.or (i32.eq (local.get $c) (i32.const 44))    ;; ','
                      (i32.eq (local.get $c) (i32.const 125)))  ;; '}'
              (i32.or (i32.eq (local.get $c) (i32.const 32))    ;; ' '
                      (i32.eq (local.get $c) (i32.const 9))))   ;; '\t'
      (i32.or (i32.eq (local.get $c) (i32.const 13))            ;; '\r'
              (i32.eq (local.get $c) (i32.const 10)))))         ;; '\n'

  (func (export "hookline_on_event") (param $hook i32) (param $subscription i32) (result i32)
    (local $len i32) (local $low i32) (local $lock_ok i32) (local $rc i32)
    ;; The payload, into 1024..5119.
    (local.set $len (call $event_read (i32.const 3) (i32.const 1024) (i32.const 4096)))
    (if (i32.lt_s (local.get $len) (i32.const 0)) (then (return (local.get $len))))
    (if (i32.gt_s (local.get $len) (i32.const 4096)) (then (return (i32.const 0))))
    ;; battery < 20: negative, or integer part below 20.
    (if (i32.eqz (call $scan (i32.const 48) (i32.const 10) (local.get $len)))
      (then (return (i32.const 0))))
    (local.set $low (i32.or (global.get $negative)
                            (i32.lt_s (global.get $integer) (i32.const 20))))
    ;; lock_state is 0 or 1: fraction zero and (integer 0, or integer 1 and not negative).
    (if (i32.eqz (call $scan (i32.const 64) (i32.const 13) (local.get $len)))
      (then (return (i32.const 0))))
    (local.set $lock_ok
      (i32.and (global.get $fraction_zero)
               (i32.or (i32.eqz (global.get $integer))
                       (i32.and (i32.eq (global.get $integer) (i32.const 1))
                                (i32.eqz (global.get $negative))))))
    (if (i32.and (i32.eqz (local.get $low)) (local.get $lock_ok))
      (then (return (i32.const 0))))
    ;; The client id, into 5120..9215, passed explicitly as the record key.
    (local.set $len (call $event_read (i32.const 1) (i32.const 5120) (i32.const 4096)))
    (if (i32.lt_s (local.get $len) (i32.const 0)) (then (return (local.get $len))))
    (if (i32.gt_s (local.get $len) (i32.const 4096)) (then (return (i32.const 0))))
    (local.set $rc (call $route (i32.const 32) (i32.const 11) (i32.const 5120) (local.get $len)))
    (select (local.get $rc) (i32.const 0) (i32.lt_s (local.get $rc) (i32.const 0))))
)
