//! Boxing a future so that an async fn awaiting it does not carry its room.
//!
//! An async fn's frame keeps a slot for every future built in it, for its whole life,
//! even one moved into a box at once (rustc does not reuse the slot). A connection's task
//! would then be as large as the largest future it ever awaits (a TLS accept, the
//! CONNECT's handshake, the end), thousands of idle connections times kilobytes. Built
//! inside `boxed`'s own frame instead, the future's room is on the heap only while it
//! runs.

use std::future::Future;
use std::pin::Pin;

/// The future `make` builds, boxed.
pub fn boxed<F: Future>(make: impl FnOnce() -> F) -> Pin<Box<F>> {
    Box::pin(make())
}
