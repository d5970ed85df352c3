//! Safe Rust SDK for **hookline rules** (guest ABI v2 and v1, see `wasm-sdk/ABI.md`).
//!
//! A rule is a `wasm32-unknown-unknown` `cdylib` that declares subscriptions once in
//! `init` and then, for every matching event, decides which Kafka topics the event goes
//! to ([`route`]) or, for a record consumed from Kafka (`Hook::KafkaRecord`, ABI v2),
//! which MQTT messages to publish ([`publish`]). This crate is `#![no_std]`, needs no
//! allocator and keeps no state of its own between calls except two counters that guard
//! [`Route::header`] and [`Publish::property`] (and their siblings).
//!
//! [`rule!`] exports the ABI v2 marker; `rule! { abi = v1, .. }` builds a v1 module (the
//! only difference the host makes: v1 rejects on any non-zero result, v2 on a negative
//! one; this crate returns a negative code for every error under v2).
//!
//! ```ignore
//! #![no_std]
//! use hookline_rule::{event, route, subscribe, Error, Hook};
//!
//! fn init() -> Result<(), Error> {
//!     subscribe(Hook::MessagePublish, "devices/+/state")?;
//!     Ok(())
//! }
//!
//! fn on_event(_hook: Hook, _subscription: u32) -> Result<(), Error> {
//!     let mut buf = [0u8; 256];
//!     let topic = event::topic(&mut buf)?;
//!     route("message_state")?.header("mqtt-topic", topic)?;
//!     Ok(())
//! }
//!
//! hookline_rule::rule! { init => init, on_event => on_event }
//! ```
//!
//! `init` runs once per instance (the host instantiates the module once per worker), so
//! it must be deterministic: declare the same subscriptions in the same order every time.
//!
//! Outside `wasm32` (for `cargo test` or `cargo doc` on the build machine) every host call
//! answers [`Error::WrongTime`], [`event::qos`] answers `Ok(0)`, [`event::header`] and
//! [`setting`] answer `Ok(None)` and [`log`] does nothing, so rule logic that does not
//! touch the host can be unit-tested natively.
#![no_std]
#![warn(missing_docs)]

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

/// The raw host imports (module `hookline`). Private: the safe wrappers below are the API.
mod sys {
    #[cfg(target_arch = "wasm32")]
    #[link(wasm_import_module = "hookline")]
    extern "C" {
        pub fn subscribe(
            hook_ptr: *const u8,
            hook_len: i32,
            filter_ptr: *const u8,
            filter_len: i32,
        ) -> i32;
        pub fn event_read(field: i32, dst_ptr: *mut u8, dst_len: i32) -> i32;
        pub fn event_qos() -> i32;
        pub fn route(topic_ptr: *const u8, topic_len: i32, key_ptr: *const u8, key_len: i32)
            -> i32;
        pub fn route_header(
            name_ptr: *const u8,
            name_len: i32,
            value_ptr: *const u8,
            value_len: i32,
        ) -> i32;
        pub fn log(level: i32, ptr: *const u8, len: i32);
        pub fn config_get(key_ptr: *const u8, key_len: i32, dst_ptr: *mut u8, dst_len: i32) -> i32;
        pub fn route_value(kind: i32, ptr: *const u8, len: i32) -> i32;
        pub fn route_to(
            dest_ptr: *const u8,
            dest_len: i32,
            topic_ptr: *const u8,
            topic_len: i32,
            key_ptr: *const u8,
            key_len: i32,
        ) -> i32;
        pub fn event_header(
            name_ptr: *const u8,
            name_len: i32,
            dst_ptr: *mut u8,
            dst_len: i32,
        ) -> i32;
        pub fn publish(
            topic_ptr: *const u8,
            topic_len: i32,
            qos: i32,
            retain: i32,
            payload_ptr: *const u8,
            payload_len: i32,
        ) -> i32;
        pub fn publish_property(id: i32, ptr: *const u8, len: i32) -> i32;
        pub fn publish_user_property(
            name_ptr: *const u8,
            name_len: i32,
            value_ptr: *const u8,
            value_len: i32,
        ) -> i32;
        pub fn payload_f64(path_ptr: *const u8, path_len: i32, dst_ptr: *mut u8) -> i32;
        pub fn payload_bool(path_ptr: *const u8, path_len: i32) -> i32;
        pub fn payload_str(path_ptr: *const u8, path_len: i32, dst_ptr: *mut u8, dst_len: i32) -> i32;
        pub fn payload_json(path_ptr: *const u8, path_len: i32, dst_ptr: *mut u8, dst_len: i32) -> i32;
    }

