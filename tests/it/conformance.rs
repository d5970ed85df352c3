//! "Rules in any WASM language": the example rules of `rules/examples/<language>/`, one
//! per rule kind (`seed`, `battery_alarm`, `downlink`) and language (Rust, C,
//! AssemblyScript, Zig, WAT), must all decide the shared corpus
//! `rules/examples/conformance.json` exactly alike, through the real host
//! (`RuleModule::load`, `RuleInstance::decide`): the same Kafka routes for MQTT events,
//! the same MQTT publishes for `kafka.record` events, the same rejections, and the ABI
//! version the corpus states for the kind.
//!
//! - The WAT examples always run, straight from `rules/examples/wat/` (the host compiles
//!   `.wat` itself, so they need no toolchain).
//! - With `HOOKLINE_CONFORMANCE_DIR` set to the OUT_DIR of `rules/examples/build.sh`,
//!   every module its `manifest.txt` lists as `built` runs too, and any of them failing
//!   fails the test. A language listed as `skipped` (its toolchain could not be
//!   installed) fails it too, unless `HOOKLINE_CONFORMANCE_ALLOW_SKIP` (set in `.ci/run`,
//!   empty there by default) allows it with a reason: `lang: reason; lang: reason`.
//!   Every language must appear in the manifest one way or the other.
//!
//! One summary line per language is printed (see it with `--nocapture`), plus the
//! per-event cost of each module, timed over a short loop on the corpus' first event the
//! module subscribes to.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookline::config::RulesConfig;
use hookline::hooks::{ConsumedRecord, Hook, HookEvent};
use hookline::rules::{AbiVersion, CallFailure, MqttMessage, Route, RuleEngine, RuleInstance, RuleModule};
use serde_json::Value;

const LANGUAGES: [&str; 5] = ["rust", "c", "assemblyscript", "zig", "wat"];
const KINDS: [&str; 3] = ["seed", "battery_alarm", "downlink"];
const DIR_VAR: &str = "HOOKLINE_CONFORMANCE_DIR";
const ALLOW_SKIP_VAR: &str = "HOOKLINE_CONFORMANCE_ALLOW_SKIP";
/// Iterations of the timing loop per module (`HOOKLINE_CONFORMANCE_ITERATIONS`).
const DEFAULT_ITERATIONS: u32 = 2_000;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/examples")
}

/// One route as the corpus states it: Kafka topic and key (`None`: the default key).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ExpectedRoute {
    topic: String,
    key: Option<String>,
}

/// One MQTT publish as the corpus states it (payload `None`: the record's value).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ExpectedPublish {
    topic: String,
    qos: u8,
    retain: bool,
    payload: Option<Vec<u8>>,
}

/// What a module must decide for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    /// An MQTT event: these routes, no publish.
    Routes(Vec<ExpectedRoute>),
    /// A `kafka.record` event: these publishes, no route.
    Publishes(Vec<ExpectedPublish>),
    /// The module's result rejects the event.
    Rejected,
}

struct Case {
    name: String,
    event: HookEvent,
    expect: BTreeMap<String, Expected>,
}

/// The corpus: its events, and the ABI version each rule kind's modules declare.
struct Corpus {
    cases: Vec<Case>,
    abi: BTreeMap<String, AbiVersion>,
}

fn text<'a>(value: &'a Value, field: &str, case: &str) -> &'a str {
    value[field].as_str().unwrap_or_else(|| panic!("conformance.json: event {case:?}: `{field}` must be a string"))
}

fn number(value: &Value, field: &str, case: &str) -> u64 {
    value[field].as_u64().unwrap_or_else(|| panic!("conformance.json: event {case:?}: `{field}` must be a number"))
}

