//! What a guest reads of the event it decides: its fields, its headers and its payload's
//! JSON fields, copied into guest memory.

use super::codes::{EventField, HostError, ERR_MEMORY, ERR_UNKNOWN, ERR_WRONG_TIME};
use super::guest_memory::{copy_out, guest_str};
use super::state::{HostState, Phase};
use crate::hooks::Hook;
use crate::rules::payload::ParsedPayload;

/// `event_read` on the guest's memory (split from the wasmtime glue to be testable).
pub(super) fn read_event(memory: &mut [u8], state: &HostState, field: i32, dst_ptr: i32, dst_len: i32) -> i32 {
    let Some(event) = &state.event else { return ERR_WRONG_TIME };
    let Some(field) = EventField::from_code(field) else { return ERR_UNKNOWN };
    let value: &[u8] = match field {
        EventField::Topic => &event.topic,
        EventField::ClientId => event.client_id.as_bytes(),
        EventField::Username => event.username.as_bytes(),
        EventField::Payload => &event.payload,
        EventField::From => event.from.as_deref().unwrap_or("").as_bytes(),
        EventField::Peer => event.peer.as_deref().unwrap_or("").as_bytes(),
        EventField::Key => event.record.as_ref().and_then(|r| r.key.as_deref()).unwrap_or_default(),
        EventField::Action => match (event.hook, event.reason) {
            (Hook::AccessDenied, Some(reason)) => reason.name().as_bytes(),
            _ => b"",
        },
        EventField::Partition | EventField::Offset => {
            let number = match (&event.record, field) {
                (Some(record), EventField::Partition) => record.partition.to_string(),
                (Some(record), _) => record.offset.to_string(),
                (None, _) => String::new(),
            };
            return copy_out(memory, number.as_bytes(), dst_ptr, dst_len);
        }
    };
    copy_out(memory, value, dst_ptr, dst_len)
}

/// `event_header` on the guest's memory: the first header of the consumed record named so.
pub(super) fn read_header(memory: &mut [u8], state: &HostState, name_ptr: i32, name_len: i32, dst_ptr: i32, dst_len: i32) -> i32 {
    let Some(event) = &state.event else { return ERR_WRONG_TIME };
    let Some(name) = guest_str(memory, name_ptr, name_len) else { return ERR_MEMORY };
    let header = event.record.as_ref().and_then(|r| r.headers.iter().find(|(n, _)| n == name));
    match header {
        Some((_, value)) => copy_out(memory, value, dst_ptr, dst_len),
        None => ERR_UNKNOWN,
    }
}

/// The JSON text at the guest's `path` in the current event's payload (the MQTT payload,
/// or the consumed record's value), parsed at the first lookup of the event.
pub(super) fn payload_field<'s>(memory: &[u8], state: &'s mut HostState, path_ptr: i32, path_len: i32) -> Result<&'s str, HostError> {
    let Some(event) = state.event.as_ref().filter(|_| state.phase == Phase::Event) else { return Err(HostError::WrongTime) };
    let path = guest_str(memory, path_ptr, path_len).ok_or(HostError::OutOfBounds)?;
    let parsed = state.parsed.get_or_insert_with(|| ParsedPayload::parse(&event.payload));
    Ok(parsed.lookup(&event.payload, path)?)
}