    // Native stand-ins so the crate (and rules built on it) compile and unit-test off
    // wasm32. Outside the host there is never a right time to call it: -3.
    #[cfg(not(target_arch = "wasm32"))]
    mod native {
        const WRONG_TIME: i32 = -3;
        pub unsafe fn subscribe(_: *const u8, _: i32, _: *const u8, _: i32) -> i32 {
            WRONG_TIME
        }
        pub unsafe fn event_read(_: i32, _: *mut u8, _: i32) -> i32 {
            WRONG_TIME
        }
        pub unsafe fn event_qos() -> i32 {
            0
        }
        pub unsafe fn route(_: *const u8, _: i32, _: *const u8, _: i32) -> i32 {
            WRONG_TIME
        }
        pub unsafe fn route_header(_: *const u8, _: i32, _: *const u8, _: i32) -> i32 {
            WRONG_TIME
        }
        pub unsafe fn log(_: i32, _: *const u8, _: i32) {}
        pub unsafe fn config_get(_: *const u8, _: i32, _: *mut u8, _: i32) -> i32 {
            -1
        }
        pub unsafe fn route_value(_: i32, _: *const u8, _: i32) -> i32 {
            WRONG_TIME
        }
        pub unsafe fn route_to(
            _: *const u8,
            _: i32,
            _: *const u8,
            _: i32,
            _: *const u8,
            _: i32,
        ) -> i32 {
            WRONG_TIME
        }
        pub unsafe fn event_header(_: *const u8, _: i32, _: *mut u8, _: i32) -> i32 {
            -1
        }
        pub unsafe fn publish(_: *const u8, _: i32, _: i32, _: i32, _: *const u8, _: i32) -> i32 {
            WRONG_TIME
        }
        pub unsafe fn publish_property(_: i32, _: *const u8, _: i32) -> i32 {
            WRONG_TIME
        }
        pub unsafe fn publish_user_property(_: *const u8, _: i32, _: *const u8, _: i32) -> i32 {
            WRONG_TIME
        }
        pub unsafe fn payload_f64(_: *const u8, _: i32, _: *mut u8) -> i32 {
            WRONG_TIME
        }
        pub unsafe fn payload_bool(_: *const u8, _: i32) -> i32 {
            WRONG_TIME
        }
        pub unsafe fn payload_str(_: *const u8, _: i32, _: *mut u8, _: i32) -> i32 {
            WRONG_TIME
        }
        pub unsafe fn payload_json(_: *const u8, _: i32, _: *mut u8, _: i32) -> i32 {
            WRONG_TIME
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    pub use native::*;
}

/// Converts a length to the ABI's `i32`, refusing lengths it cannot express.
fn abi_len(len: usize) -> Result<i32, Error> {
    i32::try_from(len).map_err(|_| Error::TooLong)
}

/// Turns a host return value into `Ok(non-negative value)` or the matching [`Error`].
fn check(rc: i32) -> Result<u32, Error> {
    if rc < 0 {
        Err(Error::from_host(rc))
    } else {
        Ok(rc as u32)
    }
}

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// Everything that can go wrong in a rule: the host's negative codes (ABI table
/// "Errors returned by host calls"), a few SDK-side conditions, and [`Error::Rejected`]
/// for a rule that simply declines an event.
///
/// Returning `Err(_)` from `init` refuses loading the module; returning it from
/// `on_event` rejects the event (its routes and publishes are discarded and the rule's
/// error counter goes up). The value the export returns is [`Error::code_for`] the
/// module's ABI version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Error {
    /// `-1`: unknown hook name (`subscribe`), unknown field code (`event_read`) or
    /// unknown destination (`route_to`).
    UnknownName,
    /// `-2`: invalid MQTT topic filter.
    InvalidFilter,
    /// `-3`: called at the wrong time (`subscribe` outside init, `route` or `route_to`
    /// outside on_event or during `kafka.record`, a header or value before any route, `publish`
    /// outside `kafka.record`, a property before any publish); also every host call off
    /// wasm32.
    WrongTime,
    /// `-4`: pointer/length outside guest memory, or text that is not UTF-8.
    OutOfBounds,
    /// `-5`: limit reached (subscriptions, routes or headers). Invalidates the event's
    /// whole decision when returned by a route call.
    LimitReached,
    /// `-6`: invalid Kafka topic name, or (`route_to`) a topic its destination does not
    /// take. Invalidates the event's whole decision.
    InvalidTopic,
    /// `-7`: value too long (key, header, publish property). Invalidates the event's
    /// whole decision.
    TooLong,
    /// `-8` (v2): invalid MQTT publish: a topic name that is empty, has a wildcard or is
    /// the gateway's own, a QoS other than 0, 1, 2, or a bad property value. Invalidates
    /// the record's whole decision.
    InvalidPublish,
    /// `-9` (v2.1): the payload has no field at that path ([`payload_f64`] and siblings).
    NoSuchField,
    /// `-10` (v2.1): the payload's field is not of the kind asked for (a string read
    /// as a number, `null` as a bool, ...).
    WrongType,
    /// `-11` (v2.1): the payload is not JSON (or nests deeper than 128 levels).
    NotJson,
    /// `-12` (v2.1): not a valid payload path (`name`, `[index]`, chained: `a.b[0]`).
    InvalidPath,
    /// A negative code this SDK version does not know (a newer host).
    Host(i32),
    /// The event field does not fit in the buffer given; `needed` is its full length in
    /// bytes. Call again with a buffer at least that large.
    BufferTooSmall {
        /// Full length of the field, in bytes.
        needed: usize,
    },
    /// An event field that should be text is not valid UTF-8.
    InvalidUtf8,
    /// [`Route::header`] or [`Route::value`] was called on a route that is no longer
    /// the most recent one (the ABI changes the most recent route only), so nothing was
    /// sent.
    StaleRoute,
    /// A [`Publish`] property was set on a publish that is no longer the most recent
    /// one (the ABI changes the most recent publish only), so nothing was sent.
    StalePublish,
    /// The host passed a hook code this SDK version does not know.
    UnknownHook(i32),
    /// The rule declines: refuse loading (from `init`) or reject the event (from
    /// `on_event`). Returned to the host as `1` by a v1 module, as `-105` by a v2 one
    /// (where only a negative result rejects).
    Rejected,
}

/// The guest ABI version a module speaks: what [`rule!`] exports as its marker, and what
/// the host makes of `hookline_on_event`'s result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Abi {
    /// `hookline_abi_v1`: 0 accepts, anything else rejects.
    V1,
    /// `hookline_abi_v2`: a negative result rejects, zero or positive accepts.
    V2,
}

impl Error {
    /// Maps a negative host return code to its [`Error`] (`-1` ..= `-12`, else
    /// [`Error::Host`]).
    pub const fn from_host(code: i32) -> Error {
        match code {
            -1 => Error::UnknownName,
            -2 => Error::InvalidFilter,
            -3 => Error::WrongTime,
            -4 => Error::OutOfBounds,
            -5 => Error::LimitReached,
            -6 => Error::InvalidTopic,
            -7 => Error::TooLong,
            -8 => Error::InvalidPublish,
            -9 => Error::NoSuchField,
            -10 => Error::WrongType,
            -11 => Error::NotJson,
            -12 => Error::InvalidPath,
            other => Error::Host(other),
        }
    }

    /// The non-zero `i32` a v1 module's `hookline_init` / `hookline_on_event` export
    /// returns for this error: the ABI code for host errors, `-100` ..= `-104` for
    /// SDK-side errors and `1` for [`Error::Rejected`]. See [`Error::code_for`].
    pub const fn code(&self) -> i32 {
        match *self {
            Error::UnknownName => -1,
            Error::InvalidFilter => -2,
            Error::WrongTime => -3,
            Error::OutOfBounds => -4,
            Error::LimitReached => -5,
            Error::InvalidTopic => -6,
            Error::TooLong => -7,
            Error::InvalidPublish => -8,
            Error::NoSuchField => -9,
            Error::WrongType => -10,
            Error::NotJson => -11,
            Error::InvalidPath => -12,
            // Never let an error turn into the 0 that means success.
            Error::Host(0) => -99,
            Error::Host(code) => code,
            Error::BufferTooSmall { .. } => -100,
            Error::InvalidUtf8 => -101,
            Error::StaleRoute => -102,
            Error::UnknownHook(_) => -103,
            Error::StalePublish => -104,
            Error::Rejected => 1,
        }
    }

    /// The `i32` the exports of a module speaking `abi` return for this error: always
    /// one the host counts as a rejection. Under v1 that is [`Error::code`]; under v2,
    /// where a positive result accepts, [`Error::Rejected`] (and any other non-negative
    /// code) becomes `-105`.
    pub const fn code_for(&self, abi: Abi) -> i32 {
        let code = self.code();
        match abi {
            Abi::V1 => code,
            Abi::V2 if code < 0 => code,
            Abi::V2 => -105,
        }
    }

    /// A short, static description of the error.
    pub const fn message(&self) -> &'static str {
        match *self {
            Error::UnknownName => "unknown hook name, field code or destination",
            Error::InvalidFilter => "invalid MQTT topic filter",
            Error::WrongTime => "host call made at the wrong time",
            Error::OutOfBounds => "pointer/length outside guest memory, or not UTF-8",
            Error::LimitReached => "limit reached",
            Error::InvalidTopic => "invalid topic name",
            Error::TooLong => "value too long",
            Error::InvalidPublish => "invalid MQTT publish",
            Error::NoSuchField => "no such field in the payload",
            Error::WrongType => "payload field of another type",
            Error::NotJson => "payload is not JSON",
            Error::InvalidPath => "invalid payload path",
            Error::Host(_) => "unknown host error",
            Error::BufferTooSmall { .. } => "buffer too small for event field",
            Error::InvalidUtf8 => "event field is not UTF-8",
            Error::StaleRoute => "header or value for a route that is not the most recent one",
            Error::StalePublish => "property for a publish that is not the most recent one",
            Error::UnknownHook(_) => "unknown hook code",
            Error::Rejected => "rejected by the rule",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::BufferTooSmall { needed } => {
                write!(f, "{} ({} bytes needed)", self.message(), needed)
            }
            Error::Host(code) | Error::UnknownHook(code) => {
                write!(f, "{} ({})", self.message(), code)
            }
            _ => f.write_str(self.message()),
        }
    }
}

