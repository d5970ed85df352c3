//! The gateway's Kafka record (the scenario's envelope) and the two MQTT payloads it
//! carries base64-encoded: a lock's state report and an unlock command.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// One record value on `message_state` (hook `message.publish`) or `message_command`
/// (hook `message.acked`, where `client_id` is the acknowledging lock and `from` the
/// sender of the command).
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    pub client_id: String,
    #[serde(default)]
    pub username: String,
    /// Publisher of an acknowledged command; absent on `message.publish` records.
    #[serde(default)]
    pub from: String,
    pub topic: String,
    /// Base64 of the MQTT payload bytes.
    pub payload: String,
    /// Trigger time of the hook, ms since the epoch.
    pub ts: i64,
}

/// A lock's state report on `devices/{id}/state`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct StateReport {
    pub process_id: String,
    pub action: String,
    pub battery: f64,
    /// 0 locked, 1 unlocked; kept as JSON because a faulty lock may send anything
    /// (null when absent).
    #[serde(default)]
    pub lock_state: serde_json::Value,
    pub version: f64,
    pub client_id: String,
}

/// A command on `devices/{id}/command`, signed by the business app.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
pub struct Command {
    pub process_id: String,
    pub action: String,
    pub nonce_str: String,
    /// Seconds since the epoch at signing.
    pub ts: i64,
    pub sign: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("record value is not a hookline envelope: {0}")]
    Envelope(serde_json::Error),
    #[error("envelope payload is not base64: {0}")]
    Base64(base64::DecodeError),
    #[error("payload on {topic} is not the scenario's JSON: {source}")]
    Payload { topic: String, source: serde_json::Error },
}

/// The envelope and payload of a record, or None after logging why it cannot be read
/// (a record that will never parse must not stop a consumer).
pub fn decode<T: for<'de> Deserialize<'de>>(value: &[u8]) -> Option<(Envelope, T)> {
    let decoded = Envelope::parse(value).and_then(|envelope| Ok((envelope.payload()?, envelope)));
    match decoded {
        Ok((payload, envelope)) => Some((envelope, payload)),
        Err(e) => {
            tracing::warn!(error = %e, "skipping a record that cannot be read");
            None
        }
    }
}

impl Envelope {
    pub fn parse(value: &[u8]) -> Result<Envelope, EnvelopeError> {
        serde_json::from_slice(value).map_err(EnvelopeError::Envelope)
    }

    /// Decodes the MQTT payload as `T` (a `StateReport` or a `Command`).
    pub fn payload<T: for<'de> Deserialize<'de>>(&self) -> Result<T, EnvelopeError> {
        let bytes = base64::engine::general_purpose::STANDARD.decode(&self.payload).map_err(EnvelopeError::Base64)?;
        serde_json::from_slice(&bytes).map_err(|source| EnvelopeError::Payload { topic: self.topic.clone(), source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_state_record_decodes() {
        let payload = r#"{"process_id":"7802441525528958","action":"unlock","battery":83.4,"lock_state":1,"version":1.1,"client_id":"10083618796833171"}"#;
        let record = serde_json::json!({
            "client_id": "10083618796833171", "username": "", "topic": "devices/10083618796833171/state",
            "payload": base64::engine::general_purpose::STANDARD.encode(payload), "qos": 1,
            "node": "gateway@127.0.0.1", "ts": 1574753026269i64,
        });
        let envelope = Envelope::parse(record.to_string().as_bytes()).unwrap();
        let report: StateReport = envelope.payload().unwrap();
        assert_eq!(report.battery, 83.4);
        assert_eq!(report.lock_state, serde_json::json!(1));
        assert_eq!(envelope.ts, 1574753026269);
    }

    #[test]
    fn a_payload_that_is_not_json_names_the_topic() {
        let record = r#"{"client_id":"1","topic":"devices/1/state","payload":"bm9wZQ==","qos":1,"node":"n","ts":1}"#;
        let err = Envelope::parse(record.as_bytes()).unwrap().payload::<StateReport>().unwrap_err();
        assert!(err.to_string().contains("devices/1/state"), "{err}");
    }
}
