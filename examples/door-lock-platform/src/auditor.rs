//! The auditor's decisions over `message_command` and `message_state` read together.
//!
//! Every acknowledged command gives one `command` audit line: who sent it (`from`),
//! which lock acknowledged it and when (a record on `message_command` exists only once
//! the lock acknowledged it), whether its `sign` verifies with the lock's secret, and
//! findings: `tampered` (bad sign), `replay` (a `nonce_str` this lock already got),
//! `stale` (`ts` further than the window from the acknowledgement), `unknown_lock` (no
//! secret on file). A later state report with the same `process_id` gives one
//! `state_report` line; a report read before its command sets `state_report_seen`.
//!
//! Memory is bounded by the window: nonces, and commands or reports waiting for their
//! partner, are forgotten once older than it (a replay of an older nonce is `stale`
//! anyway). This memory is not persisted: after a restart, replays of commands acked
//! before it are caught as `stale` only once outside the window.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use crate::envelope::{Command, Envelope, StateReport};
use crate::sign;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Finding {
    Tampered,
    Replay,
    Stale,
    UnknownLock,
}

/// One line of the audit log (topic `audit`, keyed by lock id, and the audit file).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AuditLine {
    Command {
        lock_id: String,
        process_id: String,
        action: String,
        /// MQTT client id of the sender.
        from: String,
        /// When the lock acknowledged it (envelope `ts`, ms).
        acked_at: i64,
        /// The command's own `ts` (s).
        command_ts: i64,
        nonce_str: String,
        sign_valid: bool,
        findings: Vec<Finding>,
        /// A state report with this `process_id` was read before the command.
        state_report_seen: bool,
    },
    StateReport {
        lock_id: String,
        process_id: String,
        action: String,
        lock_state: serde_json::Value,
        /// Envelope `ts` of the report, ms.
        ts: i64,
    },
}

impl AuditLine {
    pub fn lock_id(&self) -> &str {
        match self {
            AuditLine::Command { lock_id, .. } | AuditLine::StateReport { lock_id, .. } => lock_id,
        }
    }
}

type Key = (String, String);

pub struct Auditor {
    secrets: BTreeMap<String, String>,
    window_ms: i64,
    /// Per lock: nonce -> the command's ts (ms).
    nonces: HashMap<String, HashMap<String, i64>>,
    /// (lock, process_id) of audited commands not yet followed by a report -> acked_at.
    awaiting_report: HashMap<Key, i64>,
    /// (lock, process_id) of reports read before any command with that id -> ts.
    early_reports: HashMap<Key, i64>,
    /// Envelope `ts` of the last sweep of the three maps above.
    swept_at: i64,
}

impl Auditor {
    /// `secrets`: lock id -> signing secret.
    pub fn new(secrets: BTreeMap<String, String>, window_secs: u64) -> Auditor {
        Auditor {
            secrets,
            window_ms: window_secs as i64 * 1000,
            nonces: HashMap::new(),
            awaiting_report: HashMap::new(),
            early_reports: HashMap::new(),
            swept_at: 0,
        }
    }

    /// A `message_command` record.
    pub fn on_command(&mut self, envelope: &Envelope, command: &Command) -> AuditLine {
        self.forget_old(envelope.ts);
        let lock_id = envelope.client_id.clone();
        let mut findings = Vec::new();
        let sign_valid = match self.secrets.get(&lock_id) {
            Some(secret) => sign::verify(secret, command),
            None => {
                findings.push(Finding::UnknownLock);
                false
            }
        };
        if !sign_valid && !findings.contains(&Finding::UnknownLock) {
            findings.push(Finding::Tampered);
        }
        let nonces = self.nonces.entry(lock_id.clone()).or_default();
        if nonces.insert(command.nonce_str.clone(), command.ts * 1000).is_some() {
            findings.push(Finding::Replay);
        }
        if (envelope.ts - command.ts * 1000).abs() > self.window_ms {
            findings.push(Finding::Stale);
        }
        let key = (lock_id.clone(), command.process_id.clone());
        let state_report_seen = self.early_reports.remove(&key).is_some();
        if !state_report_seen {
            self.awaiting_report.insert(key, envelope.ts);
        }
        AuditLine::Command {
            lock_id,
            process_id: command.process_id.clone(),
            action: command.action.clone(),
            from: envelope.from.clone(),
            acked_at: envelope.ts,
            command_ts: command.ts,
            nonce_str: command.nonce_str.clone(),
            sign_valid,
            findings,
            state_report_seen,
        }
    }

    /// A `message_state` record: a line if it follows an audited command.
    pub fn on_state(&mut self, envelope: &Envelope, report: &StateReport) -> Option<AuditLine> {
        self.forget_old(envelope.ts);
        let key = (envelope.client_id.clone(), report.process_id.clone());
        if self.awaiting_report.remove(&key).is_none() {
            self.early_reports.insert(key, envelope.ts);
            return None;
        }
        Some(AuditLine::StateReport {
            lock_id: envelope.client_id.clone(),
            process_id: report.process_id.clone(),
            action: report.action.clone(),
            lock_state: report.lock_state.clone(),
            ts: envelope.ts,
        })
    }