impl From<core::str::Utf8Error> for Error {
    fn from(_: core::str::Utf8Error) -> Self {
        Error::InvalidUtf8
    }
}

// ---------------------------------------------------------------------------------------
// Hooks and subscriptions
// ---------------------------------------------------------------------------------------

/// The hooks of the ABI, with their codes as discriminants (`kafka.record` is new in
/// v2; a v1 module may subscribe to it too).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(i32)]
pub enum Hook {
    /// `client.connected` (code 0); the topic field is empty.
    ClientConnected = 0,
    /// `client.disconnected` (code 1); the topic field is empty.
    ClientDisconnected = 1,
    /// `session.subscribed` (code 2); the topic field holds the subscribed filter.
    SessionSubscribed = 2,
    /// `session.unsubscribed` (code 3); the topic field holds the unsubscribed filter.
    SessionUnsubscribed = 3,
    /// `message.publish` (code 4); the topic field holds the publish topic.
    MessagePublish = 4,
    /// `message.delivered` (code 5, alias `message.deliver`); the publish topic.
    MessageDelivered = 5,
    /// `message.acked` (code 6); the publish topic.
    MessageAcked = 6,
    /// `7`: `access.denied`: the ACL refused a publish, subscription or will (topic =
    /// the refused topic or filter).
    AccessDenied = 7,
    /// `8`: `kafka.record`: a record consumed from Kafka by the downlink (topic = the
    /// Kafka topic; the subscription filter is an exact Kafka topic name). Its decision
    /// is a list of MQTT publishes ([`publish`]), not routes.
    KafkaRecord = 8,
}

impl Hook {
    /// All hooks, in code order.
    pub const ALL: [Hook; 9] = [
        Hook::ClientConnected,
        Hook::ClientDisconnected,
        Hook::SessionSubscribed,
        Hook::SessionUnsubscribed,
        Hook::MessagePublish,
        Hook::MessageDelivered,
        Hook::MessageAcked,
        Hook::AccessDenied,
        Hook::KafkaRecord,
    ];

    /// The ABI code of the hook (`0` ..= `8`).
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// The hook with ABI code `code`, if there is one.
    pub const fn from_code(code: i32) -> Option<Hook> {
        match code {
            0 => Some(Hook::ClientConnected),
            1 => Some(Hook::ClientDisconnected),
            2 => Some(Hook::SessionSubscribed),
            3 => Some(Hook::SessionUnsubscribed),
            4 => Some(Hook::MessagePublish),
            5 => Some(Hook::MessageDelivered),
            6 => Some(Hook::MessageAcked),
            7 => Some(Hook::AccessDenied),
            8 => Some(Hook::KafkaRecord),
            _ => None,
        }
    }

