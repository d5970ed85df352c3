//! The edge's fixed limits on one connection: what it tells clients in CONNACK, what it
//! accepts, how it reads, how long it waits to say goodbye, and where its own packet ids
//! start.

use std::time::Duration;

/// Topic aliases a client may use toward the gateway (CONNACK Topic Alias Maximum).
pub(super) const TOPIC_ALIAS_MAX: u16 = 64;

/// Longest client id accepted.
pub(super) const MAX_CLIENT_ID: usize = 256;

/// Socket reads start this small, double while reads fill them, and shrink back when
/// traffic drops: an idle device costs little, a busy one reads in large bites.
pub(super) const READ_MIN: usize = 256;
pub(super) const READ_MAX: usize = 64 * 1024;

/// How long the last words to a closing client (a DISCONNECT) may take.
pub(super) const GOODBYE_WAIT: Duration = Duration::from_secs(1);

/// The first packet id of the deliveries the edge makes itself (mailbox messages,
/// retained messages): rumqttd numbers its deliveries 1 to 100, so the two never collide
/// in one connection's flight window.
pub(super) const FIRST_OWN_PKID: u16 = 101;
