//! The admin HTTP endpoint: `/metrics` (Prometheus text, `prometheus`), `/healthz`, `/readyz`, the
//! JSON and Server-Sent-Events API of the dashboard (`api`: rules, stats, tail, cluster; `history`: the last minutes
//! of throughput, kept here), and the dashboard page at `/` (one self-contained HTML file, `dashboard.html`, built
//! into the binary).
//!
//! Binds to loopback by default (`admin.listen`): counters, rules and the live tail show
//! device traffic, which is nobody else's business. Read-only: it touches nothing but
//! the counters, the rule set in force, the readiness flags, the tail and the cluster's
//! view of its nodes.

mod api;
mod error;
mod history;
pub mod prometheus;
mod server;

pub use error::AdminError;
pub use server::{start, AdminSources};
