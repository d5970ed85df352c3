//! The `hookline.*` imports registered on a linker: each one the wasmtime glue around
//! what `read` and `output` do on the guest's memory.

use wasmtime::{Caller, Linker};

use super::codes::{ERR_FILTER, ERR_LIMIT, ERR_MEMORY, ERR_UNKNOWN, ERR_WRONG_TIME, IMPORT_MODULE, MAX_SUBSCRIPTIONS};
use super::guest_memory::{copy_out, guest_range, guest_str, memory_and_state};
use super::output::{add_header, add_publish, add_route, add_user_property, set_publish_property, set_route_value, write_log};
use super::read::{payload_field, read_event, read_header};
use super::state::{HostState, Phase};
use crate::hooks::Hook;
use crate::rules::payload;
use crate::topic::TopicFilter;

/// Registers every `hookline.*` import on `linker`.
pub fn add_to_linker(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    linker.func_wrap(IMPORT_MODULE, "subscribe", subscribe)?;
    linker.func_wrap(IMPORT_MODULE, "event_read", event_read)?;
    linker.func_wrap(IMPORT_MODULE, "event_qos", |caller: Caller<'_, HostState>| -> i32 {
        caller.data().event.as_ref().map_or(0, |e| e.qos as i32)
    })?;
    linker.func_wrap(IMPORT_MODULE, "route", route)?;
    linker.func_wrap(
        IMPORT_MODULE,
        "route_to",
        |mut caller: Caller<'_, HostState>,
         dest_ptr: i32,
         dest_len: i32,
         topic_ptr: i32,
         topic_len: i32,
         key_ptr: i32,
         key_len: i32|
         -> i32 {
            let Some((memory, state)) = memory_and_state(&mut caller) else { return ERR_MEMORY };
            add_route(memory, state, Some((dest_ptr, dest_len)), (topic_ptr, topic_len), (key_ptr, key_len))
        },
    )?;
    linker.func_wrap(IMPORT_MODULE, "route_header", route_header)?;
    linker.func_wrap(IMPORT_MODULE, "log", log)?;
    linker.func_wrap(IMPORT_MODULE, "config_get", config_get)?;
    linker.func_wrap(IMPORT_MODULE, "route_value", |mut caller: Caller<'_, HostState>, kind: i32, ptr: i32, len: i32| -> i32 {
        let Some((memory, state)) = memory_and_state(&mut caller) else { return ERR_MEMORY };
        set_route_value(memory, state, kind, ptr, len)
    })?;
    linker.func_wrap(
        IMPORT_MODULE,
        "event_header",
        |mut caller: Caller<'_, HostState>, name_ptr: i32, name_len: i32, dst_ptr: i32, dst_len: i32| -> i32 {
            let Some((memory, state)) = memory_and_state(&mut caller) else { return ERR_MEMORY };
            read_header(memory, state, name_ptr, name_len, dst_ptr, dst_len)
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "publish",
        |mut caller: Caller<'_, HostState>,
         topic_ptr: i32,
         topic_len: i32,
         qos: i32,
         retain: i32,
         payload_ptr: i32,
         payload_len: i32|
         -> i32 {
            let Some((memory, state)) = memory_and_state(&mut caller) else { return ERR_MEMORY };
            add_publish(memory, state, (topic_ptr, topic_len), qos, retain, (payload_ptr, payload_len))
        },
    )?;
    linker.func_wrap(IMPORT_MODULE, "publish_property", |mut caller: Caller<'_, HostState>, id: i32, ptr: i32, len: i32| -> i32 {
        let Some((memory, state)) = memory_and_state(&mut caller) else { return ERR_MEMORY };
        set_publish_property(memory, state, id, ptr, len)
    })?;
    linker.func_wrap(
        IMPORT_MODULE,
        "publish_user_property",
        |mut caller: Caller<'_, HostState>, name_ptr: i32, name_len: i32, value_ptr: i32, value_len: i32| -> i32 {
            let Some((memory, state)) = memory_and_state(&mut caller) else { return ERR_MEMORY };
            add_user_property(memory, state, (name_ptr, name_len), (value_ptr, value_len))
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "payload_f64",
        |mut caller: Caller<'_, HostState>, path_ptr: i32, path_len: i32, dst_ptr: i32| -> i32 {
            let Some((memory, state)) = memory_and_state(&mut caller) else { return ERR_MEMORY };
            let number = match payload_field(memory, state, path_ptr, path_len).and_then(|text| Ok(payload::number(text)?)) {
                Ok(number) => number,
                Err(error) => return error.code(),
            };
            let Some(dst) = guest_range(memory, dst_ptr, 8) else { return ERR_MEMORY };
            memory[dst].copy_from_slice(&number.to_le_bytes());
            0
        },
    )?;
    linker.func_wrap(IMPORT_MODULE, "payload_bool", |mut caller: Caller<'_, HostState>, path_ptr: i32, path_len: i32| -> i32 {
        let Some((memory, state)) = memory_and_state(&mut caller) else { return ERR_MEMORY };
        match payload_field(memory, state, path_ptr, path_len).and_then(|text| Ok(payload::boolean(text)?)) {
            Ok(value) => value as i32,
            Err(error) => error.code(),
        }
    })?;
    linker.func_wrap(
        IMPORT_MODULE,
        "payload_str",
        |mut caller: Caller<'_, HostState>, path_ptr: i32, path_len: i32, dst_ptr: i32, dst_len: i32| -> i32 {
            let Some((memory, state)) = memory_and_state(&mut caller) else { return ERR_MEMORY };
            match payload_field(memory, state, path_ptr, path_len).and_then(|text| Ok(payload::string(text)?)) {
                Ok(value) => copy_out(memory, value.as_bytes(), dst_ptr, dst_len),
                Err(error) => error.code(),
            }
        },
    )?;
    linker.func_wrap(
        IMPORT_MODULE,
        "payload_json",
        |mut caller: Caller<'_, HostState>, path_ptr: i32, path_len: i32, dst_ptr: i32, dst_len: i32| -> i32 {
            let Some((memory, state)) = memory_and_state(&mut caller) else { return ERR_MEMORY };
            match payload_field(memory, state, path_ptr, path_len) {
                Ok(text) => copy_out(memory, text.as_bytes(), dst_ptr, dst_len),
                Err(error) => error.code(),
            }
        },
    )?;
    Ok(())
}