    /// The hook's name as passed to the host's `subscribe`, e.g. `"message.publish"`.
    pub const fn name(self) -> &'static str {
        match self {
            Hook::ClientConnected => "client.connected",
            Hook::ClientDisconnected => "client.disconnected",
            Hook::SessionSubscribed => "session.subscribed",
            Hook::SessionUnsubscribed => "session.unsubscribed",
            Hook::MessagePublish => "message.publish",
            Hook::MessageDelivered => "message.delivered",
            Hook::MessageAcked => "message.acked",
            Hook::AccessDenied => "access.denied",
            Hook::KafkaRecord => "kafka.record",
        }
    }

    /// The hook named `name` (accepts the alias `message.deliver`), if there is one.
    pub fn from_name(name: &str) -> Option<Hook> {
        if name == "message.deliver" {
            return Some(Hook::MessageDelivered);
        }
        Hook::ALL.iter().copied().find(|hook| hook.name() == name)
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Subscribes to `hook` for topics matching the MQTT filter `filter` (`+` and `#`
/// wildcards; use `"#"` for the `client.*` hooks, whose topic is empty; for
/// [`Hook::KafkaRecord`] an exact Kafka topic name, which the gateway then consumes).
///
/// Only valid inside `init`. Returns the subscription's index (0-based, in declaration
/// order), which `on_event` later receives as `subscription`.
pub fn subscribe(hook: Hook, filter: &str) -> Result<u32, Error> {
    let name = hook.name();
    let filter_len = abi_len(filter.len())?;
    // SAFETY: both ranges are live, initialised slices of guest memory.
    let rc = unsafe {
        sys::subscribe(
            name.as_ptr(),
            name.len() as i32,
            filter.as_ptr(),
            filter_len,
        )
    };
    check(rc)
}

// ---------------------------------------------------------------------------------------
// Reading the current event
// ---------------------------------------------------------------------------------------

/// Accessors for the event being decided; valid inside `on_event` only.
///
/// Every accessor copies into a buffer the caller owns, typically a fixed array on the
/// stack (`let mut buf = [0u8; 256];`, which coerces to `&mut [u8]`). If the field is
/// longer than the buffer the accessor returns [`Error::BufferTooSmall`] with the full
/// length, never a truncated value.
pub mod event {
    use super::{abi_len, check, sys, Error};

    /// The event fields, with their `event_read` codes as discriminants (`6` ..= `9`
    /// are new in ABI v2; an older gateway answers [`Error::UnknownName`] for them).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    #[repr(i32)]
    pub enum Field {
        /// `0`: the topic (publish topic, or the filter for `session.*`; empty for
        /// `client.*`).
        Topic = 0,
        /// `1`: the client id.
        ClientId = 1,
        /// `2`: the username (empty if none).
        Username = 2,
        /// `3`: the MQTT payload (bytes).
        Payload = 3,
        /// `4`: the publishing client of a delivered or acked message; empty otherwise.
        From = 4,
        /// `5`: the network address (`ip:port`) of the client's connection; empty for
        /// an event no connection raised.
        Peer = 5,
        /// `6`: the consumed record's key (`kafka.record`); empty otherwise.
        Key = 6,
        /// `7`: what `access.denied` refused: `publish`, `subscribe` or `will`; empty
        /// otherwise.
        Action = 7,
        /// `8`: the consumed record's partition as decimal text (`kafka.record`); empty
        /// otherwise.
        Partition = 8,
        /// `9`: the consumed record's offset as decimal text (`kafka.record`); empty
        /// otherwise.
        Offset = 9,
    }

    /// Raw read: copies `min(field length, buf.len())` bytes of `field` into `buf` and
    /// returns the field's full length (which may exceed `buf.len()`).
    pub fn read(field: Field, buf: &mut [u8]) -> Result<usize, Error> {
        let len = abi_len(buf.len())?;
        // SAFETY: `buf` is a live, writable slice of guest memory of `len` bytes.
        let rc = unsafe { sys::event_read(field as i32, buf.as_mut_ptr(), len) };
        check(rc).map(|n| n as usize)
    }

    /// The full length of `field` in bytes, without copying it.
    pub fn len(field: Field) -> Result<usize, Error> {
        read(field, &mut [])
    }

    /// The whole of `field`, copied into `buf`; [`Error::BufferTooSmall`] if it does
    /// not fit.
    pub fn bytes(field: Field, buf: &mut [u8]) -> Result<&[u8], Error> {
        let needed = read(field, buf)?;
        match buf.get(..needed) {
            Some(value) => Ok(value),
            None => Err(Error::BufferTooSmall { needed }),
        }
    }

    /// The whole of `field` as text, copied into `buf`; [`Error::BufferTooSmall`] if it
    /// does not fit, [`Error::InvalidUtf8`] if it is not UTF-8.
    pub fn text(field: Field, buf: &mut [u8]) -> Result<&str, Error> {
        let value = bytes(field, buf)?;
        core::str::from_utf8(value).map_err(Error::from)
    }

    /// The event's topic (see [`Field::Topic`]).
    pub fn topic(buf: &mut [u8]) -> Result<&str, Error> {
        text(Field::Topic, buf)
    }

    /// The client id of the event.
    pub fn client_id(buf: &mut [u8]) -> Result<&str, Error> {
        text(Field::ClientId, buf)
    }

    /// The username of the client (empty if none).
    pub fn username(buf: &mut [u8]) -> Result<&str, Error> {
        text(Field::Username, buf)
    }

    /// The MQTT payload (bytes, not necessarily UTF-8). Use [`len`]`(Field::Payload)` to
    /// size the buffer first if payloads can be large.
    pub fn payload(buf: &mut [u8]) -> Result<&[u8], Error> {
        bytes(Field::Payload, buf)
    }

    /// The publishing client of a delivered or acked message; empty for other hooks.
    pub fn from(buf: &mut [u8]) -> Result<&str, Error> {
        text(Field::From, buf)
    }

    /// The network address (`ip:port`) of the client's connection; empty for an event no
    /// connection raised.
    pub fn peer(buf: &mut [u8]) -> Result<&str, Error> {
        text(Field::Peer, buf)
    }

    /// The consumed record's key (`kafka.record`, bytes); empty for a record without
    /// key and for every other hook.
    pub fn key(buf: &mut [u8]) -> Result<&[u8], Error> {
        bytes(Field::Key, buf)
    }

    /// What `access.denied` refused: `publish`, `subscribe` or `will`; empty otherwise.
    pub fn action(buf: &mut [u8]) -> Result<&str, Error> {
        text(Field::Action, buf)
    }

    /// The consumed record's partition (`kafka.record`); `None` for other hooks.
    pub fn partition() -> Result<Option<i32>, Error> {
        let mut buf = [0u8; 11];
        number(Field::Partition, &mut buf)
    }

    /// The consumed record's offset (`kafka.record`); `None` for other hooks.
    pub fn offset() -> Result<Option<i64>, Error> {
        let mut buf = [0u8; 20];
        number(Field::Offset, &mut buf)
    }

    /// A decimal field: `None` when empty, [`Error::InvalidUtf8`] when not a number.
    fn number<T: core::str::FromStr>(field: Field, buf: &mut [u8]) -> Result<Option<T>, Error> {
        let value = text(field, buf)?;
        if value.is_empty() {
            return Ok(None);
        }
        value.parse().map(Some).map_err(|_| Error::InvalidUtf8)
    }

    /// The value of the consumed record's first header named `name` (`kafka.record`),
    /// copied into `buf`; `Ok(None)` when the record has no such header (and for every
    /// other hook); [`Error::BufferTooSmall`] if it does not fit.
    pub fn header<'a>(name: &str, buf: &'a mut [u8]) -> Result<Option<&'a [u8]>, Error> {
        let name_len = abi_len(name.len())?;
        let buf_len = abi_len(buf.len())?;
        // SAFETY: both ranges are live slices of guest memory of the given lengths.
        let rc = unsafe { sys::event_header(name.as_ptr(), name_len, buf.as_mut_ptr(), buf_len) };
        if rc == -1 {
            return Ok(None);
        }
        let needed = check(rc)? as usize;
        match buf.get(..needed) {
            Some(value) => Ok(Some(value)),
            None => Err(Error::BufferTooSmall { needed }),
        }
    }

    /// QoS of the message (0, 1, 2); for `session.subscribed` the granted QoS; 0 for
    /// client events and `kafka.record`.
    pub fn qos() -> Result<u8, Error> {
        // SAFETY: no pointers involved.
        let rc = unsafe { sys::event_qos() };
        check(rc).map(|qos| qos.min(u8::MAX as u32) as u8)
    }
}

// ---------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------

/// Serial number of the most recent `route` call (successful or not), bumped also at
/// the start of every event by [`rule!`]. A [`Route`] remembers the serial it was
/// created with, so [`Route::header`] can refuse to add headers to a route that is no
/// longer the host's "most recent route".
static ROUTE_SERIAL: AtomicU32 = AtomicU32::new(0);

fn next_route_serial() -> u32 {
    ROUTE_SERIAL.fetch_add(1, Ordering::Relaxed).wrapping_add(1)
}

/// A record the host will produce for the current event; returned by [`route`],
/// [`route_with_key`], [`route_to`] and [`route_to_with_key`]. Use it to add headers.
#[derive(Debug, PartialEq, Eq)]
pub struct Route {
    index: u32,
    serial: u32,
}

impl Route {
    /// The route's index among this event's routes (0-based).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// Adds the Kafka record header `name: value` (name at most 256 bytes, value at most
    /// 4096) to this route. Chainable:
    /// `route("t")?.header("a", "1")?.header("b", b"\x02")?;`
    ///
    /// The ABI attaches headers to the most recent route, so once another route was
    /// made (or a new event began) this returns [`Error::StaleRoute`] and sends nothing.
    pub fn header<V: AsRef<[u8]>>(&self, name: &str, value: V) -> Result<&Route, Error> {
        if ROUTE_SERIAL.load(Ordering::Relaxed) != self.serial {
            return Err(Error::StaleRoute);
        }
        let value = value.as_ref();
        let name_len = abi_len(name.len())?;
        let value_len = abi_len(value.len())?;
        // SAFETY: both ranges are live, initialised slices of guest memory.
        let rc = unsafe { sys::route_header(name.as_ptr(), name_len, value.as_ptr(), value_len) };
        check(rc).map(|_| self)
    }

    /// ABI v2: chooses this route's record value (the envelope by default). Chainable:
    /// `route("raw_state")?.value(Value::Payload)?;`
    ///
    /// Like [`Route::header`], only the most recent route can be changed:
    /// [`Error::StaleRoute`] otherwise.
    pub fn value(&self, value: Value<'_>) -> Result<&Route, Error> {
        if ROUTE_SERIAL.load(Ordering::Relaxed) != self.serial {
            return Err(Error::StaleRoute);
        }
        let (kind, bytes): (i32, &[u8]) = match value {
            Value::Envelope => (0, &[]),
            Value::Payload => (1, &[]),
            Value::Bytes(bytes) => (2, bytes),
        };
        let len = abi_len(bytes.len())?;
        // SAFETY: `bytes` is a live slice of guest memory of `len` bytes.
        let rc = unsafe { sys::route_value(kind, bytes.as_ptr(), len) };
        check(rc).map(|_| self)
    }
}

