//! `hookline rule ...`: tools for rule authors, usable in their own CI.
//!
//! - `new LANG NAME`: scaffolds a rule project (see `scaffold`);
//! - `check MODULE`: loads the module as the gateway would and prints what it subscribes to;
//! - `test MODULE [--events FILE]`: runs events (MQTT hooks, and `kafka.record` records)
//!   through it and prints each decision (routes, MQTT publishes, rejections) and its
//!   cost; exits non-zero on a trap, a timeout or an invalid route or publish.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use base64::Engine as _;
use bytes::Bytes;
use clap::Subcommand;
use serde::Deserialize;

use crate::config::RulesConfig;
use crate::hooks::{ConsumedRecord, Hook, HookEvent};
use crate::rules::{signature, AbiVersion, CallFailure, MqttMessage, RuleEngine, RuleInstance, RuleModule, RuleSettings};

/// The scenario's events, used by `rule test` without `--events`.
const SEED_EVENTS: &str = include_str!("seed_events.jsonl");
/// Calls per event when measuring a decision's cost.
const COST_SAMPLES: u32 = 1000;

#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Create a rule project that builds as is (the language's SDK is copied into it).
    New {
        lang: super::scaffold::Lang,
        /// Rule name: lower-case letters, digits, `_`; also the Kafka topic it routes to.
        name: String,
        /// Where to create the project directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Create an ed25519 key pair for signing rules: OUT.key (private) and OUT.pub
    /// (give OUT.pub to the gateway as rules.public_key).
    Keygen {
        /// Path prefix of the two files.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sign a module (and its settings file, if any): writes `<module>.sig`.
    Sign {
        module: PathBuf,
        /// Private key file from `hookline rule keygen`.
        #[arg(long)]
        key: PathBuf,
    },
    /// Load a module as the gateway would (ABI, exports, imports, init) and print its
    /// subscriptions.
    Check {
        /// The rule module (`.wasm` or `.wat`); a `<name>.toml` beside it is its settings.
        module: PathBuf,
    },
    /// Run events through a module and print each decision and its cost; exits non-zero
    /// on a trap, a timeout or an invalid route or publish.
    Test {
        /// The rule module (`.wasm` or `.wat`); a `<name>.toml` beside it is its settings.
        module: PathBuf,
        /// Events, one JSON object a line: {"hook", "topic", "client_id", "username",
        /// "payload" (text) or "payload_base64", "qos", "from"}; for hook "kafka.record"
        /// (a record consumed from Kafka): {"hook", "topic" (the Kafka topic), "key"
        /// (text, absent: no key) or "key_base64", "value" (text) or "value_base64",
        /// "headers" ([name, value] text pairs), "partition", "offset"}. Default: the
        /// door-lock scenario's events.
        #[arg(long)]
        events: Option<PathBuf>,
    },
}

pub fn run(command: RuleCommand) -> anyhow::Result<()> {
    // Rules are checked against Kafka's topic names, which every sink takes.
    let engine = RuleEngine::new(&RulesConfig::default(), crate::sink::DestinationNames::kafka())?;
    match command {
        RuleCommand::New { lang, name, dir } => {
            let root = super::scaffold::create(lang, &name, &dir)?;
            println!("created {}; build it with {}/build.sh", root.display(), root.display());
            Ok(())
        }
        RuleCommand::Keygen { out } => {
            let (private, public) = signature::generate();
            let (key_path, pub_path) = (out.with_extension("key"), out.with_extension("pub"));
            for path in [&key_path, &pub_path] {
                if path.exists() {
                    bail!("{} exists; refusing to overwrite a key", path.display());
                }
            }
            write_private(&key_path, &private)?;
            std::fs::write(&pub_path, public + "\n").with_context(|| format!("cannot write {}", pub_path.display()))?;
            println!(
                "private key: {} (keep it off the gateway)\npublic key:  {} (rules.public_key)",
                key_path.display(),
                pub_path.display()
            );
            Ok(())
        }
        RuleCommand::Sign { module, key } => {
            let key = signature::read_private_key(&key).map_err(anyhow::Error::msg)?;
            let bytes = std::fs::read(&module).with_context(|| format!("cannot read {}", module.display()))?;
            let (_, settings) = RuleSettings::read_for(&module)?;
            let sig = signature::sign(&key, &module, &bytes, &settings)?;
            println!("wrote {}", sig.display());
            Ok(())
        }
        RuleCommand::Check { module } => {
            let module = load(&engine, &module)?;
            print_summary(&module);
            Ok(())
        }
        RuleCommand::Test { module, events } => test(&engine, &module, events.as_deref()),
    }
}

/// Writes a private key readable by its owner only.
fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{text}")?;
    Ok(())
}

