//! `hookline rule ...`: tools for rule authors, usable in their own CI.
//!
//! - `new LANG NAME`: scaffolds a rule project (see `scaffold`);
//! - `check MODULE`: loads the module as the gateway would and prints what it subscribes to;
//! - `test MODULE [--events FILE]`: runs events through it and prints each decision and
//!   its cost; exits non-zero on a trap, a timeout or an invalid route.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use base64::Engine as _;
use bytes::Bytes;
use clap::Subcommand;
use serde::Deserialize;

use crate::config::RulesConfig;
use crate::hooks::{Hook, HookEvent};
use crate::rules::{signature, CallFailure, RuleEngine, RuleInstance, RuleModule, RuleSettings};

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
    /// on a trap, a timeout or an invalid route.
    Test {
        /// The rule module (`.wasm` or `.wat`); a `<name>.toml` beside it is its settings.
        module: PathBuf,
        /// Events, one JSON object a line: {"hook", "topic", "client_id", "username",
        /// "payload" (text) or "payload_base64", "qos", "from"}. Default: the door-lock
        /// scenario's events.
        #[arg(long)]
        events: Option<PathBuf>,
    },
}

pub fn run(command: RuleCommand) -> anyhow::Result<()> {
    // Rules are checked against Kafka's topic names, which every sink takes.
    let engine = RuleEngine::new(&RulesConfig::default(), crate::sink::check_kafka_topic)?;
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
    println!("{}: valid hookline rule (ABI v1)", module.name);
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
}

fn parse_events(text: &str, source: &str) -> anyhow::Result<Vec<HookEvent>> {
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let at = || format!("{source}, line {}", i + 1);
        let raw: TestEvent = serde_json::from_str(line).with_context(at)?;
        let Some(hook) = Hook::from_name(&raw.hook) else {
            bail!("{}: unknown hook {:?}", at(), raw.hook);
        };
        let payload = match (raw.payload, raw.payload_base64) {
            (Some(_), Some(_)) => bail!("{}: give `payload` or `payload_base64`, not both", at()),
            (Some(text), None) => Bytes::from(text),
            (None, Some(b64)) => Bytes::from(base64::engine::general_purpose::STANDARD.decode(b64).with_context(at)?),
            (None, None) => Bytes::new(),
        };
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
    let (mut routed, mut failed) = (0, 0);
    for (n, event) in events.iter().enumerate() {
        println!("#{} {} {} (client {})", n + 1, event.hook.name(), event.topic_str(), event.client_id);
        let Some(subscription) = module.subscription_for(event.hook, &event.topic) else {
            println!("   not subscribed: no WASM call");
            continue;
        };
        match instance.decide(engine, event, subscription) {
            Ok(decision) if decision.routes.is_empty() && decision.publishes.is_empty() => println!("   no route"),
            Ok(decision) => {
                routed += 1;
                for message in decision.publishes {
                    let payload = match &message.payload {
                        None => "the record's value".to_string(),
                        Some(bytes) => format!("{} bytes", bytes.len()),
                    };
                    println!("   => MQTT {} qos={} retain={} payload={payload}", message.topic, message.qos, message.retain);
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
                if !matches!(failure, CallFailure::Rejected(_)) {
                    failed += 1;
                    // A trapped instance is in an unknown state; continue with a fresh one.
                    instance = RuleInstance::new(engine, module.clone())?;
                }
                continue;
            }
        }
        println!("   cost: {:.0} ns per call", cost(engine, &mut instance, event, subscription));
    }
    println!("{} events: {routed} routed, {failed} failed", events.len());
    if failed > 0 {
        bail!("{failed} of {} events trapped, timed out or produced an invalid route", events.len());
    }
    Ok(())
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
        assert_eq!(events.len(), 9);
        assert!(events.iter().any(|e| e.hook == Hook::MessageAcked && e.from.as_deref() == Some("business-app-1")));
    }

    #[test]
    fn a_bad_event_line_names_the_line() {
        let err = parse_events("{\"hook\":\"client.connected\"}\n{\"hook\":\"nope\"}\n", "f.jsonl").unwrap_err();
        assert!(format!("{err:#}").contains("f.jsonl, line 2"), "{err:#}");
    }
}
