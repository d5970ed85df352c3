//! The monitor's decisions: per lock, which alarm conditions hold. A condition raises
//! one alarm when it starts to hold and one `cleared` record when it stops, never more
//! in between (no alarm storm). State lives in memory: after a restart a condition that
//! still holds is raised once more.
//!
//! Conditions: `low_battery` (battery below the threshold), `abnormal_lock_state`
//! (`lock_state` other than 0 or 1, or absent), `silent` (no report for more than
//! `silent_intervals` reporting intervals; cleared by the next report).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::channel::Notification;
use crate::config::{LockConfig, MonitorConfig};
use crate::envelope::StateReport;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Condition {
    LowBattery,
    AbnormalLockState,
    Silent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmStatus {
    Raised,
    Cleared,
}

/// One record on the `alarms` topic (keyed by lock id).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alarm {
    pub lock_id: String,
    pub condition: Condition,
    pub status: AlarmStatus,
    pub detail: String,
    /// The report's envelope `ts`, or the clock when silence was noticed; ms.
    pub ts: i64,
}

impl Alarm {
    /// The owner's notification of this alarm.
    pub fn notification(&self, lock: &LockConfig) -> Notification {
        let status = match self.status {
            AlarmStatus::Raised => "raised",
            AlarmStatus::Cleared => "cleared",
        };
        let condition = serde_json::to_value(self.condition).expect("a condition serializes");
        let condition = condition.as_str().unwrap_or_default();
        Notification {
            lock_id: self.lock_id.clone(),
            owner: lock.owner.clone(),
            contact: lock.contact.clone(),
            subject: format!("{condition} {status}"),
            text: format!("{}, lock {}: {condition} {status} ({})", lock.owner, self.lock_id, self.detail),
            ts: self.ts,
        }
    }
}

#[derive(Default)]
struct LockWatch {
    last_report_ts: i64,
    active: BTreeSet<Condition>,
}

pub struct Monitor {
    battery_threshold: f64,
    report_interval_ms: i64,
    silent_after_ms: i64,
    locks: BTreeMap<String, LockWatch>,
    newest_record_ts: i64,
}

impl Monitor {
    pub fn new(config: &MonitorConfig) -> Monitor {
        let report_interval_ms = config.report_interval_secs as i64 * 1000;
        Monitor {
            battery_threshold: config.battery_threshold,
            report_interval_ms,
            silent_after_ms: report_interval_ms * config.silent_intervals as i64,
            locks: BTreeMap::new(),
            newest_record_ts: 0,
        }
    }

    /// A state report of `lock_id` whose envelope `ts` is `ts`.
    pub fn on_state(&mut self, lock_id: &str, report: &StateReport, ts: i64) -> Vec<Alarm> {
        self.newest_record_ts = self.newest_record_ts.max(ts);
        let watch = self.locks.entry(lock_id.to_string()).or_default();
        watch.last_report_ts = watch.last_report_ts.max(ts);
        let mut alarms = Vec::new();
        let mut update = |condition, holds: bool, detail: String| {
            if let Some(status) = transition(watch, condition, holds) {
                alarms.push(Alarm { lock_id: lock_id.into(), condition, status, detail, ts });
            }
        };
        update(Condition::Silent, false, "reporting again".into());
        update(
            Condition::LowBattery,
            report.battery < self.battery_threshold,
            format!("battery {}% (threshold {}%)", report.battery, self.battery_threshold),
        );
        let lock_state_ok = matches!(report.lock_state.as_i64(), Some(0 | 1));
        update(Condition::AbnormalLockState, !lock_state_ok, format!("lock_state {}", report.lock_state));
        alarms
    }

    /// Checks for silent locks at `now` (ms). Silence is only judged once the monitor is
    /// caught up (`idle`, or the newest record read is less than one reporting interval
    /// old), so reading a backlog after a restart raises no false alarm.
    pub fn on_tick(&mut self, now: i64, idle: bool) -> Vec<Alarm> {
        if !idle && now - self.newest_record_ts >= self.report_interval_ms {
            return Vec::new();
        }
        let mut alarms = Vec::new();
        for (lock_id, watch) in &mut self.locks {
            let silent_for = now - watch.last_report_ts;
            if let Some(status) = transition(watch, Condition::Silent, silent_for > self.silent_after_ms) {
                let detail = format!("no report for {} s", silent_for / 1000);
                alarms.push(Alarm { lock_id: lock_id.clone(), condition: Condition::Silent, status, detail, ts: now });
            }
        }
        alarms
    }
}

/// Records whether `condition` holds; says whether that changed.
fn transition(watch: &mut LockWatch, condition: Condition, holds: bool) -> Option<AlarmStatus> {
    if holds && watch.active.insert(condition) {
        Some(AlarmStatus::Raised)
    } else if !holds && watch.active.remove(&condition) {
        Some(AlarmStatus::Cleared)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor() -> Monitor {
        Monitor::new(&MonitorConfig { report_interval_secs: 10, silent_intervals: 3, ..MonitorConfig::default() })
    }

    fn report(battery: f64, lock_state: serde_json::Value) -> StateReport {
        StateReport { process_id: "1".into(), action: "report".into(), battery, lock_state, version: 1.1, client_id: "L1".into() }
    }

    fn summary(alarms: &[Alarm]) -> Vec<(Condition, AlarmStatus)> {
        alarms.iter().map(|a| (a.condition, a.status)).collect()
    }

    #[test]
    fn low_battery_raises_once_until_it_clears() {
        let mut m = monitor();
        assert!(m.on_state("L1", &report(50.0, 0.into()), 1_000).is_empty());
        assert_eq!(summary(&m.on_state("L1", &report(19.0, 0.into()), 2_000)), [(Condition::LowBattery, AlarmStatus::Raised)]);
        assert!(m.on_state("L1", &report(18.0, 0.into()), 3_000).is_empty(), "no storm");
        assert_eq!(summary(&m.on_state("L1", &report(90.0, 0.into()), 4_000)), [(Condition::LowBattery, AlarmStatus::Cleared)]);
    }

    #[test]
    fn abnormal_or_missing_lock_state_raises_once() {
        let mut m = monitor();
        let raised = [(Condition::AbnormalLockState, AlarmStatus::Raised)];
        assert_eq!(summary(&m.on_state("L1", &report(50.0, 7.into()), 1_000)), raised);
        assert!(m.on_state("L1", &report(50.0, serde_json::Value::Null), 2_000).is_empty());
        assert_eq!(summary(&m.on_state("L2", &report(50.0, "open".into()), 2_000)), raised);
    }

    #[test]
    fn silence_beyond_the_intervals_raises_once_and_a_report_clears_it() {
        let mut m = monitor();
        m.on_state("L1", &report(50.0, 1.into()), 0);
        assert!(m.on_tick(30_000, true).is_empty(), "exactly 3 intervals is not yet silent");
        assert_eq!(summary(&m.on_tick(30_001, true)), [(Condition::Silent, AlarmStatus::Raised)]);
        assert!(m.on_tick(60_000, true).is_empty(), "no storm");
        assert_eq!(summary(&m.on_state("L1", &report(50.0, 1.into()), 61_000)), [(Condition::Silent, AlarmStatus::Cleared)]);
    }

    #[test]
    fn silence_is_not_judged_while_reading_a_backlog() {
        let mut m = monitor();
        m.on_state("L1", &report(50.0, 1.into()), 0);
        assert!(m.on_tick(100_000, false).is_empty(), "newest record is old and records keep coming");
        assert_eq!(summary(&m.on_tick(100_000, true)), [(Condition::Silent, AlarmStatus::Raised)]);
    }
}
