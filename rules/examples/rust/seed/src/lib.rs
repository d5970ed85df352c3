//! hookline example rule `seed`, in Rust: the door-lock scenario's default routing.
//!
//! - `message.publish` on `devices/+/state` -> Kafka topic `message_state`
//! - `message.acked` on `devices/+/command` -> Kafka topic `message_command`
//!
//! both with the default key (the event's client id). Built as a guest ABI v1 module
//! (`abi = v1`), to show that v1 rules keep building; new rules leave it out (v2).
//!
//! Build: `cargo build --release --target wasm32-unknown-unknown` (or
//! `rules/examples/build.sh OUT_DIR`).
#![no_std]

use hookline_rule::{route, subscribe, Error, Event, Hook};

fn init() -> Result<(), Error> {
    subscribe(Hook::MessagePublish, "devices/+/state")?; // subscription 0
    subscribe(Hook::MessageAcked, "devices/+/command")?; // subscription 1
    Ok(())
}

fn on_event(ev: &Event) -> Result<(), Error> {
    route(if ev.subscription() == 0 {
        "message_state"
    } else {
        "message_command"
    })?;
    Ok(())
}

hookline_rule::rule! { abi = v1, init => init, on_event => on_event }
