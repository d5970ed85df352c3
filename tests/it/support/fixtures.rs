//! Inline WAT rule modules for tests: ordinary routing rules built from parameters, and
//! hostile ones; and a private certificate authority for TLS tests.

/// A rule module in WAT: the one place its frame is written. It imports `subscribe` and
/// the host functions named in `imports` (as `$name`), exports one page of memory, the
/// ABI marker `hookline_abi_v{abi}`, an init that subscribes to `hook` (at address 0) on
/// `filter` (at `FILTER_AT`), the `functions` and a `hookline_on_event` (params `$hook`,
/// `$sub`) whose body is `on_event`; `data` places the strings `on_event` reads.
#[derive(Default)]
pub struct RuleWat<'a> {
    pub abi: u8,
    pub imports: &'a [&'a str],
    pub hook: &'a str,
    pub filter: &'a str,
    pub data: &'a [(u32, &'a str)],
    pub functions: &'a str,
    pub on_event: &'a str,
}

/// After the hook; a rule's own data goes between them or from 512 on.
const FILTER_AT: u32 = 256;

impl RuleWat<'_> {
    pub fn build(&self) -> String {
        let signature = |name: &str| match name {
            "subscribe" | "route" | "config_get" => "(param i32 i32 i32 i32)",
            "event_read" | "route_value" => "(param i32 i32 i32)",
            "publish" | "route_to" => "(param i32 i32 i32 i32 i32 i32)",
            other => panic!("no host function {other} known to RuleWat"),
        };
        let imports: String = std::iter::once(&"subscribe")
            .chain(self.imports)
            .map(|name| format!("  (import \"hookline\" \"{name}\" (func ${name} {} (result i32)))\n", signature(name)))
            .collect();
        let data: String = [(0, self.hook), (FILTER_AT, self.filter)]
            .iter()
            .chain(self.data)
            .map(|(at, text)| format!("  (data (i32.const {at}) \"{text}\")\n"))
            .collect();
        format!(
            r#"(module
{imports}  (memory (export "memory") 1)
{data}  (func (export "hookline_abi_v{abi}"))
  (func (export "hookline_init") (result i32)
    (drop (call $subscribe (i32.const 0) (i32.const {hook_len}) (i32.const {FILTER_AT}) (i32.const {filter_len})))
    (i32.const 0)){functions}
  (func (export "hookline_on_event") (param $hook i32) (param $sub i32) (result i32)
    {on_event}))"#,
            abi = self.abi,
            hook_len = self.hook.len(),
            filter_len = self.filter.len(),
            functions = match self.functions {
                "" => String::new(),
                functions => format!("\n  {functions}"),
            },
            on_event = self.on_event,
        )
    }
}

/// A rule that routes every event of `hook` matching `filter` to Kafka `topic` (at
/// address 512), with the default key; `on_event_extra` is WAT inserted before the
/// route (e.g. a loop).
pub fn route_rule_with(hook: &str, filter: &str, topic: &str, on_event_extra: &str) -> String {
    let route = format!("(drop (call $route (i32.const 512) (i32.const {}) (i32.const 0) (i32.const -1)))", topic.len());
    let on_event = format!("{on_event_extra}\n    {route}\n    (i32.const 0)");
    RuleWat { abi: 1, imports: &["route"], hook, filter, data: &[(512, topic)], on_event: &on_event, ..Default::default() }.build()
}

/// A rule (ABI v2) that routes every state report to Kafka `topic` and returns what the
/// host answered: a refused route's error code is passed on.
pub fn route_rule_returning_code(topic: &str) -> String {
    let on_event = format!("(call $route (i32.const 512) (i32.const {}) (i32.const 0) (i32.const -1))", topic.len());
    let (hook, filter) = ("message.publish", "devices/+/state");
    RuleWat { abi: 2, imports: &["route"], hook, filter, data: &[(512, topic)], on_event: &on_event, ..Default::default() }.build()
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
    RuleWat {
        abi: 1,
        imports: &["route", "config_get"],
        hook: "message.publish",
        filter: "devices/+/state",
        data: &[(64, "topic")],
        on_event: "(local $len i32)
    (local.set $len (call $config_get (i32.const 64) (i32.const 5) (i32.const 512) (i32.const 256)))
    (if (i32.lt_s (local.get $len) (i32.const 1)) (then (return (i32.const 1))))
    (drop (call $route (i32.const 512) (local.get $len) (i32.const 0) (i32.const -1)))
    (i32.const 0)",
        ..Default::default()
    }
    .build()
}

/// Recurses without end on every event: must hit wasmtime's stack limit and trap.
pub fn deep_recursion_rule(filter: &str) -> String {
    RuleWat {
        abi: 1,
        hook: "message.publish",
        filter,
        functions: "(func $deeper (param $depth i64) (result i64)
    (i64.add (call $deeper (i64.add (local.get $depth) (i64.const 1))) (i64.const 1)))",
        on_event: "(drop (call $deeper (i64.const 0)))
    (i32.const 0)",
        ..Default::default()
    }
    .build()
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
    RuleWat {
        abi: 2,
        imports: &["event_read", "publish"],
        hook: "kafka.record",
        filter: kafka_topic,
        data: &[(32, "devices/"), (512, "/command")],
        on_event: "(local $len i32)
    (local.set $len (call $event_read (i32.const 6) (i32.const 40) (i32.const 200)))
    (if (i32.or (i32.le_s (local.get $len) (i32.const 0)) (i32.gt_s (local.get $len) (i32.const 200)))
      (then (return (i32.const -1))))
    (memory.copy (i32.add (i32.const 40) (local.get $len)) (i32.const 512) (i32.const 8))
    (drop (call $publish (i32.const 32) (i32.add (local.get $len) (i32.const 16)) (i32.const 1) (i32.const 0) (i32.const 0) (i32.const -1)))
    (i32.const 0)",
        ..Default::default()
    }
    .build()
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