fn subscribe(mut caller: Caller<'_, HostState>, hook_ptr: i32, hook_len: i32, filter_ptr: i32, filter_len: i32) -> i32 {
    let Some((memory, state)) = memory_and_state(&mut caller) else { return ERR_MEMORY };
    if state.phase != Phase::Init {
        return ERR_WRONG_TIME;
    }
    let (Some(hook), Some(filter)) = (guest_str(memory, hook_ptr, hook_len), guest_str(memory, filter_ptr, filter_len)) else {
        return ERR_MEMORY;
    };
    let Some(hook) = Hook::from_name(hook) else { return ERR_UNKNOWN };
    // A `kafka.record` subscription names a Kafka topic, exactly.
    if hook == Hook::KafkaRecord && crate::names::check_kafka_topic(filter).is_err() {
        return ERR_FILTER;
    }
    let Some(filter) = TopicFilter::parse(filter) else { return ERR_FILTER };
    if state.subscriptions.len() >= MAX_SUBSCRIPTIONS {
        return ERR_LIMIT;
    }
    state.subscriptions.push((hook, filter));
    state.subscriptions.len() as i32 - 1
}

fn config_get(mut caller: Caller<'_, HostState>, key_ptr: i32, key_len: i32, dst_ptr: i32, dst_len: i32) -> i32 {
    let Some((memory, state)) = memory_and_state(&mut caller) else { return ERR_MEMORY };
    let Some(key) = guest_str(memory, key_ptr, key_len).map(str::to_owned) else { return ERR_MEMORY };
    match state.settings.get(&key) {
        Some(value) => copy_out(memory, value.as_bytes(), dst_ptr, dst_len),
        None => ERR_UNKNOWN,
    }
}

fn event_read(mut caller: Caller<'_, HostState>, field: i32, dst_ptr: i32, dst_len: i32) -> i32 {
    let Some((memory, state)) = memory_and_state(&mut caller) else { return ERR_MEMORY };
    read_event(memory, state, field, dst_ptr, dst_len)
}

fn route(mut caller: Caller<'_, HostState>, topic_ptr: i32, topic_len: i32, key_ptr: i32, key_len: i32) -> i32 {
    let Some((memory, state)) = memory_and_state(&mut caller) else { return ERR_MEMORY };
    add_route(memory, state, None, (topic_ptr, topic_len), (key_ptr, key_len))
}

fn route_header(mut caller: Caller<'_, HostState>, name_ptr: i32, name_len: i32, value_ptr: i32, value_len: i32) -> i32 {
    let Some((memory, state)) = memory_and_state(&mut caller) else { return ERR_MEMORY };
    add_header(memory, state, name_ptr, name_len, value_ptr, value_len)
}

fn log(mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32) {
    let Some((memory, state)) = memory_and_state(&mut caller) else { return };
    write_log(memory, state, level, ptr, len);
}
