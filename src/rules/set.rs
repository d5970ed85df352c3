//! The rule set in force: every loaded module, swapped whole by the watcher (`reload`)
//! and read by every worker, so an event is decided by one version of every rule.

use std::sync::Arc;
use std::time::SystemTime;

use arc_swap::ArcSwap;

use super::module::RuleModule;

/// The rules in force: every loaded module, ordered by file name; and the rule files
/// whose current content failed to load.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub modules: Vec<Arc<RuleModule>>,
    pub failed: Vec<RuleFailure>,
}

/// A rule file whose current content failed to load, until it changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFailure {
    /// The file's name in the rules directory.
    pub file: String,
    /// Why, as the log says it.
    pub reason: String,
    pub at: SystemTime,
    /// An earlier version of the file keeps running.
    pub previous_running: bool,
}

/// The current rule set, swapped atomically by the watcher and read by every worker.
pub type SharedRuleSet = Arc<ArcSwap<RuleSet>>;
