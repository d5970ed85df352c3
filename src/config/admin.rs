//! `[admin]`: the admin HTTP endpoint.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

/// The admin HTTP endpoint.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Serve the admin endpoint.
    pub enabled: bool,
    /// Address of the dashboard (`/`), `/metrics` (Prometheus text), `/healthz`, `/readyz`
    /// and `/api/*`; loopback unless you mean to expose them (the tail shows device
    /// traffic).
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { enabled: true, listen: "127.0.0.1:9180".parse().expect("default admin address parses") }
    }
}
