//! The simulator's behaviour, without the network: a door lock (state reports, signed
//! commands obeyed or refused, battery drain, faults) and the business app that signs
//! unlock commands, optionally faulty ones, for the auditor to catch.

use std::collections::HashMap;

use rand_core::{OsRng, RngCore};
use serde_json::json;

use crate::envelope::Command;
use crate::sign;

/// Battery percentage lost per state report.
const DRAIN_PER_REPORT: f64 = 0.05;
/// Battery of a lock started with the low-battery fault, below the default threshold.
const LOW_BATTERY: f64 = 15.0;
/// `lock_state` a lock with the bad-state fault reports: neither locked nor unlocked.
const BAD_LOCK_STATE: i64 = 7;

/// How a simulated lock misbehaves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LockFaults {
    /// Starts at 15 % battery.
    pub low_battery: bool,
    /// Reports a `lock_state` of 7.
    pub bad_state: bool,
    /// Reports once after connecting, then never again (it still acknowledges commands).
    pub silent: bool,
}

/// Why a lock refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a command: {0}")]
    Malformed(String),
    #[error("bad sign")]
    BadSign,
    #[error("nonce already used")]
    Replayed,
    #[error("ts outside the window")]
    Stale,
    #[error("unknown action {0}")]
    UnknownAction(String),
}

pub struct SimulatedLock {
    pub id: String,
    secret: String,
    pub faults: LockFaults,
    battery: f64,
    /// 0 locked, 1 unlocked.
    lock_state: i64,
    window_secs: i64,
    /// nonce -> command ts (s), forgotten once outside the window.
    nonces: HashMap<String, i64>,
}

impl SimulatedLock {
    pub fn new(id: &str, secret: &str, faults: LockFaults, window_secs: u64) -> SimulatedLock {
        SimulatedLock {
            id: id.into(),
            secret: secret.into(),
            faults,
            battery: if faults.low_battery { LOW_BATTERY } else { 100.0 },
            lock_state: 0,
            window_secs: window_secs as i64,
            nonces: HashMap::new(),
        }
    }

    /// The payload of a state report (scenario format); drains the battery a little.
    pub fn report(&mut self, action: &str, process_id: &str) -> Vec<u8> {
        self.battery = (self.battery - DRAIN_PER_REPORT).max(0.0);
        let lock_state = if self.faults.bad_state { BAD_LOCK_STATE } else { self.lock_state };
        let battery = (self.battery * 10.0).round() / 10.0;
        json!({"process_id": process_id, "action": action, "battery": battery, "lock_state": lock_state,
               "version": 1.1, "client_id": self.id})
        .to_string()
        .into_bytes()
    }

    /// Checks a command received at `now_secs` the way a real lock would and, if it
    /// holds, unlocks. The caller then reports with the command's `process_id`.
    pub fn obey(&mut self, payload: &[u8], now_secs: i64) -> Result<Command, Refusal> {
        let command: Command = serde_json::from_slice(payload).map_err(|e| Refusal::Malformed(e.to_string()))?;
        if !sign::verify(&self.secret, &command) {
            return Err(Refusal::BadSign);
        }
        if (now_secs - command.ts).abs() > self.window_secs {
            return Err(Refusal::Stale);
        }
        self.nonces.retain(|_, ts| now_secs - *ts <= self.window_secs);
        if self.nonces.insert(command.nonce_str.clone(), command.ts).is_some() {
            return Err(Refusal::Replayed);
        }
        match command.action.as_str() {
            "unlock" => self.lock_state = 1,
            other => return Err(Refusal::UnknownAction(other.into())),
        }
        Ok(command)
    }

    /// Locks again (a door that closes behind the visitor).
    pub fn relock(&mut self) {
        self.lock_state = 0;
    }
}

/// What kind of command the business app sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    Valid,
    /// Signed, then `process_id` changed: the sign no longer matches.
    Tampered,
    /// Signed correctly with a `ts` one hour old.
    Stale,
}

/// A random decimal `process_id` of 16 digits, as in the scenario.
pub fn new_process_id() -> String {
    format!("{:016}", OsRng.next_u64() % 10_000_000_000_000_000)
}

/// A random 8-character lowercase alphanumeric `nonce_str`.
pub fn new_nonce() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 8];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char).collect()
}

/// An unlock command signed with `secret` at `now_secs`, spoiled as `kind` says.
pub fn unlock_command(secret: &str, now_secs: i64, kind: CommandKind) -> Command {
    let process_id = new_process_id();
    let nonce_str = new_nonce();
    let ts = if kind == CommandKind::Stale { now_secs - 3600 } else { now_secs };
    let sign = sign::sign(secret, "unlock", &nonce_str, &process_id, ts);
    let process_id = if kind == CommandKind::Tampered { new_process_id() } else { process_id };
    Command { process_id, action: "unlock".into(), nonce_str, ts, sign }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(command: &Command) -> Vec<u8> {
        serde_json::to_vec(command).unwrap()
    }

    #[test]
    fn a_lock_obeys_a_valid_command_once_and_reports_unlocked() {
        let mut lock = SimulatedLock::new("L1", "s1", LockFaults::default(), 300);
        let command = unlock_command("s1", 1000, CommandKind::Valid);
        assert_eq!(lock.obey(&bytes(&command), 1001), Ok(command.clone()));
        let report: serde_json::Value = serde_json::from_slice(&lock.report("unlock", &command.process_id)).unwrap();
        assert_eq!(report["lock_state"], 1);
        assert_eq!(report["process_id"], command.process_id.as_str());
        assert_eq!(lock.obey(&bytes(&command), 1002), Err(Refusal::Replayed));
    }

    #[test]
    fn a_lock_refuses_tampered_and_stale_commands() {
        let mut lock = SimulatedLock::new("L1", "s1", LockFaults::default(), 300);
        assert_eq!(lock.obey(&bytes(&unlock_command("s1", 1000, CommandKind::Tampered)), 1000), Err(Refusal::BadSign));
        assert_eq!(lock.obey(&bytes(&unlock_command("s1", 5000, CommandKind::Stale)), 5000), Err(Refusal::Stale));
        assert_eq!(lock.obey(&bytes(&unlock_command("s2", 1000, CommandKind::Valid)), 1000), Err(Refusal::BadSign));
    }

    #[test]
    fn faults_show_in_reports_and_the_battery_drains() {
        let faults = LockFaults { low_battery: true, bad_state: true, silent: false };
        let mut lock = SimulatedLock::new("L1", "s1", faults, 300);
        let first: serde_json::Value = serde_json::from_slice(&lock.report("report", "1")).unwrap();
        assert_eq!(first["lock_state"], 7);
        assert!(first["battery"].as_f64().unwrap() < 20.0);
        for _ in 0..20 {
            lock.report("report", "1");
        }
        let later: serde_json::Value = serde_json::from_slice(&lock.report("report", "1")).unwrap();
        assert!(later["battery"].as_f64().unwrap() < first["battery"].as_f64().unwrap());
    }
}
