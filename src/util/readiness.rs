//! Readiness: what `/readyz` answers. The gateway owns one `Readiness`; every part it
//! must wait for before clients are served gets a `ReadyFlag` from it, starts not ready
//! with a reason, and flips the flag itself as its state changes.
//!
//! Parts today: the first load of the rules directory and the MQTT listeners (which go
//! back to not ready when shutdown begins or a listener stops). Another part, such as the
//! sink, joins by asking the gateway's `Readiness` for a flag of its own.

use std::sync::{Arc, Mutex, PoisonError};

/// Every part the gateway waits for, in the order they were registered.
#[derive(Default)]
pub struct Readiness {
    flags: Mutex<Vec<Arc<ReadyFlag>>>,
}

impl Readiness {
    /// Registers a part that is not ready yet, for `reason` (one line: what is missing,
    /// and what to check if it stays that way).
    pub fn flag(&self, reason: impl Into<String>) -> Arc<ReadyFlag> {
        let flag = Arc::new(ReadyFlag { not_ready: Mutex::new(Some(reason.into())) });
        self.flags.lock().unwrap_or_else(PoisonError::into_inner).push(flag.clone());
        flag
    }

    /// Why the gateway is not ready, one reason per part; empty when it is.
    pub fn missing(&self) -> Vec<String> {
        let flags = self.flags.lock().unwrap_or_else(PoisonError::into_inner);
        flags.iter().filter_map(|flag| flag.reason()).collect()
    }
}

/// One part's readiness: `None` when ready, else the reason it is not.
pub struct ReadyFlag {
    not_ready: Mutex<Option<String>>,
}

impl ReadyFlag {
    pub fn set_ready(&self) {
        *self.not_ready.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    pub fn set_not_ready(&self, reason: impl Into<String>) {
        *self.not_ready.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason.into());
    }

    fn reason(&self) -> Option<String> {
        self.not_ready.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_part_is() {
        let readiness = Readiness::default();
        let rules = readiness.flag("rules not loaded");
        let listeners = readiness.flag("listeners not bound");
        assert_eq!(readiness.missing(), ["rules not loaded", "listeners not bound"]);
        rules.set_ready();
        assert_eq!(readiness.missing(), ["listeners not bound"]);
        listeners.set_ready();
        assert!(readiness.missing().is_empty());
        listeners.set_not_ready("shutting down");
        assert_eq!(readiness.missing(), ["shutting down"]);
    }
}
