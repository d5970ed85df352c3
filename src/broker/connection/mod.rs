//! One client connection, from its CONNECT to its one disconnect: hookline's side of
//! MQTT, over a link to rumqttd's router.
//!
//! The task owns everything about its client: the socket and its buffers, the login,
//! the subscriptions' options, the QoS flows in both directions and the will. It raises
//! each hook event where the thing happens, and writes the events of one socket read to
//! the spool before anything read is acknowledged.
//!
//! The router is used for what it is good at (matching, fan-out, shared subscriptions,
//! persistent sessions) and nothing else:
//! - it receives client publishes at QoS 0, with their origin attached (`origin`); the
//!   edge itself acknowledges them once the spool has them. A publish no subscription
//!   on this node can match never reaches it, and none reaches it retained: the edge
//!   keeps retained messages (`crate::retained`) and sends them after a SUBACK.
//! - it delivers to the edge at QoS 0 or 1; the edge caps each delivery at
//!   min(published QoS, granted QoS), speaks QoS 2 with the client itself, holds
//!   deliveries beyond the client's Receive Maximum, and acknowledges the router in the
//!   order the router delivered (it accepts no other order).
//! - the edge answers SUBSCRIBE, UNSUBSCRIBE and PINGREQ itself, and tells the router
//!   exactly once that the connection is gone.
//!
//! One file a job, from the top down: `io` (the loop and its flushes) over `handshake`
//! (the CONNECT) and `ending` (the end); `inbound` (what the client sends), `outbound`
//! (the way from the router to the client) and `in_cluster` (the session in the cluster
//! and its mailbox), all `State`'s; below them `state`, then the pieces it is made of:
//! `client`, `cluster_session`, `flight` (the QoS flows' data), `end` and `limits`.

mod client;
mod cluster_session;
mod end;
mod ending;
mod flight;
mod handshake;
mod in_cluster;
mod inbound;
mod io;
mod limits;
mod outbound;
mod state;

pub(super) use client::Client;
pub(super) use io::serve;
