//! A rule module: one file of `rules/`, compiled once, checked against the ABI, its
//! subscriptions read by a trial run of `hookline_init`.
//!
//! Load errors (`LoadError`) are kept apart from what can go wrong per event
//! (`instance::CallFailure`): a file that fails to load never replaces a running version.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use wasmtime::{ExternType, InstancePre, Module, ValType};

use super::abi::{self, AbiVersion, HostState};
use super::counters::RuleCounters;
use super::engine::{describe_trap, RuleEngine};
use super::settings::{RuleSettings, SettingsError};
use crate::hooks::Hook;
use crate::topic::TopicFilter;

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
    #[error("missing export `{0}` (see wasm-sdk/ABI.md)")]
    MissingExport(&'static str),
    #[error("exports no ABI version marker: export `hookline_abi_v2` (or `hookline_abi_v1`), a function () -> () (see wasm-sdk/ABI.md)")]
    NoVersion,
    #[error("exports both `hookline_abi_v1` and `hookline_abi_v2`; a module speaks one ABI version")]
    TwoVersions,
    #[error("export `{name}` must be {expected}")]
    ExportSignature { name: &'static str, expected: &'static str },
    #[error("instantiating or running hookline_init failed: {0}")]
    Init(String),
    #[error("hookline_init returned {0}, refusing to load")]
    InitRefused(i32),
    #[error("hookline_init declared no subscription, so the rule could never run")]
    NoSubscription,
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("refused: {0}")]
    Signature(String),
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
    pub version: AbiVersion,
    pub subscriptions: Vec<(Hook, TopicFilter)>,
    pub settings: Arc<RuleSettings>,
    pub pre: InstancePre<HostState>,
    pub counters: RuleCounters,
}

impl std::fmt::Debug for RuleModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleModule").field("name", &self.name).field("id", &self.id).field("subscriptions", &self.subscriptions).finish()
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl RuleModule {
    /// The first subscription matching an event, if any: the only way into the guest.
    pub fn subscription_for(&self, hook: Hook, topic: &[u8]) -> Option<usize> {
        self.subscriptions.iter().position(|(h, filter)| *h == hook && filter.matches(topic))
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
        let version = check_exports(&module)?;
        let pre = engine.linker().instantiate_pre(&module).map_err(|e| LoadError::Compile(format!("{e:#}")))?;

        let name: Arc<str> = name.into();
        let settings = Arc::new(settings);
        let (mut store, _, code) =
            engine.instantiate(&pre, name.clone(), settings.clone()).map_err(|e| LoadError::Init(describe_trap(&e)))?;
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
            version,
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
        let forbidden = || LoadError::ForbiddenImport { module: import.module().to_string(), name: import.name().to_string() };
        if import.module() != abi::IMPORT_MODULE {
            return Err(forbidden());
        }
        let Some(&(_, params, results)) = abi::IMPORTS.iter().find(|(name, _, _)| *name == import.name()) else {
            return Err(forbidden());
        };
        let ExternType::Func(func) = import.ty() else { return Err(forbidden()) };
        let all_i32 = func.params().all(|t| matches!(t, ValType::I32)) && func.results().all(|t| matches!(t, ValType::I32));
        if !all_i32 || func.params().len() != params || func.results().len() != results {
            return Err(LoadError::ImportSignature { name: import.name().to_string() });
        }
    }
    Ok(())
}

/// Checks the exports; returns the ABI version the module speaks.
fn check_exports(module: &Module) -> Result<AbiVersion, LoadError> {
    let func = |name: &'static str, params: usize, results: usize, expected: &'static str| match module.get_export(name) {
        None => Err(LoadError::MissingExport(name)),
        Some(ExternType::Func(f))
            if f.params().len() == params
                && f.results().len() == results
                && f.params().chain(f.results()).all(|t| matches!(t, ValType::I32)) =>
        {
            Ok(())
        }
        Some(_) => Err(LoadError::ExportSignature { name, expected }),
    };
    let mut versions = abi::ABI_MARKERS.iter().filter(|(marker, _)| module.get_export(marker).is_some());
    let (marker, version) = *versions.next().ok_or(LoadError::NoVersion)?;
    if versions.next().is_some() {
        return Err(LoadError::TwoVersions);
    }
    func(marker, 0, 0, "a function () -> ()")?;
    func(abi::INIT, 0, 1, "a function () -> i32")?;
    func(abi::ON_EVENT, 2, 1, "a function (i32, i32) -> i32")?;
    match module.get_export("memory") {
        Some(ExternType::Memory(_)) => Ok(version),
        None => Err(LoadError::MissingExport("memory")),
        Some(_) => Err(LoadError::ExportSignature { name: "memory", expected: "a memory" }),
    }
}