/// A `kafka.record` event of the corpus: Kafka topic, key, value, headers, partition,
/// offset.
fn kafka_event(e: &Value, name: &str) -> HookEvent {
    let mut key = e["key"].as_str().map(|k| k.as_bytes().to_vec());
    if let Some(pad_to) = e.get("key_pad_to").and_then(Value::as_u64) {
        let key = key.as_mut().unwrap_or_else(|| panic!("event {name:?}: key_pad_to needs a key"));
        assert!(key.len() <= pad_to as usize, "event {name:?}: key longer than key_pad_to");
        key.resize(pad_to as usize, b'k');
    }
    let headers = e["headers"]
        .as_array()
        .unwrap_or_else(|| panic!("event {name:?}: `headers` must be an array of [name, value] pairs"))
        .iter()
        .map(|pair| match pair.as_array().map(Vec::as_slice) {
            Some([Value::String(n), Value::String(v)]) => (n.clone(), v.as_bytes().to_vec()),
            _ => panic!("event {name:?}: header {pair} is not a [name, value] pair of strings"),
        })
        .collect();
    let record = ConsumedRecord {
        partition: i32::try_from(number(e, "partition", name)).expect("partition fits i32"),
        offset: i64::try_from(number(e, "offset", name)).expect("offset fits i64"),
        key,
        headers,
    };
    HookEvent::kafka_record(text(e, "topic", name), Bytes::from(text(e, "value", name).to_string()), record)
}

/// An MQTT-side event of the corpus.
fn mqtt_event(e: &Value, name: &str, hook: Hook) -> HookEvent {
    let mut event = HookEvent::new(hook, text(e, "client_id", name).into(), text(e, "username", name).into());
    event.topic = Bytes::from(text(e, "topic", name).to_string());
    let mut payload = text(e, "payload", name).as_bytes().to_vec();
    if let Some(pad_to) = e.get("pad_to").and_then(Value::as_u64) {
        assert!(payload.len() <= pad_to as usize, "event {name:?}: payload longer than pad_to");
        payload.resize(pad_to as usize, b' ');
    }
    event.payload = Bytes::from(payload);
    event.qos = number(e, "qos", name) as u8;
    event.from = e["from"].as_str().map(Arc::from);
    event
}

/// `expect.<kind>` of one event: "rejected", or the routes (MQTT hooks) or publishes
/// (`kafka.record`) it lists.
fn expected(e: &Value, name: &str, kind: &str, event: &HookEvent) -> Expected {
    let value = &e["expect"][kind];
    if value.as_str() == Some("rejected") {
        return Expected::Rejected;
    }
    let items = value.as_array().unwrap_or_else(|| panic!("event {name:?}: `expect.{kind}` must be an array or \"rejected\""));
    if event.hook != Hook::KafkaRecord {
        let routes = items
            .iter()
            .map(|r| ExpectedRoute {
                topic: r["topic"].as_str().expect("route topic").to_string(),
                key: r["key"].as_str().map(str::to_string),
            })
            .collect();
        return Expected::Routes(routes);
    }
    let key = event.record.as_ref().and_then(|r| r.key.as_deref()).map(String::from_utf8_lossy).unwrap_or_default();
    let publishes = items
        .iter()
        .map(|p| ExpectedPublish {
            topic: p["topic"].as_str().expect("publish topic").replace("{key}", &key),
            qos: p["qos"].as_u64().unwrap_or_else(|| panic!("event {name:?}: publish `qos` must be a number")) as u8,
            retain: p["retain"].as_bool().unwrap_or_else(|| panic!("event {name:?}: publish `retain` must be a boolean")),
            payload: match &p["payload"] {
                Value::String(s) if s == "value" => None,
                Value::Array(bytes) => {
                    Some(bytes.iter().map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()).expect("payload byte")).collect())
                }
                other => panic!("event {name:?}: publish `payload` must be \"value\" or an array of bytes, not {other}"),
            },
        })
        .collect();
    Expected::Publishes(publishes)
}

fn load_corpus() -> Corpus {
    let path = examples_dir().join("conformance.json");
    let raw = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let events = doc["events"].as_array().expect("conformance.json: `events` must be an array");
    assert!(!events.is_empty(), "conformance.json has no events");
    let cases = events
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("every event needs a `name`").to_string();
            let hook_name = text(e, "hook", &name);
            let hook = Hook::from_name(hook_name).unwrap_or_else(|| panic!("event {name:?}: unknown hook {hook_name:?}"));
            let event = match hook {
                Hook::KafkaRecord => kafka_event(e, &name),
                _ => mqtt_event(e, &name, hook),
            };
            let expect = KINDS.iter().map(|kind| (kind.to_string(), expected(e, &name, kind, &event))).collect();
            Case { name, event, expect }
        })
        .collect();
    let abi = KINDS
        .iter()
        .map(|kind| {
            let version = match doc["abi"][kind].as_u64() {
                Some(1) => AbiVersion::V1,
                Some(2) => AbiVersion::V2,
                other => panic!("conformance.json: `abi.{kind}` must be 1 or 2, not {other:?}"),
            };
            (kind.to_string(), version)
        })
        .collect();
    Corpus { cases, abi }
}

