//! The ABI's tables: the exports a module provides, the imports the host offers with
//! their signatures, the limits on one decision, `event_read`'s fields and the negative
//! results. `tests/it/sdk_tables.rs` checks every SDK and `wasm-sdk/ABI.md` against them.

use crate::rules::payload::FieldError;

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

pub(super) const ERR_UNKNOWN: i32 = HostError::UnknownName.code();
pub(super) const ERR_FILTER: i32 = HostError::InvalidFilter.code();
pub(super) const ERR_WRONG_TIME: i32 = HostError::WrongTime.code();
pub(super) const ERR_MEMORY: i32 = HostError::OutOfBounds.code();
pub(super) const ERR_LIMIT: i32 = HostError::LimitReached.code();
pub(super) const ERR_TOPIC: i32 = HostError::InvalidTopic.code();
pub(super) const ERR_TOO_LONG: i32 = HostError::TooLong.code();
pub(super) const ERR_PUBLISH: i32 = HostError::InvalidPublish.code();

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
