//! Who may connect (`credentials`: users and password hashes; `jwt`: signed tokens) and
//! which topics each client may touch (`acl`).
//!
//! The files are optional and re-read when they change (`watch`), like rules; a file
//! that stops parsing is reported and the previous version stays in force.
//! Without an ACL every authenticated client may use every topic except the gateway's
//! reserved ones (`names::RESERVED_PREFIXES`).
//!
//! Checks that cost run on their own bounded pool (`checks`); a login verified lately
//! is remembered (`cache`), so a fleet reconnecting costs one hash per device.

pub mod acl;
mod cache;
mod checks;
pub mod credentials;
mod error;
mod gate;
pub mod hash;
mod jwt;

pub use acl::{Acl, Action};
pub use credentials::{Credentials, LoginRefused, User};
pub use error::AccessError;
pub use gate::{Access, LoginCost};