/// What `instance` decides for `event`, the way a rule worker asks: only events matching
/// a subscription enter the module.
fn decide(
    engine: &RuleEngine,
    module: &RuleModule,
    instance: &mut RuleInstance,
    event: &HookEvent,
) -> Result<(Vec<Route>, Vec<MqttMessage>), CallFailure> {
    match module.subscription_for(event.hook, &event.topic) {
        None => Ok((Vec::new(), Vec::new())),
        Some(subscription) => {
            instance.decide(engine, event, subscription).map(|decision| (decision.routes.to_vec(), decision.publishes.to_vec()))
        }
    }
}

fn as_expected_route(route: &Route) -> Result<ExpectedRoute, String> {
    if !route.headers.is_empty() {
        return Err(format!("unexpected headers {:?}", route.headers));
    }
    let key = match &route.key {
        None => None,
        Some(key) => Some(String::from_utf8(key.clone()).map_err(|_| format!("key is not UTF-8: {key:?}"))?),
    };
    Ok(ExpectedRoute { topic: route.topic.to_string(), key })
}

fn as_expected_publish(message: &MqttMessage) -> Result<ExpectedPublish, String> {
    if message.properties != Default::default() {
        return Err(format!("unexpected MQTT properties {:?}", message.properties));
    }
    Ok(ExpectedPublish { topic: message.topic.clone(), qos: message.qos, retain: message.retain, payload: message.payload.clone() })
}

/// What the module decided, in the corpus' terms.
fn as_decided(outcome: Result<(Vec<Route>, Vec<MqttMessage>), CallFailure>, hook: Hook) -> Result<Expected, String> {
    let (routes, publishes) = match outcome {
        Err(CallFailure::Rejected(_)) => return Ok(Expected::Rejected),
        Err(failure) => return Err(failure.to_string()),
        Ok(decision) => decision,
    };
    match hook {
        Hook::KafkaRecord if !routes.is_empty() => Err(format!("routes for a kafka.record event: {routes:?}")),
        Hook::KafkaRecord => Ok(Expected::Publishes(publishes.iter().map(as_expected_publish).collect::<Result<_, _>>()?)),
        _ if !publishes.is_empty() => Err(format!("MQTT publishes for an MQTT event: {publishes:?}")),
        _ => Ok(Expected::Routes(routes.iter().map(as_expected_route).collect::<Result<_, _>>()?)),
    }
}

/// Shortens the corpus' one very long expected topic in a mismatch message.
fn shown(expected: &Expected) -> String {
    let text = format!("{expected:?}");
    match text.len() > 300 {
        true => format!("{}...({} chars)", &text[..300], text.len()),
        false => text,
    }
}

