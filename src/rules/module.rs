//! A rule module: one file of `rules/`, compiled once, checked against the ABI, its
//! subscriptions read by a trial run of `hookline_init`.
//!
//! Load errors (`LoadError`) are kept apart from what can go wrong per event
//! (`instance::CallFailure`): a file that fails to load never replaces a running version.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use wasmtime::{ExternType, InstancePre, Module, ValType};

use super::abi::{self, HostState};
use super::instance::{describe_trap, instantiate};
use super::engine::RuleEngine;
use crate::topic::TopicFilter;
use crate::hooks::Hook;

/// Largest rule file accepted; anything bigger is refused before compiling.
pub const MAX_FILE_BYTES: usize = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read: {0}")]
    Read(#[from] std::io::Error),
    #[error("empty file (still being written?)")]
    Empty,
    #[error("file is {0} bytes, more than the {MAX_FILE_BYTES} allowed")]
    TooBig(usize),
    #[error("not a valid WebAssembly module: {0}")]
    Compile(String),
    #[error("imports `{module}.{name}`, but rules may only import the `hookline` functions of wasm-sdk/ABI.md (no WASI)")]
    ForbiddenImport { module: String, name: String },
    #[error("import `hookline.{name}` has the wrong signature (see wasm-sdk/ABI.md)")]
    ImportSignature { name: String },
    #[error("missing export `{0}` (see wasm-sdk/ABI.md; the ABI version marker is `hookline_abi_v1`)")]
    MissingExport(&'static str),
    #[error("export `{name}` must be {expected}")]
    ExportSignature { name: &'static str, expected: &'static str },
    #[error("instantiating or running hookline_init failed: {0}")]
    Init(String),
    #[error("hookline_init returned {0}, refusing to load")]
    InitRefused(i32),
    #[error("hookline_init declared no subscription, so the rule could never run")]
    NoSubscription,
    #[error("settings file {path}: {message}")]
    Settings { path: PathBuf, message: String },
    #[error("refused: {0}")]
    Signature(String),
}

/// A rule's settings: the `<name>.toml` file beside `<name>.wasm` / `<name>.wat`,
/// flattened to dotted keys (`[alarm] battery = 20` is `alarm.battery`) with every value
/// as text (strings unquoted, numbers and booleans as written by TOML). The guest reads
/// them with `hookline.config_get`, so one module can serve with different topics or
/// thresholds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleSettings(BTreeMap<String, String>);

impl RuleSettings {
    pub fn parse(text: &str) -> Result<RuleSettings, String> {
        fn flatten(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, String>) -> Result<(), String> {
            for (key, value) in table {
                let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                let text = match value {
                    toml::Value::Table(inner) => {
                        flatten(&path, inner, out)?;
                        continue;
                    }
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    toml::Value::Datetime(d) => d.to_string(),
                    toml::Value::Array(_) => return Err(format!("`{path}`: arrays are not supported, use one key per value")),
                };
                out.insert(path, text);
            }
            Ok(())
        }
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.message().to_string())?;
        let mut out = BTreeMap::new();
        flatten("", &table, &mut out)?;
        Ok(RuleSettings(out))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Where the settings of the module at `module_path` live: same name, `.toml`.
    pub fn path_for(module_path: &Path) -> PathBuf {
        module_path.with_extension("toml")
    }

    /// Reads the settings beside a module; no file means no settings.
    pub fn read_for(module_path: &Path) -> Result<(RuleSettings, Vec<u8>), LoadError> {
        let path = RuleSettings::path_for(module_path);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((RuleSettings::default(), Vec::new())),
            Err(e) => return Err(LoadError::Settings { path, message: e.to_string() }),
        };
        let settings = std::str::from_utf8(&bytes)
            .map_err(|e| e.to_string())
            .and_then(RuleSettings::parse)
            .map_err(|message| LoadError::Settings { path, message })?;
        Ok((settings, bytes))
    }
}

