//! The host side of the guest ABI, versions 1 and 2 (`wasm-sdk/ABI.md`): the `hookline.*` imports, the
//! typed state each `Store` carries, and the validation of what a guest emits.
//!
//! Host functions never trap on bad guest input: they return the ABI's negative codes.
//! A route that breaks a limit also marks the whole decision invalid, so a half-applied
//! decision never reaches Kafka.
//!
//! The ABI's code tables live here and in `crate::hooks` only: [`Hook`] (hook codes and
//! names), [`EventField`] (`event_read` fields), [`HostError`] (negative results) and
//! [`IMPORTS`]. `tests/it/sdk_tables.rs` checks every SDK under `wasm-sdk/` and
//! `wasm-sdk/ABI.md` against them.

use std::sync::Arc;

use wasmtime::{Caller, Linker, Memory, StoreLimits};

use super::decision::{MqttMessage, Route, RouteValue};
use super::payload::{self, FieldError, ParsedPayload};
use super::settings::RuleSettings;
use crate::hooks::{Hook, HookEvent};
use crate::sink::DestinationNames;
use crate::topic::TopicFilter;

/// The version markers a module exports, one of them: the ABI version it speaks.
pub const ABI_MARKERS: [(&str, AbiVersion); 2] = [("hookline_abi_v1", AbiVersion::V1), ("hookline_abi_v2", AbiVersion::V2)];
pub const INIT: &str = "hookline_init";
pub const ON_EVENT: &str = "hookline_on_event";
pub const IMPORT_MODULE: &str = "hookline";

pub const MAX_SUBSCRIPTIONS: usize = 64;
pub const MAX_ROUTES: usize = 16;
pub const MAX_PUBLISHES: usize = 16;
pub const MAX_PROPERTY_LEN: usize = 4096;
pub const MAX_HEADERS: usize = 16;
pub const MAX_KEY_LEN: usize = 4096;
pub const MAX_HEADER_NAME_LEN: usize = 256;
pub const MAX_HEADER_VALUE_LEN: usize = 4096;
/// Log lines a rule instance may write per second.
const LOG_LINES_PER_SECOND: u32 = 10;

/// The ABI version a module speaks; it decides what `hookline_on_event`'s result means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbiVersion {
    /// 0 accepts, anything else rejects.
    V1,
    /// Negative rejects, zero or positive accepts.
    V2,
}

impl AbiVersion {
    pub fn accepts(self, code: i32) -> bool {
        match self {
            AbiVersion::V1 => code == 0,
            AbiVersion::V2 => code >= 0,
        }
    }
}

/// The fields a guest reads with `event_read`, with their ABI codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventField {
    Topic = 0,
    ClientId = 1,
    Username = 2,
    Payload = 3,
    From = 4,
    Peer = 5,
    Key = 6,
    Action = 7,
    Partition = 8,
    Offset = 9,
}

impl EventField {
    pub const ALL: [EventField; 10] = [
        EventField::Topic,
        EventField::ClientId,
        EventField::Username,
        EventField::Payload,
        EventField::From,
        EventField::Peer,
        EventField::Key,
        EventField::Action,
        EventField::Partition,
        EventField::Offset,
    ];

    pub fn code(self) -> i32 {
        self as i32
    }

    /// The field's name in the ABI's table (the SDKs spell it in their own case).
    pub fn name(self) -> &'static str {
        match self {
            EventField::Topic => "topic",
            EventField::ClientId => "client_id",
            EventField::Username => "username",
            EventField::Payload => "payload",
            EventField::From => "from",
            EventField::Peer => "peer",
            EventField::Key => "key",
            EventField::Action => "action",
            EventField::Partition => "partition",
            EventField::Offset => "offset",
        }
    }

    pub fn from_code(code: i32) -> Option<EventField> {
        EventField::ALL.into_iter().find(|field| field.code() == code)
    }
}

