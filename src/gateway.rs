//! The gateway assembled: broker -> spool -> rule workers -> sink, and its lifecycle
//! (start in dependency order, graceful shutdown).
//!
//! Start order matters: the admin endpoint comes first, so `/healthz` answers and
//! `/readyz` says what is still missing while the rest starts; the sink and the rules
//! are ready before the broker accepts its first client, so no event arrives before
//! there is somewhere to route it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::access::Access;
use crate::admin::AdminSources;
use crate::broker::Broker;
use crate::config::{SinkKind, ValidConfig};
use crate::metrics::{Metrics, Outcome};
use crate::readiness::Readiness;
use crate::rules::{Dispatcher, RuleEngine, RuleSet, RuleWatcher, SharedRuleSet};
use crate::sink::{FileSink, KafkaSink, Sink};
use crate::spool::Spool;
use crate::tail::Tail;
use crate::worker::{Worker, WorkerState};

/// How long shutdown waits for undelivered records; what is left stays in the spool
/// for the next start.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

pub struct Gateway {
    broker: Broker,
    _watcher: RuleWatcher,
    rules: SharedRuleSet,
    sink: Arc<dyn Sink>,
    metrics: Arc<Metrics>,
    spool: Arc<Spool>,
    workers: Vec<Arc<WorkerState>>,
    listen: SocketAddr,
    admin: Option<SocketAddr>,
}

