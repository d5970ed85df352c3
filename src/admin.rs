//! The admin HTTP endpoint: `/metrics` (Prometheus text) and `/healthz`.
//!
//! Binds to loopback by default (`admin.listen`): counters name rules and hooks, which is
//! nobody else's business. Read-only; it touches nothing but the counters and the rule
//! set in force.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::metrics::Metrics;
use crate::rules::SharedRuleSet;

#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    rules: SharedRuleSet,
}

/// Binds `listen` and serves until the runtime stops. Returns the bound address.
pub async fn start(listen: SocketAddr, metrics: Arc<Metrics>, rules: SharedRuleSet) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen for the admin endpoint on {listen} (config key admin.listen)"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(AdminState { metrics, rules });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin endpoint stopped");
        }
    });
    tracing::info!(%bound, "admin endpoint up: /metrics, /healthz");
    Ok(bound)
}

async fn metrics_text(State(state): State<AdminState>) -> impl IntoResponse {
    let text = state.metrics.prometheus(&state.rules.load());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}