fn load(engine: &RuleEngine, path: &Path) -> anyhow::Result<RuleModule> {
    RuleModule::load_file(engine, path).with_context(|| format!("{} is not a valid rule", path.display()))
}

fn print_summary(module: &RuleModule) {
    let version = match module.version {
        AbiVersion::V1 => "v1",
        AbiVersion::V2 => "v2",
    };
    println!("{}: valid hookline rule (ABI {version})", module.name);
    for (i, (hook, filter)) in module.subscriptions.iter().enumerate() {
        println!("  subscription {i}: {} {}", hook.name(), filter.as_str());
    }
    if !module.settings.is_empty() {
        println!("  settings: {:?}", module.settings);
    }
}

/// One line of an events file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestEvent {
    hook: String,
    #[serde(default)]
    topic: String,
    #[serde(default)]
    client_id: String,
    #[serde(default)]
    username: String,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    payload_base64: Option<String>,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    from: Option<String>,
    // kafka.record only:
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    key_base64: Option<String>,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    value_base64: Option<String>,
    #[serde(default)]
    headers: Vec<(String, String)>,
    #[serde(default)]
    partition: Option<i32>,
    #[serde(default)]
    offset: Option<i64>,
}

impl TestEvent {
    /// The `kafka.record`-only fields this line sets, by name.
    fn record_fields(&self) -> Vec<&'static str> {
        let set = [
            ("key", self.key.is_some()),
            ("key_base64", self.key_base64.is_some()),
            ("value", self.value.is_some()),
            ("value_base64", self.value_base64.is_some()),
            ("headers", !self.headers.is_empty()),
            ("partition", self.partition.is_some()),
            ("offset", self.offset.is_some()),
        ];
        set.into_iter().filter(|(_, is_set)| *is_set).map(|(name, _)| name).collect()
    }

    /// The MQTT-only fields this line sets, by name.
    fn mqtt_fields(&self) -> Vec<&'static str> {
        let set = [
            ("client_id", !self.client_id.is_empty()),
            ("username", !self.username.is_empty()),
            ("payload", self.payload.is_some()),
            ("payload_base64", self.payload_base64.is_some()),
            ("qos", self.qos != 0),
            ("from", self.from.is_some()),
        ];
        set.into_iter().filter(|(_, is_set)| *is_set).map(|(name, _)| name).collect()
    }
}

/// Text, or base64 of bytes, or neither; `what` names the pair in the error.
fn text_or_base64(text: Option<String>, b64: Option<String>, what: &str) -> anyhow::Result<Option<Bytes>> {
    match (text, b64) {
        (Some(_), Some(_)) => bail!("give `{what}` or `{what}_base64`, not both"),
        (Some(text), None) => Ok(Some(Bytes::from(text))),
        (None, Some(b64)) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).with_context(|| format!("`{what}_base64` is not base64"))?;
            Ok(Some(Bytes::from(bytes)))
        }
        (None, None) => Ok(None),
    }
}

