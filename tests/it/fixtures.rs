//! Inline WAT rule modules for tests: ordinary routing rules built from parameters, and
//! hostile ones; and a private certificate authority for TLS tests.

/// A rule that routes every event of `hook` matching `filter` to Kafka `topic`, with the
/// default key; `on_event_extra` is WAT inserted before the route (e.g. a loop).
pub fn route_rule_with(hook: &str, filter: &str, topic: &str, on_event_extra: &str) -> String {
    route_module(hook, filter, topic, on_event_extra, false)
}

/// A rule (ABI v2) that routes every state report to Kafka `topic` and returns what the
/// host answered: a refused route's error code is passed on.
pub fn route_rule_returning_code(topic: &str) -> String {
    route_module("message.publish", "devices/+/state", topic, "", true)
}

fn route_module(hook: &str, filter: &str, topic: &str, on_event_extra: &str, returns_code: bool) -> String {
    let (abi, route) = match returns_code {
        true => ("v2", "(call $route (i32.const 512) (i32.const {topic_len}) (i32.const 0) (i32.const -1))"),
        false => ("v1", "(drop (call $route (i32.const 512) (i32.const {topic_len}) (i32.const 0) (i32.const -1)))\n    (i32.const 0)"),
    };
    let route = route.replace("{topic_len}", &topic.len().to_string());
    format!(
        r#"(module
  (import "hookline" "subscribe" (func $subscribe (param i32 i32 i32 i32) (result i32)))
  (import "hookline" "route" (func $route (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "{hook}")
  (data (i32.const 256) "{filter}")
  (data (i32.const 512) "{topic}")
  (func (export "hookline_abi_{abi}"))
  (func (export "hookline_init") (result i32)
    (drop (call $subscribe (i32.const 0) (i32.const {hook_len}) (i32.const 256) (i32.const {filter_len})))
    (i32.const 0))
  (func (export "hookline_on_event") (param $hook i32) (param $sub i32) (result i32)
    {on_event_extra}
    {route}))"#,
        hook_len = hook.len(),
        filter_len = filter.len(),
    )
}

pub fn route_rule(hook: &str, filter: &str, topic: &str) -> String {
    route_rule_with(hook, filter, topic, "")
}

/// Spins forever on every event: must be stopped by the call deadline.
pub fn infinite_loop_rule(filter: &str) -> String {
    route_rule_with("message.publish", filter, "never", "(loop $forever (br $forever))")
}

/// Grows its memory a page at a time, forever: must trap at the memory cap.
pub fn memory_bomb_rule(filter: &str) -> String {
    route_rule_with("message.publish", filter, "never", "(loop $grow (drop (memory.grow (i32.const 1))) (br $grow))")
}

/// Traps on every event.
pub fn trap_rule(filter: &str) -> String {
    route_rule_with("message.publish", filter, "never", "unreachable")
}

/// Routes `message.publish` on `devices/+/state` to the Kafka topic named by its
/// settings key `topic` (read with `config_get` at every event).
pub fn configurable_topic_rule() -> String {
    r#"(module
  (import "hookline" "subscribe" (func $subscribe (param i32 i32 i32 i32) (result i32)))
  (import "hookline" "route" (func $route (param i32 i32 i32 i32) (result i32)))
  (import "hookline" "config_get" (func $config_get (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "message.publish")
  (data (i32.const 32) "devices/+/state")
  (data (i32.const 64) "topic")
  (func (export "hookline_abi_v1"))
  (func (export "hookline_init") (result i32)
    (drop (call $subscribe (i32.const 0) (i32.const 15) (i32.const 32) (i32.const 15)))
    (i32.const 0))
  (func (export "hookline_on_event") (param $hook i32) (param $sub i32) (result i32)
    (local $len i32)
    (local.set $len (call $config_get (i32.const 64) (i32.const 5) (i32.const 128) (i32.const 256)))
    (if (i32.lt_s (local.get $len) (i32.const 1)) (then (return (i32.const 1))))
    (drop (call $route (i32.const 128) (local.get $len) (i32.const 0) (i32.const -1)))
    (i32.const 0)))"#
        .to_string()
}

/// Recurses without end on every event: must hit wasmtime's stack limit and trap.
pub fn deep_recursion_rule(filter: &str) -> String {
    format!(
        r#"(module
  (import "hookline" "subscribe" (func $subscribe (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "message.publish")
  (data (i32.const 256) "{filter}")
  (func (export "hookline_abi_v1"))
  (func (export "hookline_init") (result i32)
    (drop (call $subscribe (i32.const 0) (i32.const 15) (i32.const 256) (i32.const {filter_len})))
    (i32.const 0))
  (func $deeper (param $depth i64) (result i64)
    (i64.add (call $deeper (i64.add (local.get $depth) (i64.const 1))) (i64.const 1)))
  (func (export "hookline_on_event") (param $hook i32) (param $sub i32) (result i32)
    (drop (call $deeper (i64.const 0)))
    (i32.const 0)))"#,
        filter_len = filter.len(),
    )
}

/// Calls `route` to topic `spam` a thousand times per event, past the per-event limit.
pub fn route_flood_rule(filter: &str) -> String {
    route_rule_with(
        "message.publish",
        filter,
        "spam",
        "(local $i i32)
         (loop $more
           (drop (call $route (i32.const 512) (i32.const 4) (i32.const 0) (i32.const -1)))
           (local.set $i (i32.add (local.get $i) (i32.const 1)))
           (br_if $more (i32.lt_u (local.get $i) (i32.const 1000))))",
    )
}

/// Routes every event to `topic` with a `key_len`-byte key read from address 0; the
/// host must refuse a topic Kafka would not accept or a key over its limit.
pub fn route_with_key_rule(filter: &str, topic: &str, key_len: usize) -> String {
    route_rule_with(
        "message.publish",
        filter,
        topic,
        &format!("(drop (call $route (i32.const 512) (i32.const {}) (i32.const 0) (i32.const {key_len})))", topic.len()),
    )
}

/// A v2 downlink rule: each `kafka.record` of `kafka_topic` with a key goes to
/// `devices/{key}/command` at QoS 1 with the record's value; a record without a key (or
/// with one over 200 bytes) is rejected.
pub fn downlink_rule(kafka_topic: &str) -> String {
    format!(
        r#"(module
  (import "hookline" "subscribe" (func $subscribe (param i32 i32 i32 i32) (result i32)))
  (import "hookline" "event_read" (func $event_read (param i32 i32 i32) (result i32)))
  (import "hookline" "publish" (func $publish (param i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "kafka.record")
  (data (i32.const 32) "devices/")
  (data (i32.const 256) "/command")
  (data (i32.const 512) "{kafka_topic}")
  (func (export "hookline_abi_v2"))
  (func (export "hookline_init") (result i32)
    (drop (call $subscribe (i32.const 0) (i32.const 12) (i32.const 512) (i32.const {len})))
    (i32.const 0))
  (func (export "hookline_on_event") (param $hook i32) (param $sub i32) (result i32)
    (local $len i32)
    (local.set $len (call $event_read (i32.const 6) (i32.const 40) (i32.const 200)))
    (if (i32.or (i32.le_s (local.get $len) (i32.const 0)) (i32.gt_s (local.get $len) (i32.const 200)))
      (then (return (i32.const -1))))
    (memory.copy (i32.add (i32.const 40) (local.get $len)) (i32.const 256) (i32.const 8))
    (drop (call $publish (i32.const 32) (i32.add (local.get $len) (i32.const 16)) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 0)))"#,
        len = kafka_topic.len()
    )
}

/// A private certificate authority and a server certificate it signed, with their PEM
/// files (`ca.pem`, `server.pem`, `server.key`) in a directory of their own.
pub struct Pki {
    pub ca: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pub ca_pem: std::path::PathBuf,
    pub server_pem: std::path::PathBuf,
    pub server_key_pem: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA named `ca_name` (empty: none) and a server certificate for `server_names`.
    pub fn new(ca_name: &str, server_names: &[&str]) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        if !ca_name.is_empty() {
            ca_params.distinguished_name.push(DnType::CommonName, ca_name);
        }
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let names = server_names.iter().map(|name| name.to_string()).collect::<Vec<_>>();
        let server = CertificateParams::new(names).unwrap().signed_by(&server_key, &ca).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: String| {
            std::fs::write(dir.path().join(name), text).unwrap();
            dir.path().join(name)
        };
        let (ca_pem, server_pem, server_key_pem) =
            (write("ca.pem", ca.pem()), write("server.pem", server.pem()), write("server.key", server_key.serialize_pem()));
        Pki { ca, ca_pem, server_pem, server_key_pem, dir }
    }

    /// Writes `text` to a file `name` beside the certificates.
    pub fn write(&self, name: &str, text: &str) -> std::path::PathBuf {
        std::fs::write(self.dir.path().join(name), text).unwrap();
        self.dir.path().join(name)
    }
}
