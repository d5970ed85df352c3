//! The dashboard's API, usable on its own (`curl`, scripts):
//!
//! - `GET /api/rules`: JSON array, one object per rule file: `file`, and for a loaded
//!   rule `hash` (content hash, as logged at load), `loaded_at_ms` (unix ms),
//!   `subscriptions` (`hook`, `filter`), `counters` (calls, routes, errors, ...); for a
//!   file whose current content failed to load, `failed`: `reason`, `at_ms` and
//!   `previous_running` (an earlier version still routes, and is the rest of the object).
//! - `GET /api/stats`: Server-Sent Events: first one `history` event, the last 5 minutes
//!   of samples (an array), then one `stats` event a second: totals and per-second rates
//!   of messages in and records routed (see `history`).
//! - `GET /api/tail?topic=T&client=C`: Server-Sent Events, one `record` event per routed
//!   record (see `tail`), only those whose Kafka topic is `T` and client id is `C` when
//!   given (exact match; empty means any); a `lagged` event carries how many records this
//!   viewer missed by reading too slowly.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures_util::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::history::StatsHistory;
use super::AdminSources;
use crate::live_tail::TailItem;
use crate::metrics::Metrics;
use crate::rules::RuleCounters;

pub async fn rules(State(sources): State<AdminSources>) -> Json<Vec<Value>> {
    let set = sources.rules.load();
    let failure = |file: &str| {
        set.failed
            .iter()
            .find(|f| f.file == file)
            .map(|f| json!({ "reason": f.reason, "at_ms": unix_ms(f.at), "previous_running": f.previous_running }))
    };
    let loaded = set.modules.iter().map(|module| {
        let subscriptions: Vec<Value> =
            module.subscriptions.iter().map(|(hook, filter)| json!({ "hook": hook.name(), "filter": filter.as_str() })).collect();
        let counters: serde_json::Map<String, Value> = RuleCounters::FIELDS
            .iter()
            .map(|(name, _, counter)| (name.to_string(), json!(counter(&module.counters).load(Ordering::Relaxed))))
            .collect();
        let mut rule = json!({
            "file": &*module.name,
            "hash": format!("{:016x}", module.hash),
            "loaded_at_ms": unix_ms(module.loaded_at),
            "subscriptions": subscriptions,
            "counters": counters,
        });
        if let Some(failed) = failure(&module.name) {
            rule["failed"] = failed;
        }
        rule
    });
    let not_loaded = set.failed.iter().filter(|f| !f.previous_running).map(|f| json!({ "file": f.file, "failed": failure(&f.file) }));
    let mut rules: Vec<Value> = loaded.chain(not_loaded).collect();
    rules.sort_by(|a, b| a["file"].as_str().cmp(&b["file"].as_str()));
    Json(rules)
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

pub async fn stats(State(history): State<Arc<StatsHistory>>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let samples = history.samples();
    let past = json_event("history", &samples.iter().map(|s| &**s).collect::<Vec<_>>());
    // Each new sample, as the sampler takes it; the stream ends with the sampler.
    let live = stream::unfold(history.subscribe(), |mut latest| async move {
        latest.changed().await.ok()?;
        let sample = latest.borrow_and_update().clone()?;
        Some((Ok(json_event("stats", &*sample)), latest))
    });
    Sse::new(stream::once(async { Ok(past) }).chain(live)).keep_alive(KeepAlive::default())
}

/// The cluster as this node sees it: its nodes (from their heartbeats), with the
/// sessions each holds; `enabled` is false for a gateway without Kafka.
pub async fn cluster(State(sources): State<AdminSources>) -> Json<Value> {
    let Some(cluster) = sources.cluster.get() else { return Json(json!({ "enabled": false })) };
    let (sessions, connected) = cluster.session_counts();
    Json(json!({
        "enabled": true,
        "name": cluster.name(),
        "node": cluster.node(),
        "ready": cluster.is_ready(),
        "nodes": cluster.nodes(),
        "sessions": sessions,
        "connected": connected,
        "mail_pending": cluster.mailboxes().pending(),
    }))
}

/// The tail's query parameters; empty or absent means any.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TailFilter {
    /// Kafka topic, exact.
    topic: String,
    /// MQTT client id, exact.
    client: String,
}

impl TailFilter {
    fn admits(&self, item: &TailItem) -> bool {
        (self.topic.is_empty() || item.topic == self.topic) && (self.client.is_empty() || item.client_id == self.client)
    }
}

pub async fn tail(
    State(sources): State<AdminSources>,
    Query(filter): Query<TailFilter>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribed before the response starts: whoever sees the response open sees every
    // record routed after that.
    let watch = sources.tail.watch();
    let metrics = sources.metrics.clone();
    let records = stream::unfold((watch, filter), move |(mut watch, filter)| {
        let metrics = metrics.clone();
        async move {
            loop {
                let event = match watch.receiver.recv().await {
                    Ok(item) if filter.admits(&item) => json_event("record", &*item),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(missed)) => {
                        Metrics::add(&metrics.tail_dropped, missed);
                        Event::default().event("lagged").data(missed.to_string())
                    }
                    Err(RecvError::Closed) => return None,
                };
                return Some((Ok(event), (watch, filter)));
            }
        }
    });
    // A first comment, so a viewer knows it is subscribed before any record flows.
    let opened = stream::once(async { Ok(Event::default().comment("watching")) });
    Sse::new(opened.chain(records)).keep_alive(KeepAlive::default())
}

fn json_event(name: &str, data: &impl Serialize) -> Event {
    Event::default()
        .event(name)
        .json_data(data)
        .unwrap_or_else(|e| Event::default().event("error").data(format!("cannot encode {name}: {e}")))
}