/// The negative results of host calls, with their ABI codes. Codes from -98 to -1 are
/// the host's; an SDK numbers its own errors from -99 down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostError {
    UnknownName = -1,
    InvalidFilter = -2,
    WrongTime = -3,
    OutOfBounds = -4,
    LimitReached = -5,
    InvalidTopic = -6,
    TooLong = -7,
    InvalidPublish = -8,
    NoSuchField = -9,
    WrongType = -10,
    NotJson = -11,
    InvalidPath = -12,
}

impl HostError {
    pub const ALL: [HostError; 12] = [
        HostError::UnknownName,
        HostError::InvalidFilter,
        HostError::WrongTime,
        HostError::OutOfBounds,
        HostError::LimitReached,
        HostError::InvalidTopic,
        HostError::TooLong,
        HostError::InvalidPublish,
        HostError::NoSuchField,
        HostError::WrongType,
        HostError::NotJson,
        HostError::InvalidPath,
    ];

    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The error's name as a typed SDK's variant (Rust's `Error`, Zig's error set).
    pub fn variant(self) -> &'static str {
        match self {
            HostError::UnknownName => "UnknownName",
            HostError::InvalidFilter => "InvalidFilter",
            HostError::WrongTime => "WrongTime",
            HostError::OutOfBounds => "OutOfBounds",
            HostError::LimitReached => "LimitReached",
            HostError::InvalidTopic => "InvalidTopic",
            HostError::TooLong => "TooLong",
            HostError::InvalidPublish => "InvalidPublish",
            HostError::NoSuchField => "NoSuchField",
            HostError::WrongType => "WrongType",
            HostError::NotJson => "NotJson",
            HostError::InvalidPath => "InvalidPath",
        }
    }

    /// The error's name as a constant (`HL_ERR_*` in C, `ERR_*` in AssemblyScript).
    pub fn constant(self) -> &'static str {
        match self {
            HostError::UnknownName => "UNKNOWN",
            HostError::InvalidFilter => "FILTER",
            HostError::WrongTime => "WRONG_TIME",
            HostError::OutOfBounds => "MEMORY",
            HostError::LimitReached => "LIMIT",
            HostError::InvalidTopic => "TOPIC",
            HostError::TooLong => "TOO_LONG",
            HostError::InvalidPublish => "PUBLISH",
            HostError::NoSuchField => "NO_FIELD",
            HostError::WrongType => "WRONG_TYPE",
            HostError::NotJson => "NOT_JSON",
            HostError::InvalidPath => "PATH",
        }
    }

    /// What the code means, as `rule test` and the gateway's log say it.
    pub fn meaning(self) -> &'static str {
        match self {
            HostError::UnknownName => "unknown hook, field or destination name",
            HostError::InvalidFilter => "not a valid MQTT topic filter",
            HostError::WrongTime => "called at the wrong time",
            HostError::OutOfBounds => "pointer or length outside guest memory, or text not UTF-8",
            HostError::LimitReached => "limit reached (subscriptions, routes, publishes or headers)",
            HostError::InvalidTopic => "not a valid Kafka topic name (or not one its destination takes)",
            HostError::TooLong => "key, header or property too long (or a header name empty)",
            HostError::InvalidPublish => "not a valid MQTT publish (topic, QoS or property)",
            HostError::NoSuchField => "no such field in the payload",
            HostError::WrongType => "the payload field is not of the type asked for",
            HostError::NotJson => "the payload is not JSON",
            HostError::InvalidPath => "not a valid payload path",
        }
    }

    pub fn from_code(code: i32) -> Option<HostError> {
        HostError::ALL.into_iter().find(|error| error.code() == code)
    }
}

const ERR_UNKNOWN: i32 = HostError::UnknownName.code();
const ERR_FILTER: i32 = HostError::InvalidFilter.code();
const ERR_WRONG_TIME: i32 = HostError::WrongTime.code();
const ERR_MEMORY: i32 = HostError::OutOfBounds.code();
const ERR_LIMIT: i32 = HostError::LimitReached.code();
const ERR_TOPIC: i32 = HostError::InvalidTopic.code();
const ERR_TOO_LONG: i32 = HostError::TooLong.code();
const ERR_PUBLISH: i32 = HostError::InvalidPublish.code();

