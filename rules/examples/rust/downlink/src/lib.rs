//! hookline example rule `downlink`, in Rust (guest ABI v2): the door-lock scenario's
//! commands through Kafka, the same rule as the shipped `rules/src/device_commands`.
//!
//! - `kafka.record` on Kafka topic `device_commands` -> MQTT publish of the record's
//!   value to `devices/{key}/command`, QoS 1, not retained.
//!
//! A record whose key is missing, empty, longer than 4096 bytes, not UTF-8 or not one
//! topic level (`/`, `+`, `#`) is rejected (negative result): counted, nothing published.
//!
//! Build: `cargo build --release --target wasm32-unknown-unknown` (or
//! `rules/examples/build.sh OUT_DIR`).
#![no_std]

use hookline_rule::{event, publish, subscribe, Error, Event, Hook, QoS};

const PREFIX: &[u8] = b"devices/";
const SUFFIX: &[u8] = b"/command";
const MAX_KEY: usize = 4096;

fn init() -> Result<(), Error> {
    subscribe(Hook::KafkaRecord, "device_commands")?; // subscription 0
    Ok(())
}

fn is_lock_id(key: &[u8]) -> bool {
    !key.is_empty() && !key.iter().any(|b| matches!(b, b'/' | b'+' | b'#'))
}

fn on_event(_ev: &Event) -> Result<(), Error> {
    // "devices/" + key + "/command", assembled on the stack.
    let mut topic = [0u8; PREFIX.len() + MAX_KEY + SUFFIX.len()];
    topic[..PREFIX.len()].copy_from_slice(PREFIX);
    let key_len = match event::key(&mut topic[PREFIX.len()..PREFIX.len() + MAX_KEY]) {
        Ok(key) if is_lock_id(key) => key.len(),
        Ok(_) | Err(Error::BufferTooSmall { .. }) => return Err(Error::Rejected),
        Err(error) => return Err(error),
    };
    let end = PREFIX.len() + key_len + SUFFIX.len();
    topic[PREFIX.len() + key_len..end].copy_from_slice(SUFFIX);
    publish(
        core::str::from_utf8(&topic[..end])?,
        QoS::AtLeastOnce,
        false,
    )?;
    Ok(())
}

hookline_rule::rule! { init => init, on_event => on_event }
