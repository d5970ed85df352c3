;; A rule feeding two destinations at once (ABI v2, see wasm-sdk/ABI.md): each door-lock
;; state report goes
;;   - to the first configured destination (`route`): Kafka topic `message_state`, the
;;     JSON envelope, keyed by the lock id;
;;   - to the RabbitMQ destination named `rabbit` (`route_to`): exchange `lock-events`,
;;     routing key `state.<lock id>`, the raw MQTT payload, header `schema: door-lock/1`.
;; Config: `[sink] kind = "kafka"` and a `[sink.rabbit]` table (docs/rabbitmq.md).
(module
  (import "hookline" "subscribe" (func $subscribe (param i32 i32 i32 i32) (result i32)))
  (import "hookline" "route" (func $route (param i32 i32 i32 i32) (result i32)))
  (import "hookline" "route_to" (func $route_to (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "hookline" "route_value" (func $route_value (param i32 i32 i32) (result i32)))
  (import "hookline" "route_header" (func $route_header (param i32 i32 i32 i32) (result i32)))
  (import "hookline" "event_read" (func $event_read (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "message.publish")
  (data (i32.const 32) "devices/+/state")
  (data (i32.const 64) "message_state")
  (data (i32.const 96) "rabbit")
  (data (i32.const 128) "lock-events")
  (data (i32.const 160) "schema")
  (data (i32.const 176) "door-lock/1")
  ;; The routing key is built here: "state." then the client id (event field 1).
  (data (i32.const 256) "state.")
  (func (export "hookline_abi_v2"))
  (func (export "hookline_init") (result i32)
    (call $subscribe (i32.const 0) (i32.const 15) (i32.const 32) (i32.const 15)))
  (func (export "hookline_on_event") (param $hook i32) (param $sub i32) (result i32)
    (local $id_len i32)
    (if (i32.lt_s (call $route (i32.const 64) (i32.const 13) (i32.const 0) (i32.const -1)) (i32.const 0))
      (then (return (i32.const -1))))
    (local.set $id_len (call $event_read (i32.const 1) (i32.const 262) (i32.const 200)))
    ;; A client id longer than the 200 bytes kept for it would cut the key: refuse.
    (if (i32.gt_s (local.get $id_len) (i32.const 200))
      (then (return (i32.const -2))))
    (if (i32.lt_s (call $route_to (i32.const 96) (i32.const 6) (i32.const 128) (i32.const 11)
                                  (i32.const 256) (i32.add (i32.const 6) (local.get $id_len))) (i32.const 0))
      (then (return (i32.const -3))))
    (drop (call $route_value (i32.const 1) (i32.const 0) (i32.const 0)))
    (drop (call $route_header (i32.const 160) (i32.const 6) (i32.const 176) (i32.const 11)))
    (i32.const 0)))