/// What a route's Kafka record carries as its value (ABI v2 `route_value`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Value<'a> {
    /// Kind `0`: the JSON envelope of the event (the default).
    Envelope,
    /// Kind `1`: the MQTT payload as the device sent it.
    Payload,
    /// Kind `2`: these bytes.
    Bytes(&'a [u8]),
}

fn route_raw(topic: &str, key_ptr: *const u8, key_len: i32) -> Result<Route, Error> {
    let topic_len = abi_len(topic.len())?;
    // SAFETY: `topic` is a live slice; `key_ptr`/`key_len` come from a live slice or are
    // (dangling, -1), which the ABI defines as "default key" and never dereferences.
    let rc = unsafe { sys::route(topic.as_ptr(), topic_len, key_ptr, key_len) };
    // Any route call, even a failed one, ends the previous route's header window.
    let serial = next_route_serial();
    check(rc).map(|index| Route { index, serial })
}

/// Sends the current event to Kafka topic `topic` with the default key (the event's
/// client id). Only valid inside `on_event`.
///
/// [`Error::LimitReached`], [`Error::InvalidTopic`] and [`Error::TooLong`] from a route
/// call invalidate the whole decision for this event (no route of it is produced).
pub fn route(topic: &str) -> Result<Route, Error> {
    route_raw(topic, b"".as_ptr(), -1)
}

/// Sends the current event to Kafka topic `topic` with record key `key` (at most 4096
/// bytes; an empty slice is an empty key, not the default one). Only valid inside
/// `on_event`.
pub fn route_with_key(topic: &str, key: &[u8]) -> Result<Route, Error> {
    let key_len = abi_len(key.len())?;
    route_raw(topic, key.as_ptr(), key_len)
}

fn route_to_raw(dest: &str, topic: &str, key_ptr: *const u8, key_len: i32) -> Result<Route, Error> {
    let dest_len = abi_len(dest.len())?;
    let topic_len = abi_len(topic.len())?;
    // SAFETY: as in `route_raw`; `dest` is a live slice too.
    let rc = unsafe {
        sys::route_to(
            dest.as_ptr(),
            dest_len,
            topic.as_ptr(),
            topic_len,
            key_ptr,
            key_len,
        )
    };
    let serial = next_route_serial();
    check(rc).map(|index| Route { index, serial })
}

/// ABI v2: sends the current event, with the default key (the event's client id), to
/// the destination named `dest` in the gateway's config (`"kafka"` or `"file"` for the
/// `[sink] kind`, `"<name>"` for a RabbitMQ destination `[sink.<name>]`); [`route`] uses
/// the first configured one. `topic` is the Kafka topic, the RabbitMQ exchange (`""`:
/// the default exchange; the key is the routing key) or the file sink's topic field.
/// Only valid inside `on_event`.
///
/// [`Error::UnknownName`] when no destination has that name; [`Error::InvalidTopic`]
/// (a topic that destination does not take), [`Error::LimitReached`] and
/// [`Error::TooLong`] invalidate the whole decision for this event.
pub fn route_to(dest: &str, topic: &str) -> Result<Route, Error> {
    route_to_raw(dest, topic, b"".as_ptr(), -1)
}

/// ABI v2: [`route_to`] with record key (RabbitMQ: routing key) `key` (at most 4096
/// bytes; an empty slice is an empty key, not the default one).
pub fn route_to_with_key(dest: &str, topic: &str, key: &[u8]) -> Result<Route, Error> {
    let key_len = abi_len(key.len())?;
    route_to_raw(dest, topic, key.as_ptr(), key_len)
}

// ---------------------------------------------------------------------------------------
// Publishing (ABI v2, kafka.record only)
// ---------------------------------------------------------------------------------------

/// Serial number of the most recent `publish` call, as [`ROUTE_SERIAL`] is for routes.
static PUBLISH_SERIAL: AtomicU32 = AtomicU32::new(0);

fn next_publish_serial() -> u32 {
    PUBLISH_SERIAL
        .fetch_add(1, Ordering::Relaxed)
        .wrapping_add(1)
}

/// MQTT quality of service of a [`publish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(i32)]
pub enum QoS {
    /// `0`: at most once.
    AtMostOnce = 0,
    /// `1`: at least once.
    AtLeastOnce = 1,
    /// `2`: exactly once.
    ExactlyOnce = 2,
}

