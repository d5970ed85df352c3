//! The Prometheus text exposition served at `/metrics`: the gateway's counters and
//! gauges (`Metrics`), records and delivery latency by topic, and each loaded rule's own
//! counters, labelled by rule file so label values stay bounded.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::hooks::Hook;
use crate::metrics::{Metrics, Outcome};
use crate::rules::{RuleCounters, RuleSet};

/// The Prometheus text exposition of the gateway counters and of each loaded rule's
/// own counters (labelled by rule file, so label values stay bounded).
pub fn render(metrics: &Metrics, rules: &RuleSet) -> String {
    let mut out = String::new();
    for (name, help, value) in metrics.counters() {
        family(&mut out, &format!("hookline_{name}_total"), help, "counter");
        let _ = writeln!(out, "hookline_{name}_total {value}");
    }
    family(&mut out, "hookline_hook_events_total", "Hook events raised, by hook.", "counter");
    for hook in Hook::ALL {
        let count = metrics.hook_events[hook.code() as usize].load(Ordering::Relaxed);
        let _ = writeln!(out, "hookline_hook_events_total{{hook=\"{}\"}} {count}", hook.name());
    }
    for outcome in Outcome::ALL {
        let name = format!("hookline_{}_total", outcome.name());
        family(&mut out, &name, outcome.help(), "counter");
        for (topic, count) in metrics.records.counts(outcome) {
            let _ = writeln!(out, "{name}{{topic=\"{}\"}} {count}", escape_label(topic));
        }
    }
    family(&mut out, DELIVERY_LATENCY, DELIVERY_LATENCY_HELP, "histogram");
    metrics.delivery_latency.render(&mut out, DELIVERY_LATENCY);
    for (name, help, value) in metrics.gauges() {
        family(&mut out, &format!("hookline_{name}"), help, "gauge");
        let _ = writeln!(out, "hookline_{name} {value}");
    }
    for (name, help, counter) in RuleCounters::FIELDS {
        family(&mut out, &format!("hookline_module_{name}_total"), help, "counter");
        for module in &rules.modules {
            let value = counter(&module.counters).load(Ordering::Relaxed);
            let _ = writeln!(out, "hookline_module_{name}_total{{rule=\"{}\"}} {value}", escape_label(&module.name));
        }
    }
    out
}

const DELIVERY_LATENCY: &str = "hookline_delivery_latency_seconds";
const DELIVERY_LATENCY_HELP: &str = "Seconds from a record's hook event to the sink's confirmation (Kafka delivery report, or file flush).";

fn family(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn escape_label(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_has_help_type_and_values() {
        let metrics = Metrics::default();
        Metrics::add(&metrics.rule_calls, 3);
        let text = render(&metrics, &RuleSet::default());
        let mut families: Vec<&str> =
            text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).map(|l| l.split(' ').next().unwrap()).collect();
        let count = families.len();
        families.sort_unstable();
        families.dedup();
        assert_eq!(families.len(), count, "a metric family is declared twice: {text}");
        assert!(text.contains("# HELP hookline_rule_calls_total Guest calls made (`hookline_on_event`).\n"), "{text}");
        assert!(text.contains("# TYPE hookline_rule_calls_total counter\nhookline_rule_calls_total 3\n"), "{text}");
        assert!(text.contains("hookline_hook_events_total{hook=\"message.acked\"} 0\n"), "{text}");
        assert_eq!(escape_label("a\"b\\c"), "a\\\"b\\\\c");
    }

    #[test]
    fn records_are_rendered_by_topic_and_latency_as_a_histogram() {
        let metrics = Metrics::default();
        let state = metrics.records.series("message_state");
        metrics.record_delivered(state, crate::hooks::now_ms());
        metrics.records.add(metrics.records.series("message_command"), Outcome::Failed, 2);
        let text = render(&metrics, &RuleSet::default());
        for line in [
            "# TYPE hookline_records_delivered_total counter",
            "hookline_records_delivered_total{topic=\"message_state\"} 1",
            "hookline_records_delivered_total{topic=\"message_command\"} 0",
            "hookline_records_delivered_total{topic=\"(other)\"} 0",
            "hookline_records_failed_total{topic=\"message_command\"} 2",
            "# TYPE hookline_delivery_latency_seconds histogram",
            "hookline_delivery_latency_seconds_bucket{le=\"+Inf\"} 1",
            "hookline_delivery_latency_seconds_count 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        // The totals live only in the labelled series, so that `sum` adds them up right.
        assert!(!text.lines().any(|l| l.starts_with("hookline_records_delivered_total ")), "{text}");
        let snapshot = metrics.snapshot();
        assert_eq!((snapshot["records_delivered"], snapshot["records_failed"]), (1, 2));
    }
}
