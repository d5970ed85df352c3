//! "Rules in any WASM language": the example rules of `rules/examples/<language>/`, one
//! per rule kind (`seed`, `battery_alarm`) and language (Rust, C, AssemblyScript, Zig,
//! WAT), must all route the shared corpus `rules/examples/conformance.json` exactly
//! alike, through the real host (`RuleModule::load`, `RuleInstance::decide`).
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
//! per-event cost of each module, timed over a short loop on the scenario's state event.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hookline::config::RulesConfig;
use hookline::hooks::{Hook, HookEvent};
use hookline::rules::{CallFailure, Route, RuleEngine, RuleInstance, RuleModule};
use serde_json::Value;

const LANGUAGES: [&str; 5] = ["rust", "c", "assemblyscript", "zig", "wat"];
const KINDS: [&str; 2] = ["seed", "battery_alarm"];
const DIR_VAR: &str = "HOOKLINE_CONFORMANCE_DIR";
const ALLOW_SKIP_VAR: &str = "HOOKLINE_CONFORMANCE_ALLOW_SKIP";
/// Iterations of the timing loop per module (`HOOKLINE_CONFORMANCE_ITERATIONS`).
const DEFAULT_ITERATIONS: u32 = 2_000;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules/examples")
}

/// One route as the corpus states it: Kafka topic and key (`None`: the default key).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    topic: String,
    key: Option<String>,
}

struct Case {
    name: String,
    event: HookEvent,
    expect: BTreeMap<String, Vec<Expected>>,
}

fn text<'a>(value: &'a Value, field: &str, case: &str) -> &'a str {
    value[field].as_str().unwrap_or_else(|| panic!("conformance.json: event {case:?}: `{field}` must be a string"))
}

fn load_corpus() -> Vec<Case> {
    let path = examples_dir().join("conformance.json");
    let raw = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc: Value = serde_json::from_str(&raw).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let events = doc["events"].as_array().expect("conformance.json: `events` must be an array");
    assert!(!events.is_empty(), "conformance.json has no events");
    events
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("every event needs a `name`").to_string();
            let hook_name = text(e, "hook", &name);
            let hook = Hook::from_name(hook_name).unwrap_or_else(|| panic!("event {name:?}: unknown hook {hook_name:?}"));
            let mut event = HookEvent::new(hook, text(e, "client_id", &name).into(), text(e, "username", &name).into());
            event.topic = Bytes::from(text(e, "topic", &name).to_string());
            let mut payload = text(e, "payload", &name).as_bytes().to_vec();
            if let Some(pad_to) = e.get("pad_to").and_then(Value::as_u64) {
                assert!(payload.len() <= pad_to as usize, "event {name:?}: payload longer than pad_to");
                payload.resize(pad_to as usize, b' ');
            }
            event.payload = Bytes::from(payload);
            event.qos = e["qos"].as_u64().unwrap_or_else(|| panic!("event {name:?}: `qos` must be a number")) as u8;
            event.from = e["from"].as_str().map(Arc::from);
            let mut expect = BTreeMap::new();
            for kind in KINDS {
                let routes = e["expect"][kind]
                    .as_array()
                    .unwrap_or_else(|| panic!("event {name:?}: `expect.{kind}` must be an array"))
                    .iter()
                    .map(|r| Expected {
                        topic: r["topic"].as_str().expect("route topic").to_string(),
                        key: r["key"].as_str().map(str::to_string),
                    })
                    .collect();
                expect.insert(kind.to_string(), routes);
            }
            Case { name, event, expect }
        })
        .collect()
}

/// The routes `instance` decides for `event`, the way a rule worker asks for them: only
/// events matching a subscription enter the module.
fn decide(engine: &RuleEngine, module: &RuleModule, instance: &mut RuleInstance, event: &HookEvent) -> Result<Vec<Route>, CallFailure> {
    match module.subscription_for(event.hook, &event.topic) {
        None => Ok(Vec::new()),
        Some(subscription) => instance.decide(engine, event, subscription).map(|decision| decision.routes.to_vec()),
    }
}

fn as_expected(route: &Route) -> Result<Expected, String> {
    if !route.headers.is_empty() {
        return Err(format!("unexpected headers {:?}", route.headers));
    }
    let key = match &route.key {
        None => None,
        Some(key) => Some(String::from_utf8(key.clone()).map_err(|_| format!("key is not UTF-8: {key:?}"))?),
    };
    Ok(Expected { topic: route.topic.to_string(), key })
}

/// Loads `bytes` as rule kind `kind` and runs the whole corpus through one instance
/// (reused across events, as a worker does). Returns the time of one event, from a
/// short loop on the corpus' first event, or every mismatch found.
fn check_module(engine: &RuleEngine, corpus: &[Case], kind: &str, file_name: &str, bytes: &[u8]) -> Result<Duration, String> {
    let module = Arc::new(RuleModule::load(engine, file_name, bytes).map_err(|e| format!("load failed: {e}"))?);
    let mut instance = RuleInstance::new(engine, module.clone()).map_err(|e| format!("instantiate failed: {e:#}"))?;
    let mut errors = Vec::new();
    for case in corpus {
        let expected = &case.expect[kind];
        match decide(engine, &module, &mut instance, &case.event) {
            Err(failure) => errors.push(format!("{:?}: {failure}", case.name)),
            Ok(routes) => match routes.iter().map(as_expected).collect::<Result<Vec<_>, _>>() {
                Err(e) => errors.push(format!("{:?}: {e}", case.name)),
                Ok(got) if &got != expected => errors.push(format!("{:?}: expected {expected:?}, got {got:?}", case.name)),
                Ok(_) => {}
            },
        }
    }
    if !errors.is_empty() {
        return Err(format!("{} of {} events wrong:\n      {}", errors.len(), corpus.len(), errors.join("\n      ")));
    }
    let iterations =
        std::env::var("HOOKLINE_CONFORMANCE_ITERATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_ITERATIONS).max(1);
    let event = &corpus[0].event;
    let subscription = module.subscription_for(event.hook, &event.topic).unwrap_or(0);
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
    fn run(&mut self, engine: &RuleEngine, corpus: &[Case], lang: &str, kind: &str, origin: &str, path: &Path) {
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
fn example_rules_in_every_language_route_the_corpus_alike() {
    let corpus = load_corpus();
    let engine = RuleEngine::new(&RulesConfig::default(), hookline::sink::check_kafka_topic).unwrap();
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
    eprintln!("conformance: {} events x {} rule kinds", corpus.len(), KINDS.len());
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