/// The MQTT 5 properties a rule may set on a publish, with their identifiers in the MQTT
/// 5 specification (the `id` of the ABI's `publish_property`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Property<'a> {
    /// `1`: payload format indicator: `false` unspecified bytes, `true` UTF-8 text.
    PayloadFormatIndicator(bool),
    /// `2`: message expiry interval, seconds.
    MessageExpiryInterval(u32),
    /// `3`: content type (UTF-8).
    ContentType(&'a str),
    /// `8`: response topic (a topic name, no wildcards).
    ResponseTopic(&'a str),
    /// `9`: correlation data (bytes).
    CorrelationData(&'a [u8]),
}

impl Property<'_> {
    /// The property's identifier in the MQTT 5 specification.
    pub const fn id(&self) -> i32 {
        match self {
            Property::PayloadFormatIndicator(_) => 1,
            Property::MessageExpiryInterval(_) => 2,
            Property::ContentType(_) => 3,
            Property::ResponseTopic(_) => 8,
            Property::CorrelationData(_) => 9,
        }
    }
}

/// An MQTT message the host will publish for the current `kafka.record` event; returned
/// by [`publish`] and [`publish_payload`]. Use it to set MQTT 5 properties.
#[derive(Debug, PartialEq, Eq)]
pub struct Publish {
    index: u32,
    serial: u32,
}

impl Publish {
    /// The publish's index among this record's publishes (0-based).
    pub fn index(&self) -> u32 {
        self.index
    }

    fn current(&self) -> Result<(), Error> {
        match PUBLISH_SERIAL.load(Ordering::Relaxed) == self.serial {
            true => Ok(()),
            false => Err(Error::StalePublish),
        }
    }

    /// Sets an MQTT 5 property of this publish. Chainable:
    /// `publish(t, QoS::AtLeastOnce, false)?.property(Property::ContentType("application/json"))?;`
    ///
    /// The ABI changes the most recent publish only, so once another publish was made
    /// (or a new event began) this returns [`Error::StalePublish`] and sends nothing.
    pub fn property(&self, property: Property<'_>) -> Result<&Publish, Error> {
        self.current()?;
        let (one, four);
        let bytes: &[u8] = match property {
            Property::PayloadFormatIndicator(utf8) => {
                one = [utf8 as u8];
                &one
            }
            Property::MessageExpiryInterval(seconds) => {
                four = seconds.to_be_bytes();
                &four
            }
            Property::ContentType(text) | Property::ResponseTopic(text) => text.as_bytes(),
            Property::CorrelationData(bytes) => bytes,
        };
        let len = abi_len(bytes.len())?;
        // SAFETY: `bytes` is a live slice of guest memory of `len` bytes.
        let rc = unsafe { sys::publish_property(property.id(), bytes.as_ptr(), len) };
        check(rc).map(|_| self)
    }

    /// Adds the MQTT 5 user property `name: value` (each at most 4096 bytes) to this
    /// publish; [`Error::StalePublish`] as for [`Publish::property`]. Chainable.
    pub fn user_property(&self, name: &str, value: &str) -> Result<&Publish, Error> {
        self.current()?;
        let name_len = abi_len(name.len())?;
        let value_len = abi_len(value.len())?;
        // SAFETY: both ranges are live, initialised slices of guest memory.
        let rc = unsafe {
            sys::publish_user_property(name.as_ptr(), name_len, value.as_ptr(), value_len)
        };
        check(rc).map(|_| self)
    }
}

fn publish_raw(
    topic: &str,
    qos: QoS,
    retain: bool,
    payload_ptr: *const u8,
    payload_len: i32,
) -> Result<Publish, Error> {
    let topic_len = abi_len(topic.len())?;
    // SAFETY: `topic` is a live slice; `payload_ptr`/`payload_len` come from a live slice
    // or are (dangling, -1), which the ABI defines as "the record's value".
    let rc = unsafe {
        sys::publish(
            topic.as_ptr(),
            topic_len,
            qos as i32,
            retain as i32,
            payload_ptr,
            payload_len,
        )
    };
    // Any publish call, even a failed one, ends the previous publish's property window.
    let serial = next_publish_serial();
    check(rc).map(|index| Publish { index, serial })
}

/// ABI v2: publishes the consumed record's value as an MQTT message to `topic` (a topic
/// name, no wildcards) at `qos`, retained if `retain`. Only valid inside `on_event` for a
/// [`Hook::KafkaRecord`] event ([`Error::WrongTime`] otherwise).
///
/// [`Error::LimitReached`] and [`Error::InvalidPublish`] invalidate the whole decision
/// for this record (no publish of it is produced).
pub fn publish(topic: &str, qos: QoS, retain: bool) -> Result<Publish, Error> {
    publish_raw(topic, qos, retain, b"".as_ptr(), -1)
}

/// ABI v2: as [`publish`], with `payload` as the message's payload instead of the
/// record's value.
pub fn publish_payload(
    topic: &str,
    qos: QoS,
    retain: bool,
    payload: &[u8],
) -> Result<Publish, Error> {
    let payload_len = abi_len(payload.len())?;
    publish_raw(topic, qos, retain, payload.as_ptr(), payload_len)
}

// ---------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------

/// The rule's setting `key` (from `<rule>.toml` beside the module, flattened to dotted
/// keys, every value as text), read into `buf`. `Ok(None)` when the key is not set.
///
/// ```ignore
/// let mut buf = [0u8; 64];
/// let topic = hookline_rule::setting("topic", &mut buf)?.unwrap_or("alarm_state");
/// ```
pub fn setting<'a>(key: &str, buf: &'a mut [u8]) -> Result<Option<&'a str>, Error> {
    let key_len = abi_len(key.len())?;
    let buf_len = abi_len(buf.len())?;
    // SAFETY: both pointers are live slices of guest memory of the given lengths.
    let rc = unsafe { sys::config_get(key.as_ptr(), key_len, buf.as_mut_ptr(), buf_len) };
    if rc == -1 {
        return Ok(None);
    }
    let len = check(rc)? as usize;
    if len > buf.len() {
        return Err(Error::BufferTooSmall { needed: len });
    }
    Ok(Some(core::str::from_utf8(&buf[..len])?))
}

// ---------------------------------------------------------------------------------------
// Payload fields (ABI v2.1)
// ---------------------------------------------------------------------------------------

/// The number at `path` in the event's JSON payload (the MQTT payload, or the consumed
/// record's value): `battery`, `lock.state`, `readings[0]`. The host parses the payload
/// once per event. [`Error::NoSuchField`], [`Error::WrongType`] (not a JSON number) and
/// [`Error::NotJson`] say why there is none.
///
/// ```ignore
/// if hookline_rule::payload_f64("battery")? < 20.0 {
///     hookline_rule::route("battery_low")?;
/// }
/// ```
pub fn payload_f64(path: &str) -> Result<f64, Error> {
    let mut value = [0u8; 8];
    // SAFETY: `path` and `value` are live slices of guest memory of the given lengths.
    check(unsafe { sys::payload_f64(path.as_ptr(), abi_len(path.len())?, value.as_mut_ptr()) })?;
    Ok(f64::from_le_bytes(value))
}

/// The bool at `path` in the event's JSON payload (see [`payload_f64`]).
pub fn payload_bool(path: &str) -> Result<bool, Error> {
    // SAFETY: `path` is a live slice of guest memory of the given length.
    Ok(check(unsafe { sys::payload_bool(path.as_ptr(), abi_len(path.len())?) })? == 1)
}

/// The string at `path` in the event's JSON payload, unescaped, read into `buf` (see
/// [`payload_f64`]); [`Error::BufferTooSmall`] says how much it needs.
pub fn payload_str<'a>(path: &str, buf: &'a mut [u8]) -> Result<&'a str, Error> {
    // SAFETY: `path` and `buf` are live slices of guest memory of the given lengths.
    let rc = unsafe { sys::payload_str(path.as_ptr(), abi_len(path.len())?, buf.as_mut_ptr(), abi_len(buf.len())?) };
    Ok(core::str::from_utf8(fitted(rc, buf)?)?)
}

/// The JSON text of the value at `path` in the event's payload, exactly as it is there
/// (an object, an array, a number with every digit, a string with its quotes), read
/// into `buf` (see [`payload_f64`]).
pub fn payload_json<'a>(path: &str, buf: &'a mut [u8]) -> Result<&'a [u8], Error> {
    // SAFETY: `path` and `buf` are live slices of guest memory of the given lengths.
    let rc = unsafe { sys::payload_json(path.as_ptr(), abi_len(path.len())?, buf.as_mut_ptr(), abi_len(buf.len())?) };
    fitted(rc, buf)
}

/// The bytes a copying host call (`rc`: the value's full length) put in `buf`.
fn fitted(rc: i32, buf: &[u8]) -> Result<&[u8], Error> {
    let len = check(rc)? as usize;
    match len <= buf.len() {
        true => Ok(&buf[..len]),
        false => Err(Error::BufferTooSmall { needed: len }),
    }
}

// ---------------------------------------------------------------------------------------
// Logging
// ---------------------------------------------------------------------------------------

/// Log levels of the host's `log` import.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(i32)]
pub enum Level {
    /// `0`: error.
    Error = 0,
    /// `1`: warning.
    Warn = 1,
    /// `2`: information.
    Info = 2,
    /// `3`: debugging.
    Debug = 3,
}

/// Writes `message` as one line to the gateway's log (rate-limited by the host).
pub fn log(level: Level, message: &str) {
    let len = message.len().min(i32::MAX as usize) as i32;
    // SAFETY: `message` is a live slice of guest memory of at least `len` bytes.
    unsafe { sys::log(level as i32, message.as_ptr(), len) }
}

/// Formats like `format!` into a 512-byte stack buffer (longer lines are cut at a
/// character boundary) and [`log`]s the result. No allocator needed.
///
/// ```ignore
/// hookline_rule::log_fmt!(hookline_rule::Level::Info, "{} routed to {}", topic, 3);
/// ```
#[macro_export]
macro_rules! log_fmt {
    ($level:expr, $($arg:tt)+) => {
        $crate::__private::log_fmt($level, ::core::format_args!($($arg)+))
    };
}

