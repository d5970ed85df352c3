//! What can go wrong starting the admin endpoint.

use std::net::SocketAddr;

/// Why the admin endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot listen for the admin endpoint on {listen} (config key admin.listen)")]
    Bind { listen: SocketAddr, source: std::io::Error },
    #[error(transparent)]
    ListenerAddress(std::io::Error),
}
