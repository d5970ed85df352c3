//! Hot reload: watches the rules directory and publishes a new `RuleSet` whenever a
//! rule file appears, changes or disappears.
//!
//! Changes are debounced (`rules.reload_debounce_ms` of quiet), then the directory is
//! rescanned. A changed file is compiled and validated before anything is swapped; if it
//! fails, the error is logged and counted and the previous version keeps running until
//! the file changes again. A periodic rescan backs up the file-system notifications.
//! Hidden files (`.name`) and other extensions are ignored, so editors' and copy tools'
//! temporary files are never loaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::engine::RuleEngine;
use super::error::RulesError;
use super::module::{hash_bytes, LoadError, RuleModule};
use super::set::{RuleFailure, RuleSet, SharedRuleSet};
use super::settings::RuleSettings;
use super::signature;
use crate::metrics::Metrics;
use crate::util::watch::{FileWatch, WatchSettings};

/// Rescan this often even without a notification.
const RESCAN_EVERY: Duration = Duration::from_secs(2);

/// Runs in its own thread; dropping it stops the thread and waits for it.
pub struct RuleWatcher {
    _watch: FileWatch,
}

/// What the directory held at the last scan, by file name.
#[derive(Default)]
struct Loaded {
    files: BTreeMap<PathBuf, FileState>,
    /// Set when rules must be signed.
    public_key: Option<ed25519_dalek::VerifyingKey>,
}

/// Size and modification time of a module file, its settings file and its signature.
type Stamp = [(u64, Option<SystemTime>); 3];

fn stamp_of(module: &Path) -> Option<Stamp> {
    let of = |path: &Path| std::fs::metadata(path).ok().map(|m| (m.len(), m.modified().ok()));
    Some([
        of(module)?,
        of(&RuleSettings::path_for(module)).unwrap_or((0, None)),
        of(&signature::signature_path(module)).unwrap_or((0, None)),
    ])
}

struct FileState {
    stamp: Stamp,
    hash: u64,
    /// `None` when the current content failed to load (and no older version exists).
    module: Option<Arc<RuleModule>>,
    /// Why the current content failed to load, if it did.
    failure: Option<RuleFailure>,
}

/// What loading a changed file did to the rule set.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    None,
    /// A new version is in force.
    Loaded,
    /// The file failed to load (again, or differently): the set's failures changed.
    Failed,
}

impl RuleWatcher {
    /// Loads every rule in `dir` into `rules` now (so routing is ready before the broker
    /// accepts clients), then keeps watching it.
    pub fn start(
        dir: &Path,
        debounce: Duration,
        public_key: Option<ed25519_dalek::VerifyingKey>,
        engine: RuleEngine,
        metrics: Arc<Metrics>,
        rules: SharedRuleSet,
    ) -> Result<RuleWatcher, RulesError> {
        if !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|source| RulesError::CreateDirectory { dir: dir.to_path_buf(), source })?;
            tracing::warn!(dir = %dir.display(), "rules directory did not exist; created it empty, nothing is routed until a rule is added");
        }
        let mut loaded = Loaded { files: BTreeMap::new(), public_key };
        loaded.rescan(dir, &engine, &metrics, &rules);

        let settings = WatchSettings { name: "hookline-reload", debounce, rescan_every: RESCAN_EVERY };
        let watched = [dir.to_path_buf()];
        let dir_path = dir.to_path_buf();
        let watch = FileWatch::start(&watched, settings, move || loaded.rescan(&dir_path, &engine, &metrics, &rules))
            .map_err(|source| RulesError::Watch { dir: dir.to_path_buf(), source })?;
        Ok(RuleWatcher { _watch: watch })
    }
}

fn is_rule_file(path: &Path) -> bool {
    let hidden = path.file_name().and_then(|n| n.to_str()).is_none_or(|n| n.starts_with('.'));
    let rule_ext = matches!(path.extension().and_then(|e| e.to_str()), Some("wasm" | "wat"));
    !hidden && rule_ext && path.is_file()
}

impl Loaded {
    /// Brings the loaded set in line with the directory; swaps only if something changed.
    fn rescan(&mut self, dir: &Path, engine: &RuleEngine, metrics: &Metrics, rules: &SharedRuleSet) {
        let present: Vec<PathBuf> = match std::fs::read_dir(dir) {
            Ok(entries) => entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_rule_file(p)).collect(),
            Err(e) => {
                tracing::error!(dir = %dir.display(), error = %e, "cannot read rules directory; keeping the loaded rules");
                return;
            }
        };
        let mut changed = false;
        let before = self.files.len();
        self.files.retain(|path, state| {
            let keep = present.contains(path);
            if !keep && state.module.is_some() {
                tracing::info!(rule = %path.display(), "rule file removed, unloaded");
            }
            keep
        });
        changed |= self.files.len() != before;