impl Gateway {
    /// Starts the gateway on a configuration `Config::validate` accepted.
    pub async fn start(config: ValidConfig) -> anyhow::Result<Gateway> {
        let metrics = Arc::new(Metrics::default());
        let rules: SharedRuleSet = Default::default();
        let tail = Arc::new(Tail::default());
        let readiness = Arc::new(Readiness::default());
        let rules_ready = readiness.flag(format!("rules: the first load of {} has not finished", config.rules.dir.display()));
        let listeners_ready = readiness.flag("MQTT listeners: not bound yet");

        let admin = match config.admin.enabled {
            true => {
                let sources = AdminSources { metrics: metrics.clone(), rules: rules.clone(), readiness, tail: tail.clone() };
                Some(crate::admin::start(config.admin.listen, sources).await?)
            }
            false => None,
        };

        let sink: Arc<dyn Sink> = match config.sink() {
            SinkKind::File => Arc::new(FileSink::open(&config.data, metrics.clone())?),
            SinkKind::Kafka => Arc::new(
                KafkaSink::new(&config.kafka, metrics.clone()).context("cannot create the Kafka producer (check the [kafka] settings)")?,
            ),
        };

        let engine = RuleEngine::new(&config.rules).context("cannot start the WebAssembly engine")?;
        let public_key = match &config.rules.public_key {
            None => None,
            Some(path) => Some(crate::rules::signature::read_public_key(path).map_err(anyhow::Error::msg)?),
        };
        let watcher = RuleWatcher::start(
            &config.rules.dir,
            Duration::from_millis(config.rules.reload_debounce_ms),
            public_key,
            engine.clone(),
            metrics.clone(),
            rules.clone(),
        )?;
        rules_ready.set_ready();

        let (spool, readers) = Spool::open(&config.buffer, &config.data, config.rule_workers(), metrics.clone())?;
        let worker_count = readers.len();
        let node: Arc<str> = config.node.as_str().into();
        let mut workers = Vec::with_capacity(worker_count);
        for (i, reader) in readers.into_iter().enumerate() {
            let state = Arc::new(WorkerState::default());
            let worker = Worker {
                reader,
                dispatcher: Dispatcher::new(engine.clone(), rules.clone(), metrics.clone()),
                sink: sink.clone(),
                node: node.clone(),
                metrics: metrics.clone(),
                state: state.clone(),
                tail: tail.clone(),
            };
            std::thread::Builder::new()
                .name(format!("hookline-rules-{i}"))
                .spawn(move || worker.run())
                .context("cannot start a rule worker thread")?;
            workers.push(state);
        }

        let access = Access::load(&config.auth)?;
        access.watch(&config.auth);
        let broker = Broker::start(&config.broker, spool.clone(), metrics.clone(), access, listeners_ready).await?;
        let listen = broker.local_addrs()[0];
        tokio::spawn(log_stats(metrics.clone(), spool.clone()));
        tracing::info!(
            sink = %sink.describe(),
            rules_dir = %config.rules.dir.display(),
            workers = worker_count,
            node = %config.node,
            "hookline gateway running"
        );
        Ok(Gateway { broker, _watcher: watcher, rules, sink, metrics, spool, workers, listen, admin })
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The rule set in force right now.
    pub fn rules(&self) -> Arc<RuleSet> {
        self.rules.load_full()
    }

    /// Where the MQTT TCP listener is bound.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Closes a client's connection (MQTT 5 clients hear DISCONNECT 0x98); false when
    /// that client is not connected here.
    pub fn disconnect_client(&self, client_id: &str) -> bool {
        self.broker.disconnect(client_id)
    }

    /// Where `/metrics`, the API and the dashboard are served, when the admin endpoint is
    /// enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Stops accepting clients and closes connections at their next packet, lets the
    /// workers deliver what the spool holds, and waits for the sink, up to
    /// `SHUTDOWN_GRACE`. Whatever is still undelivered then is already in the spool,
    /// committed up to what was delivered: the next start resumes from there, so an
    /// early end loses nothing.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        tracing::info!("shutting down: no new connections or publishes, delivering what the spool holds");
        self.broker.stop_accepting();
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while Instant::now() < deadline && !self.drained() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1));
        let sink = self.sink.clone();
        let flushed = tokio::task::spawn_blocking(move || sink.flush(remaining)).await?;
        // Deliveries that ended during the flush are marked by the workers' next look;
        // then write the marks down.
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.spool.persist_delivered();
        self.spool.update_gauges();
        tracing::info!(stats = ?self.metrics.snapshot(), "final counters");
        self.broker.stop().await;
        let backlog = self.metrics.spool_backlog_bytes.load(Ordering::Relaxed);
        match flushed {
            Err(error) => {
                tracing::warn!(%error, backlog_bytes = backlog, "records left undelivered stay in the spool; the next start delivers them")
            }
            Ok(()) if backlog > 0 => {
                tracing::warn!(backlog_bytes = backlog, "records left undelivered stay in the spool; the next start delivers them")
            }
            Ok(()) => {}
        }
        Ok(())
    }

    /// Every event written to the spool is delivered and committed.
    pub fn drained(&self) -> bool {
        self.workers.iter().all(|w| w.drained.load(Ordering::SeqCst))
    }
}

/// Refreshes the spool gauges every second; one info line every 10 s while traffic
/// flows.
async fn log_stats(metrics: Arc<Metrics>, spool: Arc<Spool>) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    let mut last = (0, 0);
    for tick in 0u64.. {
        interval.tick().await;
        spool.update_gauges();
        if tick % 10 != 0 {
            continue;
        }
        let now = (Metrics::get(&metrics.rule_calls), metrics.records.total(Outcome::Delivered));
        if now != last {
            tracing::info!(
                connections = metrics.connections.load(Ordering::Relaxed),
                rule_calls = now.0 - last.0,
                records_delivered = now.1 - last.1,
                records_failed = metrics.records.total(Outcome::Failed),
                spool_backlog_bytes = metrics.spool_backlog_bytes.load(Ordering::Relaxed),
                spool_dropped = Metrics::get(&metrics.spool_dropped),
                "last 10 s"
            );
            last = now;
        }
    }
}

/// Catches SIGINT (Ctrl-C) and SIGTERM from now on; the returned future resolves on the
/// first. Call it before starting the gateway: a signal that arrives while it starts
/// must shut it down cleanly, not kill the process.
pub fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot catch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot catch SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
