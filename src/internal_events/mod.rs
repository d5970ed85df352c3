//! Things that happen in the gateway that an operator needs to see, each in one place:
//! the counter it bumps and the line it logs, side by side (Vector's `internal_events`).
//! A stage says what happened (`SpoolFull { .. }.emit()`) and never logs or counts it
//! itself, so a counter and its log line cannot drift apart.
//!
//! Anything a client or a slow destination can make happen as often as it likes logs at
//! most one line per kind a second (`LogLimit`), saying how many were left out; every
//! occurrence is still counted where the event has a counter.

mod cluster;
mod downlink;
mod log_limit;
mod mqtt;
mod rules;
mod sink;
mod spool;

pub use cluster::{ClaimDeferred, ClusterWriteRefused, HeartbeatNotQueued, UnreadableClusterRecord};
pub use downlink::{DownlinkNotDelivered, DownlinkPartitionsNotRead, DownlinkPartitionsNotStarted, DownlinkSessionsBehind};
pub use log_limit::LogLimit;
pub use mqtt::{AcceptFailed, AccessDenied, ConnectionRefused, HandshakeFailed, InboxFull, ProtocolError, PublishNotSpooled, ServedAlone};
pub use rules::RuleCallFailed;
pub use sink::{DestinationAway, RecordFailed, RecordResent};
pub use spool::{SpoolFsyncFailed, SpoolFull, SpoolProgressNotPersisted, SpoolReadFailed, SpoolWriteFailed};

/// Something that happened: `emit` counts it and logs it.
pub trait InternalEvent {
    fn emit(self);
}
