//! What each `Store` carries: the rule's name and settings, the event being decided,
//! the decision so far and why it is void, if it is.

use std::sync::Arc;

use wasmtime::{Memory, StoreLimits};

use crate::hooks::{Hook, HookEvent};
use crate::rules::decision::{MqttMessage, Route};
use crate::rules::payload::ParsedPayload;
use crate::rules::settings::RuleSettings;
use crate::sink::DestinationNames;
use crate::topic::TopicFilter;

/// Log lines a rule instance may write per second.
const LOG_LINES_PER_SECOND: u32 = 10;

/// What the guest is allowed to do right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Init,
    Event,
    Idle,
}

/// Data of one `Store`: limits, the event being decided and the decision so far.
pub struct HostState {
    pub limits: StoreLimits,
    pub rule: std::sync::Arc<str>,
    pub settings: std::sync::Arc<RuleSettings>,
    pub phase: Phase,
    pub subscriptions: Vec<(Hook, TopicFilter)>,
    pub event: Option<HookEvent>,
    pub routes: Vec<Route>,
    pub publishes: Vec<MqttMessage>,
    /// Why the current decision is void, and the code the host returned, if output
    /// broke a rule of the ABI.
    pub invalid: Option<(&'static str, i32)>,
    /// The event's payload parsed for `payload_*` lookups, at the first of them.
    pub parsed: Option<ParsedPayload>,
    /// The guest's exported memory, looked up once after instantiation.
    pub memory: Option<Memory>,
    /// The destinations rules may name, and what topics each takes.
    pub(super) destinations: DestinationNames,
    /// Topics this instance routed to lately, validated for their destination (see
    /// `Route::topic`).
    recent_topics: Vec<(usize, Arc<str>)>,
    log_window: (std::time::Instant, u32),
}

impl HostState {
    pub fn new(
        rule: std::sync::Arc<str>,
        settings: std::sync::Arc<RuleSettings>,
        limits: StoreLimits,
        destinations: DestinationNames,
    ) -> HostState {
        HostState {
            limits,
            rule,
            settings,
            phase: Phase::Idle,
            subscriptions: Vec::new(),
            event: None,
            routes: Vec::new(),
            publishes: Vec::new(),
            invalid: None,
            parsed: None,
            memory: None,
            destinations,
            recent_topics: Vec::new(),
            log_window: (std::time::Instant::now(), 0),
        }
    }

    /// The hook of the event being decided.
    pub(super) fn hook(&self) -> Option<Hook> {
        self.event.as_ref().map(|e| e.hook)
    }

    /// Voids the decision for `why`; returns `code` for the guest.
    pub(super) fn invalidate(&mut self, why: &'static str, code: i32) -> i32 {
        self.invalid = Some((why, code));
        code
    }

    pub(super) fn log_allowed(&mut self) -> bool {
        let (start, count) = &mut self.log_window;
        if start.elapsed().as_secs() >= 1 {
            *start = std::time::Instant::now();
            *count = 0;
        }
        *count += 1;
        *count <= LOG_LINES_PER_SECOND
    }
}

/// How many distinct route topics an instance keeps ready for reuse.
const RECENT_TOPICS: usize = 8;

impl HostState {
    /// A shared copy of `topic`, validated for `destination`, reusing a recent one when
    /// it matches.
    pub(super) fn route_topic(&mut self, destination: usize, topic: &[u8]) -> Result<Arc<str>, &'static str> {
        if let Some((_, known)) = self.recent_topics.iter().find(|(d, t)| *d == destination && t.as_bytes() == topic) {
            return Ok(known.clone());
        }
        let topic = std::str::from_utf8(topic).map_err(|_| "destination name is not UTF-8")?;
        self.destinations.check(destination, topic)?;
        let topic: Arc<str> = topic.into();
        if self.recent_topics.len() == RECENT_TOPICS {
            self.recent_topics.remove(0);
        }
        self.recent_topics.push((destination, topic.clone()));
        Ok(topic)
    }
}
