//! The rule set in force: every loaded module, swapped whole by the watcher (`reload`)
//! and read by every worker, so an event is decided by one version of every rule.

use std::sync::Arc;

use arc_swap::ArcSwap;

use super::module::RuleModule;

/// The rules in force: every loaded module, ordered by file name.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub modules: Vec<Arc<RuleModule>>,
}

/// The current rule set, swapped atomically by the watcher and read by every worker.
pub type SharedRuleSet = Arc<ArcSwap<RuleSet>>;