// ---------------------------------------------------------------------------------------
// The event handed to on_event
// ---------------------------------------------------------------------------------------

/// The event being decided, handed to your `on_event`. Its fields are read on demand
/// from the host into buffers you provide (see [`event`]), so an event that only needs
/// its hook and subscription costs no copy at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    hook: Hook,
    subscription: u32,
}

impl Event {
    /// The hook that fired.
    pub fn hook(&self) -> Hook {
        self.hook
    }

    /// Index (declaration order) of the first of your subscriptions that matched.
    pub fn subscription(&self) -> u32 {
        self.subscription
    }

    /// The topic (the filter, for session events); see [`event::topic`].
    pub fn topic<'a>(&self, buf: &'a mut [u8]) -> Result<&'a str, Error> {
        event::topic(buf)
    }

    /// The client the event is about; see [`event::client_id`].
    pub fn client_id<'a>(&self, buf: &'a mut [u8]) -> Result<&'a str, Error> {
        event::client_id(buf)
    }

    /// That client's username; see [`event::username`].
    pub fn username<'a>(&self, buf: &'a mut [u8]) -> Result<&'a str, Error> {
        event::username(buf)
    }

    /// The MQTT payload; see [`event::payload`].
    pub fn payload<'a>(&self, buf: &'a mut [u8]) -> Result<&'a [u8], Error> {
        event::payload(buf)
    }

    /// The publisher of a delivered or acked message; see [`event::from`].
    pub fn from<'a>(&self, buf: &'a mut [u8]) -> Result<&'a str, Error> {
        event::from(buf)
    }

    /// The message's QoS; see [`event::qos`].
    pub fn qos(&self) -> Result<u8, Error> {
        event::qos()
    }

    /// The consumed record's key (`kafka.record`); see [`event::key`].
    pub fn key<'a>(&self, buf: &'a mut [u8]) -> Result<&'a [u8], Error> {
        event::key(buf)
    }

    /// A header of the consumed record (`kafka.record`); see [`event::header`].
    pub fn header<'a>(&self, name: &str, buf: &'a mut [u8]) -> Result<Option<&'a [u8]>, Error> {
        event::header(name, buf)
    }
}

// ---------------------------------------------------------------------------------------
// Exports
// ---------------------------------------------------------------------------------------

/// Emits the three function exports of the ABI (the version marker, `hookline_init`,
/// `hookline_on_event`) wired to your two functions; `memory` is exported by the
/// toolchain. Invoke it once, at the root of a `cdylib` crate:
///
/// ```ignore
/// fn init() -> Result<(), hookline_rule::Error> { /* subscribe(..)?; */ Ok(()) }
/// fn on_event(ev: &hookline_rule::Event) -> Result<(), hookline_rule::Error> {
///     Ok(())
/// }
/// hookline_rule::rule! { init => init, on_event => on_event }
/// ```
///
/// The module speaks ABI v2 (marker `hookline_abi_v2`). `rule! { abi = v1, init => ..,
/// on_event => .. }` builds a v1 module (marker `hookline_abi_v1`) from the same
/// functions; `abi = v2` may be spelled out too. The host treats both alike except for
/// the result convention, which this macro follows: `Ok(())` becomes `0`; `Err(e)`
/// becomes [`Error::code_for`] the version (always a rejection), which refuses loading
/// (from `init`) or rejects the event (from `on_event`). A hook code this SDK does not
/// know rejects the event with [`Error::UnknownHook`].
#[macro_export]
macro_rules! rule {
    (init => $init:path, on_event => $on_event:path $(,)?) => {
        $crate::rule! { abi = v2, init => $init, on_event => $on_event }
    };
    (abi = v2, init => $init:path, on_event => $on_event:path $(,)?) => {
        /// hookline guest ABI version marker (v2); never called.
        #[no_mangle]
        pub extern "C" fn hookline_abi_v2() {}

        /// hookline ABI v2: declares the rule's subscriptions.
        #[no_mangle]
        pub extern "C" fn hookline_init() -> i32 {
            $crate::__private::init($crate::Abi::V2, $init)
        }

        /// hookline ABI v2: decides one event.
        #[no_mangle]
        pub extern "C" fn hookline_on_event(hook: i32, subscription: i32) -> i32 {
            $crate::__private::on_event($crate::Abi::V2, $on_event, hook, subscription)
        }
    };
    (abi = v1, init => $init:path, on_event => $on_event:path $(,)?) => {
        /// hookline guest ABI version marker (v1); never called.
        #[no_mangle]
        pub extern "C" fn hookline_abi_v1() {}

        /// hookline ABI v1: declares the rule's subscriptions.
        #[no_mangle]
        pub extern "C" fn hookline_init() -> i32 {
            $crate::__private::init($crate::Abi::V1, $init)
        }

        /// hookline ABI v1: decides one event.
        #[no_mangle]
        pub extern "C" fn hookline_on_event(hook: i32, subscription: i32) -> i32 {
            $crate::__private::on_event($crate::Abi::V1, $on_event, hook, subscription)
        }
    };
}

/// Support for the macros; not part of the public API.
#[doc(hidden)]
pub mod __private {
    use super::{log, next_publish_serial, next_route_serial, Abi, Error, Event, Hook, Level};
    use core::fmt::{self, Write};

    fn result_code(abi: Abi, result: Result<(), Error>) -> i32 {
        match result {
            Ok(()) => 0,
            Err(error) => error.code_for(abi),
        }
    }

    pub fn init<F: FnOnce() -> Result<(), Error>>(abi: Abi, f: F) -> i32 {
        result_code(abi, f())
    }

    pub fn on_event<F: FnOnce(&Event) -> Result<(), Error>>(
        abi: Abi,
        f: F,
        hook: i32,
        subscription: i32,
    ) -> i32 {
        // A new event: routes and publishes of the previous one must not change.
        next_route_serial();
        next_publish_serial();
        let hook = match Hook::from_code(hook) {
            Some(hook) => hook,
            None => return Error::UnknownHook(hook).code_for(abi),
        };
        result_code(
            abi,
            f(&Event {
                hook,
                subscription: subscription as u32,
            }),
        )
    }

    /// A fixed-size line buffer that silently truncates at a character boundary.
    pub struct Line<const N: usize> {
        buf: [u8; N],
        len: usize,
    }

    impl<const N: usize> Default for Line<N> {
        fn default() -> Self {
            Self::new()
        }
    }

    impl<const N: usize> Line<N> {
        pub const fn new() -> Self {
            Line {
                buf: [0; N],
                len: 0,
            }
        }

        pub fn as_str(&self) -> &str {
            // Only whole `str` prefixes cut at char boundaries are ever copied in.
            core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
        }
    }

    impl<const N: usize> Write for Line<N> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let room = N - self.len;
            let mut take = s.len().min(room);
            while !s.is_char_boundary(take) {
                take -= 1;
            }
            self.buf[self.len..self.len + take].copy_from_slice(&s.as_bytes()[..take]);
            self.len += take;
            Ok(())
        }
    }

    pub fn log_fmt(level: Level, args: fmt::Arguments<'_>) {
        let mut line = Line::<512>::new();
        let _ = line.write_fmt(args);
        log(level, line.as_str());
    }
}

