//! The admin HTTP server: its routes (`/metrics`, `/healthz`, `/readyz`, the dashboard and
//! its API) and its start and stop.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::extract::{FromRef, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use super::api;
use super::error::AdminError;
use super::history::StatsHistory;
use super::prometheus;
use crate::cluster::Cluster;
use crate::live_tail::Tail;
use crate::metrics::Metrics;
use crate::rules::SharedRuleSet;
use crate::util::readiness::Readiness;

/// Everything the admin endpoint reads.
#[derive(Clone)]
pub struct AdminSources {
    pub metrics: Arc<Metrics>,
    pub rules: SharedRuleSet,
    pub readiness: Arc<Readiness>,
    pub tail: Arc<Tail>,
    /// This node's cluster, once it has joined one (with Kafka).
    pub cluster: Arc<OnceLock<Arc<Cluster>>>,
}

/// What the handlers read: the gateway's sources, and the history this endpoint keeps.
#[derive(Clone)]
struct AdminState {
    sources: AdminSources,
    history: Arc<StatsHistory>,
}

impl FromRef<AdminState> for AdminSources {
    fn from_ref(state: &AdminState) -> AdminSources {
        state.sources.clone()
    }
}

impl FromRef<AdminState> for Arc<StatsHistory> {
    fn from_ref(state: &AdminState) -> Arc<StatsHistory> {
        state.history.clone()
    }
}

/// Binds `listen` and serves, as a task of `tasks`, until `stop` is notified (then
/// open requests may finish). Returns the bound address.
pub async fn start(
    listen: SocketAddr,
    sources: AdminSources,
    stop: Arc<Notify>,
    tasks: &mut JoinSet<()>,
) -> Result<SocketAddr, AdminError> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|source| AdminError::Bind { listen, source })?;
    let bound = listener.local_addr().map_err(AdminError::ListenerAddress)?;
    let history = StatsHistory::new();
    let app = Router::new()
        .route("/", get(|| async { Html(include_str!("dashboard.html")) }))
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/rules", get(api::rules))
        .route("/api/stats", get(api::stats))
        .route("/api/tail", get(api::tail))
        .route("/api/cluster", get(api::cluster))
        .with_state(AdminState { sources: sources.clone(), history: history.clone() });
    tasks.spawn(async move {
        let served = axum::serve(listener, app).with_graceful_shutdown(async move { stop.notified().await });
        // The history is sampled for as long as the endpoint serves.
        tokio::select! {
            served = served => if let Err(e) = served {
                tracing::error!(error = %e, "admin endpoint stopped");
            },
            _ = history.sample(&sources.metrics) => {}
        }
    });
    tracing::info!(%bound, "admin endpoint up: dashboard at /, /metrics, /healthz, /readyz, /api/{{rules,stats,tail,cluster}}");
    Ok(bound)
}

async fn metrics_text(State(sources): State<AdminSources>) -> impl IntoResponse {
    let text = prometheus::render(&sources.metrics, &sources.rules.load());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

/// 200 `ready` when every part is; otherwise 503 with one reason a line.
async fn readyz(State(sources): State<AdminSources>) -> (StatusCode, String) {
    let missing = sources.readiness.missing();
    match missing.is_empty() {
        true => (StatusCode::OK, "ready\n".to_string()),
        false => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready:\n{}\n", missing.join("\n"))),
    }
}
