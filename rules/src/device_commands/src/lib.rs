//! hookline rule `device_commands` (guest ABI v2): the scenario's downlink. Every record
//! the gateway consumes from the Kafka topic `device_commands` (hook `kafka.record`) is a
//! command for one lock: its key is the lock id, its value the command JSON. The rule
//! publishes the record's value, unchanged, to the MQTT topic `devices/{key}/command`
//! at QoS 1, not retained; the lock's PUBACK then makes the usual `message_command`
//! record through `message_command.wat`.
//!
//! A record whose key is missing, empty, longer than 4096 bytes, not UTF-8, or not a
//! single topic level (it holds `/`, `+` or `#`) names no lock: the rule rejects it
//! (a negative result), so the gateway counts it as this rule's error and publishes
//! nothing.
//!
//! Build: `rules/build.sh` (writes `rules/device_commands.wasm`).
#![no_std]

use hookline_rule::{event, publish, subscribe, Error, Event, Hook, QoS};

const KAFKA_TOPIC: &str = "device_commands";
const PREFIX: &[u8] = b"devices/";
const SUFFIX: &[u8] = b"/command";
/// Longest key accepted: the ABI's key limit.
const MAX_KEY: usize = 4096;

/// Declares the single subscription (index 0): the gateway consumes `device_commands`.
fn init() -> Result<(), Error> {
    subscribe(Hook::KafkaRecord, KAFKA_TOPIC)?;
    Ok(())
}

/// A key that names a lock: non-empty, one topic level, no wildcard.
fn is_lock_id(key: &[u8]) -> bool {
    !key.is_empty() && !key.iter().any(|b| matches!(b, b'/' | b'+' | b'#'))
}

/// Publishes the record's value to `devices/{key}/command`; rejects a record whose key
/// names no lock.
fn on_event(_event: &Event) -> Result<(), Error> {
    let mut topic = [0u8; PREFIX.len() + MAX_KEY + SUFFIX.len()];
    topic[..PREFIX.len()].copy_from_slice(PREFIX);
    let key_len = match event::key(&mut topic[PREFIX.len()..PREFIX.len() + MAX_KEY]) {
        Ok(key) if is_lock_id(key) => key.len(),
        Ok(_) | Err(Error::BufferTooSmall { .. }) => return Err(Error::Rejected),
        Err(error) => return Err(error),
    };
    let end = PREFIX.len() + key_len + SUFFIX.len();
    topic[PREFIX.len() + key_len..end].copy_from_slice(SUFFIX);
    // A key that is not UTF-8 is no topic level: InvalidUtf8 rejects the record.
    let topic = core::str::from_utf8(&topic[..end])?;
    publish(topic, QoS::AtLeastOnce, false)?;
    Ok(())
}

hookline_rule::rule! { init => init, on_event => on_event }