/// Loads `bytes` as rule kind `kind` and runs the whole corpus through one instance
/// (reused across events, as a worker does). Returns the time of one event, from a
/// short loop on the corpus' first event, or every mismatch found.
fn check_module(engine: &RuleEngine, corpus: &Corpus, kind: &str, file_name: &str, bytes: &[u8]) -> Result<Duration, String> {
    let module = Arc::new(RuleModule::load(engine, file_name, bytes).map_err(|e| format!("load failed: {e}"))?);
    if module.version != corpus.abi[kind] {
        return Err(format!("declares ABI {:?}, the corpus says {kind} is {:?}", module.version, corpus.abi[kind]));
    }
    let mut instance = RuleInstance::new(engine, module.clone()).map_err(|e| format!("instantiate failed: {e:#}"))?;
    let mut errors = Vec::new();
    for case in &corpus.cases {
        let expected = &case.expect[kind];
        match as_decided(decide(engine, &module, &mut instance, &case.event), case.event.hook) {
            Err(e) => errors.push(format!("{:?}: {e}", case.name)),
            Ok(got) if &got != expected => errors.push(format!("{:?}: expected {}, got {}", case.name, shown(expected), shown(&got))),
            Ok(_) => {}
        }
    }
    if !errors.is_empty() {
        return Err(format!("{} of {} events wrong:\n      {}", errors.len(), corpus.cases.len(), errors.join("\n      ")));
    }
    let iterations =
        std::env::var("HOOKLINE_CONFORMANCE_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_ITERATIONS).max(1);
    let (event, subscription) = corpus
        .cases
        .iter()
        .find_map(|case| module.subscription_for(case.event.hook, &case.event.topic).map(|s| (&case.event, s)))
        .ok_or("subscribes to no event of the corpus")?;
    let started = Instant::now();
    for _ in 0..iterations {
        let routes = instance.decide(engine, std::hint::black_box(event), subscription).map_err(|e| e.to_string())?;
        std::hint::black_box(routes);
    }
    Ok(started.elapsed() / iterations)
}

/// The languages that may be skipped, with why: `HOOKLINE_CONFORMANCE_ALLOW_SKIP`, as
/// `lang: reason` entries separated by `;`.
fn allowed_skips() -> BTreeMap<String, String> {
    let list = std::env::var(ALLOW_SKIP_VAR).unwrap_or_default();
    list.split(';')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            let (lang, reason) = entry.split_once(':').map_or((entry, ""), |(l, r)| (l.trim(), r.trim()));
            assert!(LANGUAGES.contains(&lang), "{ALLOW_SKIP_VAR}: unknown language {lang:?} in {entry:?}; the languages are {LANGUAGES:?}");
            assert!(!reason.is_empty(), "{ALLOW_SKIP_VAR}: {entry:?} gives no reason; write it as \"{lang}: why it may be skipped\"");
            (lang.to_string(), reason.to_string())
        })
        .collect()
}

/// One line of `manifest.txt`.
enum Entry {
    Built {
        lang: String,
        rule: String,
        bytes: u64,
    },
    Skipped {
        lang: String,
        reason: String,
    },
    /// build.sh could not build a module with an installed toolchain.
    Failed {
        lang: String,
        reason: String,
    },
}

fn read_manifest(dir: &Path) -> Vec<Entry> {
    let path = dir.join("manifest.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{DIR_VAR} is set, but {} cannot be read: {e}", path.display()));
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["built", lang, rule, bytes] => Entry::Built {
                    lang: lang.to_string(),
                    rule: rule.to_string(),
                    bytes: bytes.parse().unwrap_or_else(|_| panic!("manifest.txt: bad size in {line:?}")),
                },
                ["skipped", lang, reason @ ..] => Entry::Skipped { lang: lang.to_string(), reason: reason.join(" ") },
                ["failed", lang, reason @ ..] => Entry::Failed { lang: lang.to_string(), reason: reason.join(" ") },
                _ => panic!("manifest.txt: unrecognised line {line:?}"),
            }
        })
        .collect()
}

#[derive(Default)]
struct Report {
    passed: Vec<String>,
    failed: Vec<String>,
    skipped: Vec<String>,
    costs: Vec<String>,
}

impl Report {
    /// Checks the module at `path` as rule `kind`; `origin` tells where it came from.
    fn run(&mut self, engine: &RuleEngine, corpus: &Corpus, lang: &str, kind: &str, origin: &str, path: &Path) {
        let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
        let outcome = match std::fs::read(path) {
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
            Ok(bytes) => check_module(engine, corpus, kind, &file_name, &bytes).map(|cost| (cost, bytes.len())),
        };
        match outcome {
            Ok((cost, size)) => {
                self.passed.push(format!("{kind}{origin} {size} B"));
                self.costs.push(format!("{lang}/{kind}{origin}: {} ns/event", cost.as_nanos()));
            }
            Err(e) => self.failed.push(format!("{kind} ({}): {e}", path.display())),
        }
    }
}