        let mut loads = 0;
        for path in present {
            let Some(stamp) = stamp_of(&path) else { continue };
            if self.files.get(&path).is_some_and(|s| s.stamp == stamp) {
                continue;
            }
            match self.load(&path, stamp, engine, metrics) {
                Change::Loaded => loads += 1,
                Change::Failed => changed = true,
                Change::None => {}
            }
        }

        if changed || loads > 0 {
            let modules: Vec<Arc<RuleModule>> = self.files.values().filter_map(|s| s.module.clone()).collect();
            let failed: Vec<RuleFailure> = self.files.values().filter_map(|s| s.failure.clone()).collect();
            let names: Vec<&str> = modules.iter().map(|m| &*m.name).collect();
            tracing::info!(rules = ?names, failed = failed.len(), "rule set updated");
            rules.store(Arc::new(RuleSet { modules, failed }));
            // Counted once the new set is in force, so "loaded" means "routing".
            Metrics::add(&metrics.rule_loads, loads);
        }
    }

    /// Loads one changed file (module or settings), and says what that changed.
    fn load(&mut self, path: &Path, stamp: Stamp, engine: &RuleEngine, metrics: &Metrics) -> Change {
        let previous = self.files.get(path).and_then(|s| s.module.clone());
        let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let failure =
            |reason: String| RuleFailure { file: name.clone(), reason, at: SystemTime::now(), previous_running: previous.is_some() };
        let read = std::fs::read(path).map_err(LoadError::from).and_then(|bytes| Ok((bytes, RuleSettings::read_for(path)?)));
        let (bytes, (settings, raw_settings)) = match read {
            Ok(read) => read,
            Err(e) => {
                Metrics::add(&metrics.rule_load_failures, 1);
                tracing::error!(rule = %path.display(), error = %e, "cannot read rule; will retry when it changes");
                let failure = Some(failure(e.to_string()));
                self.files.insert(path.to_path_buf(), FileState { stamp, hash: 0, module: previous.clone(), failure });
                return Change::Failed;
            }
        };
        if stamp_of(path) != Some(stamp) {
            // Still being written: the writer's next change notifies us again.
            return Change::None;
        }
        // The signature counts too: signing a refused module must make it load.
        let signature = std::fs::read(signature::signature_path(path)).unwrap_or_default();
        let hash = hash_bytes(&[bytes.as_slice(), raw_settings.as_slice(), signature.as_slice()].concat());
        if self.files.get(path).is_some_and(|s| s.hash == hash) {
            self.files.get_mut(path).expect("checked above").stamp = stamp;
            return Change::None;
        }
        let signed = match &self.public_key {
            Some(key) => signature::verify(key, path, &bytes, &raw_settings).map_err(LoadError::Signature),
            None => Ok(()),
        };
        // Timed for the log: compiling is most of a reload's cost after the debounce.
        let load_started = std::time::Instant::now();
        match signed.and_then(|()| RuleModule::load_with_settings(engine, &name, &bytes, settings)) {
            Ok(module) => {
                let subscriptions: Vec<String> =
                    module.subscriptions.iter().map(|(hook, filter)| format!("{} {}", hook.name(), filter.as_str())).collect();
                tracing::info!(
                    rule = %path.display(),
                    ?subscriptions,
                    settings = !module.settings.is_empty(),
                    hash = format_args!("{:016x}", module.hash),
                    replaced = previous.is_some(),
                    load_ms = format_args!("{:.1}", load_started.elapsed().as_secs_f64() * 1000.0),
                    "rule loaded"
                );
                self.files.insert(path.to_path_buf(), FileState { stamp, hash, module: Some(Arc::new(module)), failure: None });
                Change::Loaded
            }
            Err(e) => {
                Metrics::add(&metrics.rule_load_failures, 1);
                let keeping = if previous.is_some() { "the previous version keeps running" } else { "the rule is not loaded" };
                tracing::error!(rule = %path.display(), error = %e, "cannot load rule: {keeping}; will retry when the file changes");
                let failure = Some(failure(format!("{e:#}")));
                self.files.insert(path.to_path_buf(), FileState { stamp, hash, module: previous.clone(), failure });
                Change::Failed
            }
        }
    }
}