// ---------------------------------------------------------------------------------------
// Panics
// ---------------------------------------------------------------------------------------

/// With the default `panic-handler` feature, a panic executes the wasm `unreachable`
/// instruction: the host sees a trap, counts it, and drops only this instance.
#[cfg(all(feature = "panic-handler", target_arch = "wasm32"))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    core::arch::wasm32::unreachable()
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::fmt::Write;
    use std::string::ToString;

    #[test]
    fn hook_codes_and_names_round_trip() {
        for (i, hook) in Hook::ALL.iter().enumerate() {
            assert_eq!(hook.code(), i as i32);
            assert_eq!(Hook::from_code(i as i32), Some(*hook));
            assert_eq!(Hook::from_name(hook.name()), Some(*hook));
        }
        assert_eq!(Hook::from_code(8), Some(Hook::KafkaRecord));
        assert_eq!(Hook::from_code(9), None);
        assert_eq!(Hook::from_code(-1), None);
        assert_eq!(
            Hook::from_name("message.deliver"),
            Some(Hook::MessageDelivered)
        );
        assert_eq!(Hook::MessageAcked.name(), "message.acked");
        assert_eq!(Hook::from_name("message"), None);
    }

    #[test]
    fn host_codes_map_both_ways() {
        for code in -8..=-1 {
            let error = Error::from_host(code);
            assert_ne!(error, Error::Host(code));
            assert_eq!(error.code(), code);
        }
        assert_eq!(Error::from_host(-42), Error::Host(-42));
        assert_eq!(Error::Host(-42).code(), -42);
        assert_eq!(Error::Host(0).code(), -99);
        assert_eq!(Error::Rejected.code(), 1);
        assert_eq!(Error::Rejected.code_for(Abi::V1), 1);
        assert_eq!(Error::Rejected.code_for(Abi::V2), -105);
        assert_eq!(Error::InvalidPublish.code_for(Abi::V2), -8);
        assert_eq!(
            Error::BufferTooSmall { needed: 9 }.to_string(),
            "buffer too small for event field (9 bytes needed)"
        );
    }

    #[test]
    fn every_error_code_is_non_zero() {
        let errors = [
            Error::UnknownName,
            Error::InvalidFilter,
            Error::WrongTime,
            Error::OutOfBounds,
            Error::LimitReached,
            Error::InvalidTopic,
            Error::TooLong,
            Error::Host(0),
            Error::InvalidPublish,
            Error::Host(-9),
            Error::BufferTooSmall { needed: 0 },
            Error::InvalidUtf8,
            Error::StaleRoute,
            Error::StalePublish,
            Error::UnknownHook(9),
            Error::Rejected,
        ];
        for error in errors {
            assert_ne!(error.code(), 0, "{:?}", error);
            assert!(
                error.code_for(Abi::V2) < 0,
                "{:?} must reject under v2",
                error
            );
        }
    }

    #[test]
    fn native_stubs_answer_wrong_time() {
        let mut buf = [0u8; 8];
        assert_eq!(
            subscribe(Hook::MessagePublish, "a/#"),
            Err(Error::WrongTime)
        );
        assert_eq!(event::topic(&mut buf), Err(Error::WrongTime));
        assert_eq!(event::qos(), Ok(0));
        assert_eq!(route("t"), Err(Error::WrongTime));
        assert_eq!(route_with_key("t", b"k"), Err(Error::WrongTime));
        assert_eq!(route_to("kafka", "t"), Err(Error::WrongTime));
        assert_eq!(route_to_with_key("orders", "", b"k"), Err(Error::WrongTime));
        assert_eq!(
            publish("devices/1/command", QoS::AtLeastOnce, false),
            Err(Error::WrongTime)
        );
        assert_eq!(
            publish_payload("devices/1/command", QoS::AtMostOnce, true, b"x"),
            Err(Error::WrongTime)
        );
        assert_eq!(event::header("h", &mut buf), Ok(None));
        assert_eq!(event::partition(), Err(Error::WrongTime));
        log(Level::Info, "ignored");
    }

    #[test]
    fn stale_route_headers_are_refused() {
        let first = Route {
            index: 0,
            serial: next_route_serial(),
        };
        // Current route: the header reaches the (stub) host.
        assert_eq!(first.header("a", "b").err(), Some(Error::WrongTime));
        let _ = route("other");
        assert_eq!(first.header("a", "b").err(), Some(Error::StaleRoute));
        assert_eq!(first.value(Value::Payload).err(), Some(Error::StaleRoute));
    }

    #[test]
    fn route_to_ends_the_previous_routes_header_window() {
        let first = Route {
            index: 0,
            serial: next_route_serial(),
        };
        let _ = route_to("kafka", "other");
        assert_eq!(first.header("a", "b").err(), Some(Error::StaleRoute));
        let second = Route {
            index: 1,
            serial: next_route_serial(),
        };
        let _ = route_to_with_key("orders", "amq.topic", b"k");
        assert_eq!(second.value(Value::Payload).err(), Some(Error::StaleRoute));
    }

    #[test]
    fn stale_publish_properties_are_refused() {
        let first = Publish {
            index: 0,
            serial: next_publish_serial(),
        };
        let property = Property::MessageExpiryInterval(60);
        assert_eq!(first.property(property).err(), Some(Error::WrongTime));
        let _ = publish("other", QoS::AtMostOnce, false);
        assert_eq!(first.property(property).err(), Some(Error::StalePublish));
        assert_eq!(
            first.user_property("a", "b").err(),
            Some(Error::StalePublish)
        );
        assert_eq!(Property::CorrelationData(b"x").id(), 9);
    }

    #[test]
    fn exports_map_results() {
        assert_eq!(__private::init(Abi::V1, || Ok(())), 0);
        assert_eq!(__private::init(Abi::V1, || Err(Error::Rejected)), 1);
        assert_eq!(__private::init(Abi::V2, || Err(Error::Rejected)), -105);
        assert_eq!(
            __private::on_event(
                Abi::V1,
                |ev: &Event| if ev.hook() == Hook::MessageAcked && ev.subscription() == 3 {
                    Ok(())
                } else {
                    Err(Error::Rejected)
                },
                6,
                3
            ),
            0
        );
        assert_eq!(__private::on_event(Abi::V2, |_: &Event| Ok(()), 9, 0), -103);
        assert_eq!(
            __private::on_event(Abi::V1, |_: &Event| Err(Error::InvalidTopic), 4, 0),
            -6
        );
        assert_eq!(
            __private::on_event(
                Abi::V2,
                |ev: &Event| match ev.hook() {
                    Hook::KafkaRecord => Err(Error::Rejected),
                    _ => Ok(()),
                },
                8,
                0
            ),
            -105
        );
    }

    #[test]
    fn log_line_truncates_at_char_boundary() {
        let mut line = __private::Line::<5>::new();
        let tail = "cdé";
        write!(line, "ab{}", tail).unwrap();
        assert_eq!(line.as_str(), "abcd");
        let mut line = __private::Line::<8>::new();
        let (n, x) = (12, "x");
        write!(line, "{}-{}", n, x).unwrap();
        assert_eq!(line.as_str(), "12-x");
    }
}