/// Call counters of one loaded rule version.
#[derive(Debug, Default)]
pub struct RuleCounters {
    pub calls: AtomicU64,
    pub routes: AtomicU64,
    pub errors: AtomicU64,
    pub traps: AtomicU64,
    pub out_of_fuel: AtomicU64,
    pub invalid_output: AtomicU64,
    pub nanos: AtomicU64,
    /// When a failure of this rule was last logged (rate limit).
    pub last_warning: AtomicU64,
}

/// One per-rule counter: name, help text, and where it is kept.
pub type RuleCounterField = (&'static str, &'static str, fn(&RuleCounters) -> &AtomicU64);

impl RuleCounters {
    /// Every counter shown per rule, in one place for `/metrics` and `/api/rules`.
    pub const FIELDS: [RuleCounterField; 7] = [
        ("calls", "Guest calls, by rule.", |c| &c.calls),
        ("routes", "Routes emitted, by rule.", |c| &c.routes),
        ("errors", "Events a rule rejected in band, by rule.", |c| &c.errors),
        ("traps", "Guest calls that trapped, by rule.", |c| &c.traps),
        ("out_of_fuel", "Guest calls that used up their instruction budget, by rule.", |c| &c.out_of_fuel),
        ("invalid_output", "Decisions discarded for invalid output, by rule.", |c| &c.invalid_output),
        ("nanoseconds", "Time spent in guest calls, by rule (one call in 16 timed).", |c| &c.nanos),
    ];
}

/// A compiled, validated rule. Immutable; a reload produces a new `RuleModule`.
pub struct RuleModule {
    /// File name, e.g. `message_state.wasm`.
    pub name: Arc<str>,
    /// Unique per load, so workers can tell versions of the same file apart.
    pub id: u64,
    /// Hash of the file's bytes.
    pub hash: u64,
    /// When this version was compiled and validated (wall clock), shown by `/api/rules`.
    pub loaded_at: SystemTime,
    pub subscriptions: Vec<(Hook, TopicFilter)>,
    pub settings: Arc<RuleSettings>,
    pub pre: InstancePre<HostState>,
    pub counters: RuleCounters,
}

impl std::fmt::Debug for RuleModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleModule")
            .field("name", &self.name)
            .field("id", &self.id)
            .field("subscriptions", &self.subscriptions)
            .finish()
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl RuleModule {
    /// The first subscription matching an event, if any: the only way into the guest.
    pub fn subscription_for(&self, hook: Hook, topic: &[u8]) -> Option<usize> {
        self.subscriptions
            .iter()
            .position(|(h, filter)| *h == hook && filter.matches(topic))
    }

    /// Compiles and validates `bytes` (binary `.wasm`, or `.wat` text) named `name`.
    pub fn load(engine: &RuleEngine, name: &str, bytes: &[u8]) -> Result<RuleModule, LoadError> {
        RuleModule::load_with_settings(engine, name, bytes, RuleSettings::default())
    }

    /// Like `load`, with the settings the guest reads through `config_get`.
    pub fn load_with_settings(engine: &RuleEngine, name: &str, bytes: &[u8], settings: RuleSettings) -> Result<RuleModule, LoadError> {
        if bytes.is_empty() {
            return Err(LoadError::Empty);
        }
        if bytes.len() > MAX_FILE_BYTES {
            return Err(LoadError::TooBig(bytes.len()));
        }
        let module = Module::new(engine.engine(), bytes).map_err(|e| LoadError::Compile(format!("{e:#}")))?;
        check_imports(&module)?;
        check_exports(&module)?;
        let pre = engine
            .linker()
            .instantiate_pre(&module)
            .map_err(|e| LoadError::Compile(format!("{e:#}")))?;

        let name: Arc<str> = name.into();
        let settings = Arc::new(settings);
        let (mut store, _, code) = instantiate(engine, &pre, name.clone(), settings.clone())
            .map_err(|e| LoadError::Init(describe_trap(&e)))?;
        if code != 0 {
            return Err(LoadError::InitRefused(code));
        }
        let subscriptions = std::mem::take(&mut store.data_mut().subscriptions);
        if subscriptions.is_empty() {
            return Err(LoadError::NoSubscription);
        }
        Ok(RuleModule {
            name,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            hash: hash_bytes(bytes),
            loaded_at: SystemTime::now(),
            subscriptions,
            settings,
            pre,
            counters: RuleCounters::default(),
        })
    }

    /// Reads and loads a rule file and its settings file, if any.
    pub fn load_file(engine: &RuleEngine, path: &Path) -> Result<RuleModule, LoadError> {
        let bytes = std::fs::read(path)?;
        let (settings, _) = RuleSettings::read_for(path)?;
        let name = path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned());
        RuleModule::load_with_settings(engine, &name, &bytes, settings)
    }
}