#[test]
fn example_rules_in_every_language_decide_the_corpus_alike() {
    let corpus = load_corpus();
    let engine = RuleEngine::new(&RulesConfig::default(), hookline::sink::DestinationNames::kafka()).unwrap();
    let mut reports: BTreeMap<&str, Report> = LANGUAGES.iter().map(|l| (*l, Report::default())).collect();
    let allowed = allowed_skips();

    // Always: the WAT examples from source.
    for kind in KINDS {
        let path = examples_dir().join("wat").join(format!("{kind}.wat"));
        reports.get_mut("wat").unwrap().run(&engine, &corpus, "wat", kind, " (source)", &path);
    }

    // The modules rules/examples/build.sh built, when told where.
    let out_dir = std::env::var_os(DIR_VAR).map(PathBuf::from);
    if let Some(dir) = &out_dir {
        let entries = read_manifest(dir);
        for lang in LANGUAGES {
            let listed = entries.iter().any(|e| match e {
                Entry::Built { lang: l, .. } | Entry::Skipped { lang: l, .. } | Entry::Failed { lang: l, .. } => l == lang,
            });
            if !listed {
                reports.get_mut(lang).unwrap().failed.push("missing from manifest.txt".into());
            }
        }
        for entry in &entries {
            match entry {
                Entry::Skipped { lang, reason } => match (reports.get_mut(lang.as_str()), allowed.get(lang)) {
                    (Some(report), Some(why)) => report.skipped.push(format!("{reason} (allowed by {ALLOW_SKIP_VAR}: {why})")),
                    (Some(report), None) => report.failed.push(format!(
                        "skipped: {reason}; install its toolchain, or allow the skip in .ci/run with {ALLOW_SKIP_VAR}=\"{lang}: <why>\""
                    )),
                    (None, _) => panic!("manifest.txt: unknown language {lang:?}"),
                },
                Entry::Failed { lang, reason } => match reports.get_mut(lang.as_str()) {
                    Some(report) => report.failed.push(format!("build failed: {reason}")),
                    None => panic!("manifest.txt: unknown language {lang:?}"),
                },
                Entry::Built { lang, rule, bytes } => {
                    let Some(report) = reports.get_mut(lang.as_str()) else {
                        panic!("manifest.txt: unknown language {lang:?}");
                    };
                    if !KINDS.contains(&rule.as_str()) {
                        report.failed.push(format!("manifest.txt lists unknown rule {rule:?}"));
                        continue;
                    }
                    let ext = if lang == "wat" { "wat" } else { "wasm" };
                    let path = dir.join(lang).join(format!("{rule}.{ext}"));
                    match std::fs::metadata(&path) {
                        Ok(meta) if meta.len() != *bytes => {
                            report.failed.push(format!("{}: {} bytes, manifest says {bytes}", path.display(), meta.len()))
                        }
                        _ => report.run(&engine, &corpus, lang, rule, "", &path),
                    }
                }
            }
        }
        // A built language must have built every rule kind.
        for lang in LANGUAGES {
            let built: Vec<&str> = entries
                .iter()
                .filter_map(|e| match e {
                    Entry::Built { lang: l, rule, .. } if l == lang => Some(rule.as_str()),
                    _ => None,
                })
                .collect();
            if !built.is_empty() {
                for kind in KINDS {
                    if !built.contains(&kind) {
                        reports.get_mut(lang).unwrap().failed.push(format!("{kind} not built"));
                    }
                }
            }
        }
    }

    let mut failures = 0;
    eprintln!("conformance: {} events x {} rule kinds", corpus.cases.len(), KINDS.len());
    if allowed.is_empty() {
        eprintln!("conformance: allowed to skip: none ({ALLOW_SKIP_VAR} empty)");
    }
    for (lang, why) in &allowed {
        eprintln!("conformance: allowed to skip: {lang}: {why}");
    }
    for (lang, report) in &reports {
        let line = if !report.failed.is_empty() {
            failures += report.failed.len();
            format!("FAILED: {}", report.failed.join("; "))
        } else if !report.passed.is_empty() {
            format!("built+passed: {}", report.passed.join(", "))
        } else if !report.skipped.is_empty() {
            format!("skipped: {}", report.skipped.join("; "))
        } else {
            format!("not run ({DIR_VAR} not set; run rules/examples/build.sh OUT_DIR and set it)")
        };
        eprintln!("conformance: {lang:<15} {line}");
    }
    let build = if cfg!(debug_assertions) { "debug build of the host" } else { "release build of the host" };
    for cost in reports.values().flat_map(|r| &r.costs) {
        eprintln!("conformance: cost {cost} ({build})");
    }
    assert_eq!(failures, 0, "example rules disagree with rules/examples/conformance.json (see above)");
}