fn parse_events(text: &str, source: &str) -> anyhow::Result<Vec<HookEvent>> {
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{source}, line {}", i + 1);
        let raw: TestEvent = serde_json::from_str(line).with_context(at)?;
        let Some(hook) = Hook::from_name(&raw.hook) else {
            bail!("{}: unknown hook {:?}", at(), raw.hook);
        };
        if hook == Hook::KafkaRecord {
            if let Some(field) = raw.mqtt_fields().first() {
                bail!("{}: `{field}` is for MQTT hooks; a kafka.record event has topic, key, value, headers, partition, offset", at());
            }
            let key = text_or_base64(raw.key, raw.key_base64, "key").with_context(at)?.map(|k| k.to_vec());
            let value = text_or_base64(raw.value, raw.value_base64, "value").with_context(at)?.unwrap_or_default();
            let headers = raw.headers.into_iter().map(|(name, value)| (name, value.into_bytes())).collect();
            let record = ConsumedRecord { partition: raw.partition.unwrap_or(0), offset: raw.offset.unwrap_or(0), key, headers };
            events.push(HookEvent::kafka_record(&raw.topic, value, record));
            continue;
        }
        if let Some(field) = raw.record_fields().first() {
            bail!("{}: `{field}` is for kafka.record events only; an MQTT event has a payload", at());
        }
        let payload = text_or_base64(raw.payload, raw.payload_base64, "payload").with_context(at)?.unwrap_or_default();
        let mut event = HookEvent::new(hook, raw.client_id.into(), raw.username.into());
        event.topic = Bytes::from(raw.topic);
        event.payload = payload;
        event.qos = raw.qos;
        event.from = raw.from.map(Into::into);
        events.push(event);
    }
    Ok(events)
}

fn test(engine: &RuleEngine, path: &Path, events_file: Option<&Path>) -> anyhow::Result<()> {
    let module = Arc::new(load(engine, path)?);
    print_summary(&module);
    let events = match events_file {
        Some(file) => {
            let text = std::fs::read_to_string(file).with_context(|| format!("cannot read events file {}", file.display()))?;
            parse_events(&text, &file.display().to_string())?
        }
        None => parse_events(SEED_EVENTS, "built-in scenario events")?,
    };
    let mut instance = RuleInstance::new(engine, module.clone())?;
    let (mut routed, mut published, mut rejected, mut failed) = (0, 0, 0, 0);
    for (n, event) in events.iter().enumerate() {
        match &event.record {
            Some(record) => {
                let key = record.key.as_deref().map_or("none".to_string(), |k| format!("{:?}", String::from_utf8_lossy(k)));
                println!(
                    "#{} {} {} (partition {}, offset {}, key {key})",
                    n + 1,
                    event.hook.name(),
                    event.topic_str(),
                    record.partition,
                    record.offset
                );
            }
            None => println!("#{} {} {} (client {})", n + 1, event.hook.name(), event.topic_str(), event.client_id),
        }
        let Some(subscription) = module.subscription_for(event.hook, &event.topic) else {
            println!("   not subscribed: no WASM call");
            continue;
        };
        match instance.decide(engine, event, subscription) {
            Ok(decision) if decision.routes.is_empty() && decision.publishes.is_empty() => println!("   no route"),
            Ok(decision) => {
                routed += usize::from(!decision.routes.is_empty());
                published += usize::from(!decision.publishes.is_empty());
                for message in decision.publishes {
                    print_publish(message, event);
                }
                for route in decision.routes {
                    let key = match &route.key {
                        None => format!("{} (client id)", event.client_id),
                        Some(key) => String::from_utf8_lossy(key).into_owned(),
                    };
                    let headers = route.headers.iter().map(|(k, v)| format!(" {k}={}", String::from_utf8_lossy(v))).collect::<String>();
                    println!("   -> {} key={key}{headers}", route.topic);
                }
            }
            Err(failure) => {
                println!("   FAILED: {failure}");
                if matches!(failure, CallFailure::Rejected(_)) {
                    rejected += 1;
                } else {
                    failed += 1;
                    // A trapped instance is in an unknown state; continue with a fresh one.
                    instance = RuleInstance::new(engine, module.clone())?;
                }
                continue;
            }
        }
        println!("   cost: {:.0} ns per call", cost(engine, &mut instance, event, subscription));
    }
    println!("{} events: {routed} routed, {published} published, {rejected} rejected, {failed} failed", events.len());
    if failed > 0 {
        bail!("{failed} of {} events trapped, timed out or produced an invalid route or publish", events.len());
    }
    Ok(())
}