/// Content hash of a module file (and its settings file), to skip reloading unchanged
/// content and to tell versions apart in logs.
pub fn hash_bytes(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

fn check_imports(module: &Module) -> Result<(), LoadError> {
    for import in module.imports() {
        let forbidden = || LoadError::ForbiddenImport {
            module: import.module().to_string(),
            name: import.name().to_string(),
        };
        if import.module() != abi::IMPORT_MODULE {
            return Err(forbidden());
        }
        let Some(&(_, params, results)) = abi::IMPORTS.iter().find(|(name, _, _)| *name == import.name()) else {
            return Err(forbidden());
        };
        let ExternType::Func(func) = import.ty() else { return Err(forbidden()) };
        let all_i32 = func.params().all(|t| matches!(t, ValType::I32)) && func.results().all(|t| matches!(t, ValType::I32));
        if !all_i32 || func.params().len() != params || func.results().len() != results {
            return Err(LoadError::ImportSignature {
                name: import.name().to_string(),
            });
        }
    }
    Ok(())
}

fn check_exports(module: &Module) -> Result<(), LoadError> {
    let func = |name: &'static str, params: usize, results: usize, expected: &'static str| {
        match module.get_export(name) {
            None => Err(LoadError::MissingExport(name)),
            Some(ExternType::Func(f))
                if f.params().len() == params
                    && f.results().len() == results
                    && f.params().chain(f.results()).all(|t| matches!(t, ValType::I32)) =>
            {
                Ok(())
            }
            Some(_) => Err(LoadError::ExportSignature { name, expected }),
        }
    };
    func(abi::ABI_MARKER, 0, 0, "a function () -> ()")?;
    func(abi::INIT, 0, 1, "a function () -> i32")?;
    func(abi::ON_EVENT, 2, 1, "a function (i32, i32) -> i32")?;
    match module.get_export("memory") {
        Some(ExternType::Memory(_)) => Ok(()),
        None => Err(LoadError::MissingExport("memory")),
        Some(_) => Err(LoadError::ExportSignature {
            name: "memory",
            expected: "a memory",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_flatten_tables_and_keep_values_as_text() {
        let settings = RuleSettings::parse("topic = \"alarm_state\"\n[alarm]\nbattery = 20\nratio = 0.5\nenabled = true\n").unwrap();
        assert_eq!(settings.get("topic"), Some("alarm_state"));
        assert_eq!(settings.get("alarm.battery"), Some("20"));
        assert_eq!(settings.get("alarm.ratio"), Some("0.5"));
        assert_eq!(settings.get("alarm.enabled"), Some("true"));
        assert_eq!(settings.get("missing"), None);
    }

    #[test]
    fn settings_errors_say_what_is_wrong() {
        assert!(RuleSettings::parse("a = [1, 2]").unwrap_err().contains("`a`"));
        assert!(RuleSettings::parse("a = ").is_err());
    }
}