    /// Forgets what is older than the window before `now_ms` (record time); at most
    /// once a second, since a sweep visits every remembered entry.
    fn forget_old(&mut self, now_ms: i64) {
        if now_ms < self.swept_at + 1000 {
            return;
        }
        self.swept_at = now_ms;
        let oldest_ms = now_ms - self.window_ms;
        for nonces in self.nonces.values_mut() {
            nonces.retain(|_, ts| *ts >= oldest_ms);
        }
        self.nonces.retain(|_, nonces| !nonces.is_empty());
        self.awaiting_report.retain(|_, ts| *ts >= oldest_ms);
        self.early_reports.retain(|_, ts| *ts >= oldest_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_S: i64 = 1_700_000_000;

    fn auditor() -> Auditor {
        Auditor::new([("L1".to_string(), "s1".to_string())].into(), 60)
    }

    fn envelope(ts_ms: i64) -> Envelope {
        Envelope {
            client_id: "L1".into(),
            username: String::new(),
            from: "business-app-1".into(),
            topic: "devices/L1/command".into(),
            payload: String::new(),
            ts: ts_ms,
        }
    }

    fn command(process_id: &str, nonce: &str, ts: i64) -> Command {
        Command {
            process_id: process_id.into(),
            action: "unlock".into(),
            nonce_str: nonce.into(),
            ts,
            sign: sign::sign("s1", "unlock", nonce, process_id, ts),
        }
    }

    fn findings(line: &AuditLine) -> Vec<Finding> {
        match line {
            AuditLine::Command { findings, .. } => findings.clone(),
            other => panic!("expected a command line, got {other:?}"),
        }
    }

    fn report(process_id: &str) -> StateReport {
        StateReport {
            process_id: process_id.into(),
            action: "unlock".into(),
            battery: 90.0,
            lock_state: 1.into(),
            version: 1.1,
            client_id: "L1".into(),
        }
    }

    #[test]
    fn a_good_command_has_no_findings_and_its_report_follows() {
        let mut a = auditor();
        let line = a.on_command(&envelope(NOW_S * 1000), &command("p1", "n1", NOW_S));
        assert_eq!(findings(&line), []);
        assert!(
            matches!(line, AuditLine::Command { sign_valid: true, state_report_seen: false, ref from, .. } if from == "business-app-1")
        );
        let follow = a.on_state(&envelope(NOW_S * 1000 + 50), &report("p1"));
        assert!(matches!(follow, Some(AuditLine::StateReport { ref process_id, .. }) if process_id == "p1"));
        assert_eq!(a.on_state(&envelope(NOW_S * 1000 + 60), &report("p1")), None, "only once");
    }

    #[test]
    fn a_report_read_before_its_command_is_matched() {
        let mut a = auditor();
        assert_eq!(a.on_state(&envelope(NOW_S * 1000), &report("p1")), None);
        let line = a.on_command(&envelope(NOW_S * 1000), &command("p1", "n1", NOW_S));
        assert!(matches!(line, AuditLine::Command { state_report_seen: true, .. }));
    }

    #[test]
    fn tampered_replayed_stale_and_unknown_commands_are_flagged() {
        let mut a = auditor();
        let mut tampered = command("p1", "n1", NOW_S);
        tampered.process_id = "p2".into();
        assert_eq!(findings(&a.on_command(&envelope(NOW_S * 1000), &tampered)), [Finding::Tampered]);
        assert_eq!(findings(&a.on_command(&envelope(NOW_S * 1000), &command("p3", "n3", NOW_S))), []);
        assert_eq!(findings(&a.on_command(&envelope(NOW_S * 1000 + 5), &command("p3", "n3", NOW_S))), [Finding::Replay]);
        assert_eq!(findings(&a.on_command(&envelope(NOW_S * 1000), &command("p4", "n4", NOW_S - 61))), [Finding::Stale]);
        let mut other = envelope(NOW_S * 1000);
        other.client_id = "L9".into();
        assert_eq!(findings(&a.on_command(&other, &command("p5", "n5", NOW_S))), [Finding::UnknownLock]);
    }

    #[test]
    fn nonces_are_forgotten_after_the_window_where_staleness_takes_over() {
        let mut a = auditor();
        a.on_command(&envelope(NOW_S * 1000), &command("p1", "n1", NOW_S));
        a.on_command(&envelope((NOW_S + 120) * 1000), &command("p2", "n2", NOW_S + 120));
        let late_replay = a.on_command(&envelope((NOW_S + 121) * 1000), &command("p1", "n1", NOW_S));
        // Remembered, n1 would also be a replay.
        assert_eq!(findings(&late_replay), [Finding::Stale]);
    }
}
