//! The dashboard's throughput history, kept by the server: one sample a second of the
//! totals and rates `/api/stats` shows, the last 5 minutes of them, so a page opened
//! now draws its charts at once instead of starting empty.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use crate::hooks::{now_ms, Hook};
use crate::metrics::{Metrics, Outcome};

/// How often a sample is taken.
pub const EVERY: Duration = Duration::from_secs(1);
/// Samples kept: 5 minutes.
pub const KEPT: usize = 300;

/// One sample: totals since start, and rates over the second before it.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// When it was taken, Unix ms.
    at_ms: u64,
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
    /// Rates over the last interval; 0 in the first sample.
    messages_in_per_s: f64,
    records_routed_per_s: f64,
    records_delivered_per_s: f64,
}

/// The samples kept, and the newest one for live viewers.
pub struct StatsHistory {
    samples: Mutex<VecDeque<Arc<Stats>>>,
    latest: watch::Sender<Option<Arc<Stats>>>,
}

impl StatsHistory {
    pub fn new() -> Arc<StatsHistory> {
        Arc::new(StatsHistory { samples: Mutex::new(VecDeque::with_capacity(KEPT)), latest: watch::channel(None).0 })
    }

    /// The samples kept, oldest first.
    pub fn samples(&self) -> Vec<Arc<Stats>> {
        self.samples.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    /// The newest sample, and each one after it.
    pub fn subscribe(&self) -> watch::Receiver<Option<Arc<Stats>>> {
        self.latest.subscribe()
    }

    /// Takes a sample every `EVERY`, for as long as it is polled.
    pub async fn sample(&self, metrics: &Metrics) {
        let mut ticks = tokio::time::interval(EVERY);
        let mut previous: Option<(Instant, u64, u64, u64)> = None;
        loop {
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
            previous = Some((now, messages_in, records_routed, records_delivered));
            let stats = Arc::new(Stats {
                at_ms: now_ms(),
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
            });
            {
                let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
                if samples.len() == KEPT {
                    samples.pop_front();
                }
                samples.push_back(stats.clone());
            }
            self.latest.send_replace(Some(stats));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_last_five_minutes_are_kept_and_each_new_sample_is_told() {
        let history = StatsHistory::new();
        let metrics = Metrics::default();
        let mut latest = history.subscribe();
        let sampling = history.sample(&metrics);
        tokio::pin!(sampling);
        tokio::select! {
            _ = &mut sampling => unreachable!("samples for as long as it is polled"),
            _ = tokio::time::sleep(EVERY * (KEPT as u32 + 10)) => {}
        }
        assert_eq!(history.samples().len(), KEPT);
        assert!(latest.has_changed().unwrap());
        let newest = latest.borrow_and_update().clone().unwrap();
        assert_eq!(newest.at_ms, history.samples().last().unwrap().at_ms);
    }
}
