//! hookline rule `message_state`: every `message.publish` on `devices/+/state` goes to
//! the Kafka topic `message_state`, keyed by the publishing client's id (the default
//! key).
//!
//! Build: `rules/build.sh` (writes `rules/message_state.wasm`).
#![no_std]

use hookline_rule::{route, subscribe, Error, Event, Hook};

/// Declares the single subscription (index 0).
fn init() -> Result<(), Error> {
    subscribe(Hook::MessagePublish, "devices/+/state")?;
    Ok(())
}

/// Routes the matching event with the default key; a failed route rejects the event.
fn on_event(_event: &Event) -> Result<(), Error> {
    route("message_state")?;
    Ok(())
}

hookline_rule::rule! { init => init, on_event => on_event }