/// One MQTT message of a `kafka.record` decision: topic, QoS, retain, payload (a preview
/// of its text) and the MQTT 5 properties set.
fn print_publish(message: &MqttMessage, event: &HookEvent) {
    let (source, bytes) = match &message.payload {
        None => ("the record's value", &event.payload[..]),
        Some(bytes) => ("set by the rule", &bytes[..]),
    };
    const PREVIEW: usize = 60;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(PREVIEW)]);
    let more = if bytes.len() > PREVIEW { "..." } else { "" };
    println!(
        "   => MQTT {} qos={} retain={} payload={source}, {} bytes: {text:?}{more}",
        message.topic,
        message.qos,
        message.retain,
        bytes.len()
    );
    let p = &message.properties;
    let mut properties = Vec::new();
    if let Some(v) = p.payload_format_indicator {
        properties.push(format!("payload_format_indicator={v}"));
    }
    if let Some(v) = p.message_expiry_interval {
        properties.push(format!("message_expiry_interval={v}s"));
    }
    if let Some(v) = &p.content_type {
        properties.push(format!("content_type={v}"));
    }
    if let Some(v) = &p.response_topic {
        properties.push(format!("response_topic={v}"));
    }
    if let Some(v) = &p.correlation_data {
        properties.push(format!("correlation_data={} bytes", v.len()));
    }
    properties.extend(p.user_properties.iter().map(|(k, v)| format!("{k}={v}")));
    if !properties.is_empty() {
        println!("      properties: {}", properties.join(" "));
    }
}

/// Mean wall time of one decision, over `COST_SAMPLES` calls on a warm instance.
fn cost(engine: &RuleEngine, instance: &mut RuleInstance, event: &HookEvent, subscription: usize) -> f64 {
    let started = Instant::now();
    for _ in 0..COST_SAMPLES {
        let _ = instance.decide(engine, event, subscription);
    }
    started.elapsed().as_nanos() as f64 / COST_SAMPLES as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_events_parse() {
        let events = parse_events(SEED_EVENTS, "seed").unwrap();
        assert_eq!(events.len(), 11);
        assert!(events.iter().any(|e| e.hook == Hook::MessageAcked && e.from.as_deref() == Some("business-app-1")));
        let records: Vec<_> = events.iter().filter_map(|e| e.record.as_ref().map(|r| (e, r))).collect();
        assert_eq!(records.len(), 2, "a command record with a key and one without");
        assert!(records.iter().all(|(e, _)| e.hook == Hook::KafkaRecord && e.topic_str() == "device_commands"));
        assert_eq!(records[0].1.key.as_deref(), Some(&b"10083618796833171"[..]));
        assert_eq!(records[1].1.key, None);
    }

    #[test]
    fn a_kafka_record_line_carries_key_value_headers_partition_and_offset() {
        let line = r#"{"hook":"kafka.record","topic":"device_commands","key_base64":"AAE=","value":"v","headers":[["h","1"]],"partition":3,"offset":9}"#;
        let event = &parse_events(line, "f.jsonl").unwrap()[0];
        let record = event.record.as_ref().unwrap();
        assert_eq!((event.hook, &event.payload[..], event.topic_str().as_ref()), (Hook::KafkaRecord, &b"v"[..], "device_commands"));
        assert_eq!((record.partition, record.offset, record.key.as_deref()), (3, 9, Some(&[0u8, 1][..])));
        assert_eq!(record.headers, vec![("h".to_string(), b"1".to_vec())]);
    }

    #[test]
    fn fields_of_the_other_kind_of_event_are_refused_by_name() {
        let err = parse_events(r#"{"hook":"kafka.record","topic":"t","payload":"x"}"#, "f.jsonl").unwrap_err();
        assert!(format!("{err:#}").contains("`payload` is for MQTT hooks"), "{err:#}");
        let err = parse_events(r#"{"hook":"message.publish","topic":"t","key":"k"}"#, "f.jsonl").unwrap_err();
        assert!(format!("{err:#}").contains("`key` is for kafka.record events only"), "{err:#}");
    }

    #[test]
    fn a_bad_event_line_names_the_line() {
        let err = parse_events("{\"hook\":\"client.connected\"}\n{\"hook\":\"nope\"}\n", "f.jsonl").unwrap_err();
        assert!(format!("{err:#}").contains("f.jsonl, line 2"), "{err:#}");
    }
}
