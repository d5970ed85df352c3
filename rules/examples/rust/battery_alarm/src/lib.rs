//! hookline example rule `battery_alarm`, in Rust: content-based routing.
//!
//! On `message.publish` on `devices/+/state`, reads the lock's JSON state, e.g.
//! `{"process_id":"7802441525528958","action":"unlock","battery":83.4,"lock_state":1,...}`,
//! and routes the event to Kafka topic `alarm_state`, keyed by the client id, when
//! `battery < 20` or `lock_state` is not 0 or 1. Otherwise, and for a payload that cannot
//! be read (see [`scan_number`]), it routes nothing and returns 0.
//!
//! Build: `cargo build --release --target wasm32-unknown-unknown` (or
//! `rules/examples/build.sh OUT_DIR`).
#![no_std]

use hookline_rule::{event, route_with_key, subscribe, Error, Event, Hook};

const BUF_CAP: usize = 4096;
const BATTERY_THRESHOLD: u32 = 20;
/// Integer parts saturate here: any larger value compares the same.
const INT_CAP: u32 = 1_000_000;

/// A number as the scan sees it: sign, integer part, whether the fraction is zero.
#[derive(Debug, PartialEq, Eq)]
struct Number {
    negative: bool,
    integer: u32,
    fraction_zero: bool,
}

/// Finds the first `key` (e.g. `"battery":`) in `buf`, skips spaces/tabs, then reads a
/// number `-?[0-9]+(\.[0-9]+)?` that must be followed by `,`, `}` or whitespace.
/// `None` when the key is missing or the number malformed.
fn scan_number(buf: &[u8], key: &[u8]) -> Option<Number> {
    let mut i = buf.windows(key.len()).position(|w| w == key)? + key.len();
    while i < buf.len() && (buf[i] == b' ' || buf[i] == b'\t') {
        i += 1;
    }
    let mut n = Number {
        negative: false,
        integer: 0,
        fraction_zero: true,
    };
    if buf.get(i) == Some(&b'-') {
        n.negative = true;
        i += 1;
    }
    let start = i;
    while i < buf.len() && buf[i].is_ascii_digit() {
        n.integer = (n.integer * 10 + u32::from(buf[i] - b'0')).min(INT_CAP);
        i += 1;
    }
    if i == start {
        return None;
    }
    if buf.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < buf.len() && buf[i].is_ascii_digit() {
            if buf[i] != b'0' {
                n.fraction_zero = false;
            }
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    match buf.get(i) {
        Some(b',' | b'}' | b' ' | b'\t' | b'\r' | b'\n') => Some(n),
        _ => None,
    }
}

fn init() -> Result<(), Error> {
    subscribe(Hook::MessagePublish, "devices/+/state")?;
    Ok(())
}

fn on_event(ev: &Event) -> Result<(), Error> {
    let mut payload = [0u8; BUF_CAP];
    let payload = match ev.payload(&mut payload) {
        Ok(payload) => payload,
        Err(Error::BufferTooSmall { .. }) => return Ok(()), // larger than we inspect
        Err(e) => return Err(e),
    };
    let (battery, lock_state) = match (
        scan_number(payload, b"\"battery\":"),
        scan_number(payload, b"\"lock_state\":"),
    ) {
        (Some(battery), Some(lock_state)) => (battery, lock_state),
        _ => return Ok(()), // malformed: no alarm
    };
    let low = battery.negative || battery.integer < BATTERY_THRESHOLD;
    let lock_ok = lock_state.fraction_zero
        && (lock_state.integer == 0 || (lock_state.integer == 1 && !lock_state.negative));
    if !low && lock_ok {
        return Ok(());
    }
    let mut key = [0u8; BUF_CAP];
    let key = match event::bytes(event::Field::ClientId, &mut key) {
        Ok(key) => key,
        Err(Error::BufferTooSmall { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    route_with_key("alarm_state", key)?;
    Ok(())
}

hookline_rule::rule! { init => init, on_event => on_event }

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scans_numbers() {
        let n = |s: &str| scan_number(s.as_bytes(), b"\"battery\":");
        assert_eq!(
            n(r#"{"battery":83.4,"x":1}"#),
            Some(Number {
                negative: false,
                integer: 83,
                fraction_zero: false
            })
        );
        assert_eq!(
            n(r#"{"battery": -0.0}"#),
            Some(Number {
                negative: true,
                integer: 0,
                fraction_zero: true
            })
        );
        assert_eq!(n(r#"{"battery":1e3}"#), None);
        assert_eq!(n(r#"{"battery":"low"}"#), None);
        assert_eq!(n(r#"{"battery":5"#), None);
        assert_eq!(n(r#"{"battery":5.}"#), None);
        assert_eq!(n(r#"{"lock_state":1}"#), None);
    }
}