impl From<FieldError> for HostError {
    fn from(error: FieldError) -> HostError {
        match error {
            FieldError::BadPath => HostError::InvalidPath,
            FieldError::NoSuchField => HostError::NoSuchField,
            FieldError::WrongType => HostError::WrongType,
            FieldError::NotJson => HostError::NotJson,
        }
    }
}

/// What the guest is allowed to do right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Init,
    Event,
    Idle,
}

/// Data of one `Store`: limits, the event being decided and the decision so far.
pub struct HostState {
    pub limits: StoreLimits,
    pub rule: std::sync::Arc<str>,
    pub settings: std::sync::Arc<RuleSettings>,
    pub phase: Phase,
    pub subscriptions: Vec<(Hook, TopicFilter)>,
    pub event: Option<HookEvent>,
    pub routes: Vec<Route>,
    pub publishes: Vec<MqttMessage>,
    /// Why the current decision is void, and the code the host returned, if output
    /// broke a rule of the ABI.
    pub invalid: Option<(&'static str, i32)>,
    /// The event's payload parsed for `payload_*` lookups, at the first of them.
    pub parsed: Option<ParsedPayload>,
    /// The guest's exported memory, looked up once after instantiation.
    pub memory: Option<Memory>,
    /// The destinations rules may name, and what topics each takes.
    destinations: DestinationNames,
    /// Topics this instance routed to lately, validated for their destination (see
    /// `Route::topic`).
    recent_topics: Vec<(usize, Arc<str>)>,
    log_window: (std::time::Instant, u32),
}

impl HostState {
    pub fn new(
        rule: std::sync::Arc<str>,
        settings: std::sync::Arc<RuleSettings>,
        limits: StoreLimits,
        destinations: DestinationNames,
    ) -> HostState {
        HostState {
            limits,
            rule,
            settings,
            phase: Phase::Idle,
            subscriptions: Vec::new(),
            event: None,
            routes: Vec::new(),
            publishes: Vec::new(),
            invalid: None,
            parsed: None,
            memory: None,
            destinations,
            recent_topics: Vec::new(),
            log_window: (std::time::Instant::now(), 0),
        }
    }

    /// The hook of the event being decided.
    fn hook(&self) -> Option<Hook> {
        self.event.as_ref().map(|e| e.hook)
    }

    /// Voids the decision for `why`; returns `code` for the guest.
    fn invalidate(&mut self, why: &'static str, code: i32) -> i32 {
        self.invalid = Some((why, code));
        code
    }

    fn log_allowed(&mut self) -> bool {
        let (start, count) = &mut self.log_window;
        if start.elapsed().as_secs() >= 1 {
            *start = std::time::Instant::now();
            *count = 0;
        }
        *count += 1;
        *count <= LOG_LINES_PER_SECOND
    }
}

/// How many distinct route topics an instance keeps ready for reuse.
const RECENT_TOPICS: usize = 8;

impl HostState {
    /// A shared copy of `topic`, validated for `destination`, reusing a recent one when
    /// it matches.
    fn route_topic(&mut self, destination: usize, topic: &[u8]) -> Result<Arc<str>, &'static str> {
        if let Some((_, known)) = self.recent_topics.iter().find(|(d, t)| *d == destination && t.as_bytes() == topic) {
            return Ok(known.clone());
        }
        let topic = std::str::from_utf8(topic).map_err(|_| "destination name is not UTF-8")?;
        self.destinations.check(destination, topic)?;
        let topic: Arc<str> = topic.into();
        if self.recent_topics.len() == RECENT_TOPICS {
            self.recent_topics.remove(0);
        }
        self.recent_topics.push((destination, topic.clone()));
        Ok(topic)
    }
}

