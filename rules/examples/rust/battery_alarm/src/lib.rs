//! hookline example rule `battery_alarm`, in Rust: content-based routing.
//!
//! On `message.publish` on `devices/+/state`, reads two fields of the lock's JSON state,
//! e.g. `{"process_id":"7802441525528958","action":"unlock","battery":83.4,"lock_state":1,...}`,
//! and routes the event to Kafka topic `alarm_state` (keyed by the client id, the
//! default key) when `battery < 20` or `lock_state` is not 0 or 1. A payload without
//! both numbers (not JSON, a field missing, a string) routes nothing: no alarm.
//!
//! Build: `cargo build --release --target wasm32-unknown-unknown` (or
//! `rules/examples/build.sh OUT_DIR`).
#![no_std]

use hookline_rule::{payload_f64, route, subscribe, Error, Event, Hook};

fn init() -> Result<(), Error> {
    subscribe(Hook::MessagePublish, "devices/+/state")?;
    Ok(())
}

fn on_event(_: &Event) -> Result<(), Error> {
    // The host parses the payload; a lookup that fails is a report we cannot judge.
    let (Ok(battery), Ok(lock_state)) = (payload_f64("battery"), payload_f64("lock_state")) else {
        return Ok(());
    };
    if battery < 20.0 || (lock_state != 0.0 && lock_state != 1.0) {
        route("alarm_state")?;
    }
    Ok(())
}

hookline_rule::rule! { init => init, on_event => on_event }
