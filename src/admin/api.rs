//! The dashboard's API, usable on its own (`curl`, scripts):
//!
//! - `GET /api/rules`: JSON array, one object per loaded rule: `file`, `hash` (content
//!   hash, as logged at load), `loaded_at_ms` (unix ms), `subscriptions` (`hook`,
//!   `filter`), `counters` (calls, routes, errors, ...).
//! - `GET /api/stats`: Server-Sent Events, one `stats` event a second: totals and
//!   per-second rates of messages in and records routed, computed per viewer.
//! - `GET /api/tail?topic=T&client=C`: Server-Sent Events, one `record` event per routed
//!   record (see `tail`), only those whose Kafka topic is `T` and client id is `C` when
//!   given (exact match; empty means any); a `lagged` event carries how many records this
//!   viewer missed by reading too slowly.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use futures_util::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::broadcast::error::RecvError;

use super::AdminSources;
use crate::hooks::Hook;
use crate::metrics::{Metrics, Outcome};
use crate::rules::RuleCounters;
use crate::tail::TailItem;

pub async fn rules(State(sources): State<AdminSources>) -> Json<Vec<Value>> {
    let set = sources.rules.load();
    let rules = set
        .modules
        .iter()
        .map(|module| {
            let loaded_at_ms = module.loaded_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
            let subscriptions: Vec<Value> =
                module.subscriptions.iter().map(|(hook, filter)| json!({ "hook": hook.name(), "filter": filter.as_str() })).collect();
            let counters: serde_json::Map<String, Value> = RuleCounters::FIELDS
                .iter()
                .map(|(name, _, counter)| (name.to_string(), json!(counter(&module.counters).load(Ordering::Relaxed))))
                .collect();
            json!({
                "file": &*module.name,
                "hash": format!("{:016x}", module.hash),
                "loaded_at_ms": loaded_at_ms,
                "subscriptions": subscriptions,
                "counters": counters,
            })
        })
        .collect();
    Json(rules)
}

/// One `stats` event.
#[derive(Debug, Serialize)]
struct Stats {
    /// MQTT publishes read (`message.publish` hook events).
    messages_in: u64,
    /// Records the rules routed (one per route).
    records_routed: u64,
    records_delivered: u64,
    records_failed: u64,
    /// Estimated median and 99th percentile of the delivery latency since start, from
    /// the histogram's buckets; `null` before the first delivery.
    delivery_latency_p50_ms: Option<f64>,
    delivery_latency_p99_ms: Option<f64>,
    connections: i64,
    /// Rates over the last interval; 0 in the first event.
    messages_in_per_s: f64,
    records_routed_per_s: f64,
    records_delivered_per_s: f64,
}

/// How often `/api/stats` sends an event.
const STATS_EVERY: Duration = Duration::from_secs(1);

pub async fn stats(State(sources): State<AdminSources>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let ticks = tokio::time::interval(STATS_EVERY);
    let events = stream::unfold((ticks, None), move |(mut ticks, previous): (_, Option<(Instant, u64, u64, u64)>)| {
        let metrics = sources.metrics.clone();
        async move {
            ticks.tick().await;
            let now = Instant::now();
            let messages_in = Metrics::get(&metrics.hook_events[Hook::MessagePublish.code() as usize]);
            let records_routed = Metrics::get(&metrics.rule_routes);
            let records_delivered = metrics.records.total(Outcome::Delivered);
            let rate =
                |total: u64, before: u64, since: Instant| total.saturating_sub(before) as f64 / now.duration_since(since).as_secs_f64();
            let (messages_in_per_s, records_routed_per_s, records_delivered_per_s) = match previous {
                Some((since, messages_before, routed_before, delivered_before)) => (
                    rate(messages_in, messages_before, since),
                    rate(records_routed, routed_before, since),
                    rate(records_delivered, delivered_before, since),
                ),
                None => (0.0, 0.0, 0.0),
            };
            let stats = Stats {
                messages_in,
                records_routed,
                records_delivered,
                records_failed: metrics.records.total(Outcome::Failed),
                delivery_latency_p50_ms: metrics.delivery_latency.quantile_ms(0.5),
                delivery_latency_p99_ms: metrics.delivery_latency.quantile_ms(0.99),
                connections: metrics.connections.load(Ordering::Relaxed),
                messages_in_per_s,
                records_routed_per_s,
                records_delivered_per_s,
            };
            Some((Ok(json_event("stats", &stats)), (ticks, Some((now, messages_in, records_routed, records_delivered)))))
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
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