/// The guest's memory and our state, borrowed together.
fn memory_and_state<'a>(caller: &'a mut Caller<'_, HostState>) -> Option<(&'a mut [u8], &'a mut HostState)> {
    let memory = caller.data().memory?;
    Some(memory.data_and_store_mut(caller))
}

fn guest_range(memory: &[u8], ptr: i32, len: i32) -> Option<std::ops::Range<usize>> {
    let start = u32::try_from(ptr).ok()? as usize;
    let len = u32::try_from(len).ok()? as usize;
    let end = start.checked_add(len)?;
    (end <= memory.len()).then_some(start..end)
}

fn guest_str(memory: &[u8], ptr: i32, len: i32) -> Option<&str> {
    std::str::from_utf8(&memory[guest_range(memory, ptr, len)?]).ok()
}

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

/// The JSON text at the guest's `path` in the current event's payload (the MQTT payload,
/// or the consumed record's value), parsed at the first lookup of the event.
fn payload_field<'s>(memory: &[u8], state: &'s mut HostState, path_ptr: i32, path_len: i32) -> Result<&'s str, HostError> {
    let Some(event) = state.event.as_ref().filter(|_| state.phase == Phase::Event) else { return Err(HostError::WrongTime) };
    let path = guest_str(memory, path_ptr, path_len).ok_or(HostError::OutOfBounds)?;
    let parsed = state.parsed.get_or_insert_with(|| ParsedPayload::parse(&event.payload));
    Ok(parsed.lookup(&event.payload, path)?)
}

/// Names and signatures (parameters, results) of the imports, for checking a module
/// before linking it.
pub const IMPORTS: [(&str, usize, usize); 17] = [
    ("subscribe", 4, 1),
    ("event_read", 3, 1),
    ("event_qos", 0, 1),
    ("route", 4, 1),
    ("route_header", 4, 1),
    ("log", 3, 0),
    ("config_get", 4, 1),
    ("route_value", 3, 1),
    ("route_to", 6, 1),
    ("event_header", 4, 1),
    ("publish", 6, 1),
    ("publish_property", 3, 1),
    ("publish_user_property", 4, 1),
    ("payload_f64", 3, 1),
    ("payload_bool", 2, 1),
    ("payload_str", 4, 1),
    ("payload_json", 4, 1),
];

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

/// Copies `min(len, dst.len())` bytes of `value` to the guest; returns the full length.
fn copy_out(memory: &mut [u8], value: &[u8], dst_ptr: i32, dst_len: i32) -> i32 {
    let Some(dst) = guest_range(memory, dst_ptr, dst_len) else { return ERR_MEMORY };
    let n = value.len().min(dst.len());
    memory[dst.start..dst.start + n].copy_from_slice(&value[..n]);
    i32::try_from(value.len()).unwrap_or(i32::MAX)
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

/// `event_read` on the guest's memory (split from the wasmtime glue to be testable).
fn read_event(memory: &mut [u8], state: &HostState, field: i32, dst_ptr: i32, dst_len: i32) -> i32 {
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

fn route(mut caller: Caller<'_, HostState>, topic_ptr: i32, topic_len: i32, key_ptr: i32, key_len: i32) -> i32 {
    let Some((memory, state)) = memory_and_state(&mut caller) else { return ERR_MEMORY };
    add_route(memory, state, None, (topic_ptr, topic_len), (key_ptr, key_len))
}

/// `route` and `route_to` on the guest's memory: validates what the guest passed and
/// records the route to the destination named at `(dest_ptr, dest_len)`, or to the
/// first one (`route`).
fn add_route(
    memory: &[u8],
    state: &mut HostState,
    dest: Option<(i32, i32)>,
    (topic_ptr, topic_len): (i32, i32),
    (key_ptr, key_len): (i32, i32),
) -> i32 {
    if state.phase != Phase::Event || state.hook() == Some(Hook::KafkaRecord) {
        return ERR_WRONG_TIME;
    }
    if state.routes.len() >= MAX_ROUTES {
        return state.invalidate("more routes than allowed for one event", ERR_LIMIT);
    }
    let destination = match dest {
        None => 0,
        Some((dest_ptr, dest_len)) => {
            let Some(range) = guest_range(memory, dest_ptr, dest_len) else { return ERR_MEMORY };
            match state.destinations.index_of(&memory[range]) {
                Some(destination) => destination,
                None => return state.invalidate("route_to names no configured destination", ERR_UNKNOWN),
            }
        }
    };
    let Some(range) = guest_range(memory, topic_ptr, topic_len) else { return ERR_MEMORY };
    let topic = match state.route_topic(destination, &memory[range]) {
        Ok(topic) => topic,
        Err(why) => {
            return state.invalidate(why, ERR_TOPIC);
        }
    };
    let key = if key_len == -1 {
        None
    } else {
        let Some(range) = guest_range(memory, key_ptr, key_len) else { return ERR_MEMORY };
        if range.len() > MAX_KEY_LEN {
            return state.invalidate("record key too long", ERR_TOO_LONG);
        }
        Some(memory[range].to_vec())
    };
    state.routes.push(Route { destination, topic, key, headers: Vec::new(), value: RouteValue::Envelope });
    state.routes.len() as i32 - 1
}

/// `route_value` on the guest's memory: sets the value of the last route.
fn set_route_value(memory: &[u8], state: &mut HostState, kind: i32, ptr: i32, len: i32) -> i32 {
    if state.phase != Phase::Event || state.routes.is_empty() {
        return ERR_WRONG_TIME;
    }
    let value = match kind {
        0 => RouteValue::Envelope,
        1 => RouteValue::Payload,
        2 => match guest_range(memory, ptr, len) {
            Some(range) => RouteValue::Bytes(memory[range].to_vec()),
            None => return ERR_MEMORY,
        },
        _ => return ERR_UNKNOWN,
    };
    state.routes.last_mut().expect("checked above").value = value;
    0
}

/// `event_header` on the guest's memory: the first header of the consumed record named so.
fn read_header(memory: &mut [u8], state: &HostState, name_ptr: i32, name_len: i32, dst_ptr: i32, dst_len: i32) -> i32 {
    let Some(event) = &state.event else { return ERR_WRONG_TIME };
    let Some(name) = guest_str(memory, name_ptr, name_len) else { return ERR_MEMORY };
    let header = event.record.as_ref().and_then(|r| r.headers.iter().find(|(n, _)| n == name));
    match header {
        Some((_, value)) => copy_out(memory, value, dst_ptr, dst_len),
        None => ERR_UNKNOWN,
    }
}

/// `publish` on the guest's memory: validates the message and records it.
fn add_publish(memory: &[u8], state: &mut HostState, topic: (i32, i32), qos: i32, retain: i32, payload: (i32, i32)) -> i32 {
    if state.phase != Phase::Event || state.hook() != Some(Hook::KafkaRecord) {
        return ERR_WRONG_TIME;
    }
    if state.publishes.len() >= MAX_PUBLISHES {
        return state.invalidate("more publishes than allowed for one record", ERR_LIMIT);
    }
    let Some(range) = guest_range(memory, topic.0, topic.1) else { return ERR_MEMORY };
    let Ok(name) = std::str::from_utf8(&memory[range]) else {
        return state.invalidate("publish topic is not UTF-8", ERR_PUBLISH);
    };
    if name.is_empty() || name.contains(['+', '#', '\0']) || crate::names::reserved(name) {
        return state.invalidate("publish topic is empty, has a wildcard or is the gateway's own", ERR_PUBLISH);
    }
    if !(0..=2).contains(&qos) || !(0..=1).contains(&retain) {
        return state.invalidate("publish QoS not 0, 1 or 2, or retain not 0 or 1", ERR_PUBLISH);
    }
    let payload = match payload.1 {
        -1 => None,
        _ => match guest_range(memory, payload.0, payload.1) {
            Some(range) => Some(memory[range].to_vec()),
            None => return ERR_MEMORY,
        },
    };
    let message = MqttMessage { topic: name.to_string(), qos: qos as u8, retain: retain == 1, payload, properties: Default::default() };
    state.publishes.push(message);
    state.publishes.len() as i32 - 1
}

/// `publish_property` on the guest's memory: one MQTT 5 property of the last publish.
fn set_publish_property(memory: &[u8], state: &mut HostState, id: i32, ptr: i32, len: i32) -> i32 {
    if state.phase != Phase::Event || state.publishes.is_empty() {
        return ERR_WRONG_TIME;
    }
    let Some(range) = guest_range(memory, ptr, len) else { return ERR_MEMORY };
    let bytes = &memory[range];
    if bytes.len() > MAX_PROPERTY_LEN {
        return state.invalidate("publish property longer than 4096 bytes", ERR_TOO_LONG);
    }
    let text = || std::str::from_utf8(bytes).ok().map(str::to_string);
    let properties = &mut state.publishes.last_mut().expect("checked above").properties;
    let valid = match id {
        1 if bytes == [0] || bytes == [1] => {
            properties.payload_format_indicator = Some(bytes[0]);
            true
        }
        2 if bytes.len() == 4 => {
            properties.message_expiry_interval = Some(u32::from_be_bytes(bytes.try_into().expect("4 bytes")));
            true
        }
        3 => text().map(|t| properties.content_type = Some(t)).is_some(),
        8 => text().filter(|t| !t.is_empty() && !t.contains(['+', '#'])).map(|t| properties.response_topic = Some(t)).is_some(),
        9 => {
            properties.correlation_data = Some(bytes.to_vec());
            true
        }
        1 | 2 => false,
        _ => return ERR_UNKNOWN,
    };
    match valid {
        true => 0,
        false => state.invalidate("bad publish property value", ERR_PUBLISH),
    }
}

/// `publish_user_property` on the guest's memory.
fn add_user_property(memory: &[u8], state: &mut HostState, name: (i32, i32), value: (i32, i32)) -> i32 {
    if state.phase != Phase::Event || state.publishes.is_empty() {
        return ERR_WRONG_TIME;
    }
    let (Some(name), Some(value)) = (guest_str(memory, name.0, name.1), guest_str(memory, value.0, value.1)) else {
        return ERR_MEMORY;
    };
    if name.len() > MAX_PROPERTY_LEN || value.len() > MAX_PROPERTY_LEN {
        return state.invalidate("user property longer than 4096 bytes", ERR_TOO_LONG);
    }
    let properties = &mut state.publishes.last_mut().expect("checked above").properties;
    if properties.user_properties.len() >= MAX_HEADERS {
        return state.invalidate("more user properties than allowed on one publish", ERR_LIMIT);
    }
    properties.user_properties.push((name.to_string(), value.to_string()));
    0
}

fn route_header(mut caller: Caller<'_, HostState>, name_ptr: i32, name_len: i32, value_ptr: i32, value_len: i32) -> i32 {
    let Some((memory, state)) = memory_and_state(&mut caller) else { return ERR_MEMORY };
    add_header(memory, state, name_ptr, name_len, value_ptr, value_len)
}

/// `route_header` on the guest's memory: validates the header and adds it to the last route.
fn add_header(memory: &[u8], state: &mut HostState, name_ptr: i32, name_len: i32, value_ptr: i32, value_len: i32) -> i32 {
    if state.phase != Phase::Event || state.routes.is_empty() {
        return ERR_WRONG_TIME;
    }
    let (Some(name), Some(value)) = (guest_str(memory, name_ptr, name_len), guest_range(memory, value_ptr, value_len)) else {
        return ERR_MEMORY;
    };
    let name = name.to_string();
    let value = memory[value].to_vec();
    let route = state.routes.last_mut().expect("checked non-empty above");
    if route.headers.len() >= MAX_HEADERS {
        return state.invalidate("more headers than allowed for one route", ERR_LIMIT);
    }
    if name.is_empty() || name.len() > MAX_HEADER_NAME_LEN || value.len() > MAX_HEADER_VALUE_LEN {
        return state.invalidate("record header name or value too long", ERR_TOO_LONG);
    }
    route.headers.push((name, value));
    0
}

fn log(mut caller: Caller<'_, HostState>, level: i32, ptr: i32, len: i32) {
    let Some((memory, state)) = memory_and_state(&mut caller) else { return };
    write_log(memory, state, level, ptr, len);
}

/// `log` on the guest's memory: the line, cut and rate-limited, goes to the gateway log.
fn write_log(memory: &[u8], state: &mut HostState, level: i32, ptr: i32, len: i32) {
    if !state.log_allowed() {
        return;
    }
    let Some(range) = guest_range(memory, ptr, len.min(4096)) else { return };
    let line = String::from_utf8_lossy(&memory[range]);
    let rule = &*state.rule;
    match level {
        0 => tracing::error!(rule, "{line}"),
        1 => tracing::warn!(rule, "{line}"),
        2 => tracing::info!(rule, "{line}"),
        _ => tracing::debug!(rule, "{line}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::check_kafka_topic;

    #[test]
    fn guest_ranges_are_bounds_checked() {
        let memory = [0u8; 16];
        assert_eq!(guest_range(&memory, 0, 16), Some(0..16));
        assert_eq!(guest_range(&memory, 8, 9), None);
        assert_eq!(guest_range(&memory, -1, 1), None);
        assert_eq!(guest_range(&memory, 1, -1), None);
        assert_eq!(guest_range(&memory, i32::MAX, i32::MAX), None);
    }

    /// One host call with whatever arguments a hostile guest might pass.
    #[derive(Debug, Clone)]
    enum Call {
        Route { topic: (i32, i32), key: (i32, i32) },
        Header { name: (i32, i32), value: (i32, i32) },
        Log { level: i32, text: (i32, i32) },
        Read { field: i32, dst: (i32, i32) },
    }

    /// A pointer and length: mostly inside a small memory, sometimes anywhere in i32.
    fn range() -> impl proptest::strategy::Strategy<Value = (i32, i32)> {
        use proptest::prelude::*;
        prop_oneof![
            3 => (0i32..300, 0i32..300),
            1 => (0i32..300, Just(-1)),
            1 => (any::<i32>(), any::<i32>()),
        ]
    }

    fn call() -> impl proptest::strategy::Strategy<Value = Call> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (range(), range()).prop_map(|(topic, key)| Call::Route { topic, key }),
            3 => (range(), range()).prop_map(|(name, value)| Call::Header { name, value }),
            1 => (any::<i32>(), range()).prop_map(|(level, text)| Call::Log { level, text }),
            1 => (-1i32..6, range()).prop_map(|(field, dst)| Call::Read { field, dst }),
        ]
    }

    /// Guest memory: arbitrary bytes, some of it a topic name Kafka accepts.
    fn memory() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        (proptest::collection::vec(any::<u8>(), 0..300), "[a-z._-]{1,40}", 0usize..300).prop_map(|(mut memory, topic, at)| {
            let at = at.min(memory.len());
            memory.splice(at..at, topic.bytes());
            memory
        })
    }

    fn event_state() -> HostState {
        let mut state = HostState::new(
            "hostile.wat".into(),
            Default::default(),
            wasmtime::StoreLimitsBuilder::new().build(),
            DestinationNames::kafka(),
        );
        state.phase = Phase::Event;
        let mut event = HookEvent::new(Hook::MessagePublish, "lock-1".into(), "".into());
        event.topic = bytes::Bytes::from_static(b"devices/lock-1/state");
        event.payload = bytes::Bytes::from_static(b"{\"battery\":83.4}");
        state.event = Some(event);
        state
    }

    #[test]
    fn route_to_answers_wrong_time_before_it_looks_the_destination_up() {
        let memory = b"nowhere".to_vec();
        let mut state = event_state();
        state.phase = Phase::Init;
        assert_eq!(add_route(&memory, &mut state, Some((0, 7)), (0, 7), (0, -1)), ERR_WRONG_TIME);
        assert!(state.invalid.is_none());
        state.phase = Phase::Event;
        assert_eq!(add_route(&memory, &mut state, Some((0, 7)), (0, 7), (0, -1)), ERR_UNKNOWN, "no destination `nowhere`");
        assert!(state.invalid.is_some(), "an unknown destination voids the decision");
        assert_eq!(add_route(&memory, &mut state, Some((0, 99)), (0, 7), (0, -1)), ERR_MEMORY);
    }

    proptest::proptest! {
        /// Whatever a guest passes to `route`, `route_header`, `log` and `event_read`, the
        /// host answers with a route index, 0 or one of the ABI's error codes, never
        /// panics, never touches memory outside the guest's, and every route it keeps is
        /// one Kafka accepts. `PROPTEST_CASES` sets the number of cases.
        #[test]
        fn guest_output_is_a_valid_route_or_a_clear_error(mut memory in memory(), calls in proptest::collection::vec(call(), 1..40)) {
            let mut state = event_state();
            let original_len = memory.len();
            for call in calls {
                let routes_before = state.routes.clone();
                let result = match call {
                    Call::Route { topic, key } => add_route(&memory, &mut state, None, topic, key),
                    Call::Header { name, value } => add_header(&memory, &mut state, name.0, name.1, value.0, value.1),
                    Call::Log { level, text } => {
                        write_log(&memory, &mut state, level, text.0, text.1);
                        0
                    }
                    Call::Read { field, dst } => read_event(&mut memory, &state, field, dst.0, dst.1),
                };
                proptest::prop_assert_eq!(memory.len(), original_len);
                match (&call, result) {
                    (Call::Route { topic, key }, index) if index >= 0 => {
                        let route = &state.routes[index as usize];
                        let range = guest_range(&memory, topic.0, topic.1).expect("a kept route's topic was in memory");
                        proptest::prop_assert_eq!(route.topic.as_bytes(), &memory[range]);
                        proptest::prop_assert!(check_kafka_topic(&route.topic).is_ok());
                        match key.1 {
                            -1 => proptest::prop_assert_eq!(&route.key, &None),
                            _ => proptest::prop_assert!(route.key.as_ref().is_some_and(|k| k.len() <= MAX_KEY_LEN)),
                        }
                    }
                    (Call::Header { name, .. }, 0) => {
                        let route = state.routes.last().expect("a header needs a route");
                        let (kept_name, kept_value) = route.headers.last().expect("header kept");
                        proptest::prop_assert_eq!(Some(kept_name.as_str()), guest_str(&memory, name.0, name.1));
                        proptest::prop_assert!(!kept_name.is_empty() && kept_name.len() <= MAX_HEADER_NAME_LEN);
                        proptest::prop_assert!(kept_value.len() <= MAX_HEADER_VALUE_LEN && route.headers.len() <= MAX_HEADERS);
                    }
                    (Call::Read { .. }, _) | (Call::Log { .. }, _) => {}
                    (_, code) => {
                        proptest::prop_assert!(
                            [ERR_WRONG_TIME, ERR_MEMORY, ERR_LIMIT, ERR_TOPIC, ERR_TOO_LONG].contains(&code),
                            "undocumented result {}", code
                        );
                        proptest::prop_assert_eq!(&state.routes, &routes_before, "a refused call changes no route");
                        if [ERR_LIMIT, ERR_TOPIC, ERR_TOO_LONG].contains(&code) {
                            proptest::prop_assert!(state.invalid.is_some(), "a broken limit voids the decision");
                        }
                    }
                }
                proptest::prop_assert!(state.routes.len() <= MAX_ROUTES);
            }
        }
    }
}
