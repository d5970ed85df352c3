//! The gateway assembled: broker -> spool -> rule workers -> sink, and its lifecycle
//! (start in dependency order, graceful shutdown).
//!
//! Start order matters: the admin endpoint comes first, so `/healthz` answers and
//! `/readyz` says what is still missing while the rest starts; the sink and the rules
//! are ready before the broker accepts its first client, so no event arrives before
//! there is somewhere to route it.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::access::Access;
use crate::admin::AdminSources;
use crate::broker::Broker;
use crate::cluster::Cluster;
use crate::config::{Destination, ValidConfig};
use crate::downlink::DownlinkSource;
use crate::live_tail::Tail;
use crate::metrics::{Metrics, Outcome};
use crate::rules::{Dispatcher, RuleEngine, RuleSet, RuleWatcher, SharedRuleSet};
use crate::sink::{Boundary, FileSink, KafkaSink, RabbitMqSink, Sink, Sinks};
use crate::spool::Spool;
use crate::util::readiness::Readiness;
use crate::util::watch::FileWatch;
use crate::worker::{Worker, WorkerState};

/// How long a shutdown takes at most, whatever Kafka or RabbitMQ do; what is left
/// undelivered stays in the spool for the next start.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The end of it, kept for closing the connections, the cluster's last writes and the
/// threads: the workers deliver until the rest has begun.
const CLOSING_TIME: Duration = Duration::from_secs(2);
/// How long the admin endpoint's open requests (a dashboard's live tail) may take to
/// end at shutdown before they are cut.
const ADMIN_GRACE: Duration = Duration::from_millis(500);

/// A running gateway. It owns every thread and task it starts: `shutdown` stops and
/// waits for all of them (see `docs/configuration.md`, "Embedding"), except rumqttd's router thread,
/// which rumqttd 0.20 gives no way to stop.
pub struct Gateway {
    broker: Broker,
    /// Consuming from Kafka for devices, when Kafka is configured.
    downlink: Option<DownlinkSource>,
    /// This node's part in its cluster, when Kafka is configured.
    cluster: Option<Arc<Cluster>>,
    workers: Workers,
    /// Held for their threads; dropping them stops and joins them.
    rule_watch: RuleWatcher,
    access_watch: Option<FileWatch>,
    /// The admin endpoint and the stats logger.
    tasks: JoinSet<()>,
    stop_admin: Arc<Notify>,
    rules: SharedRuleSet,
    sinks: Arc<Sinks>,
    metrics: Arc<Metrics>,
    spool: Arc<Spool>,
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

        // The admin endpoint starts first; it shows the cluster once the node joins.
        let joined: Arc<OnceLock<Arc<Cluster>>> = Arc::default();
        let mut tasks = JoinSet::new();
        let stop_admin = Arc::new(Notify::new());
        let admin = match config.admin.enabled {
            true => {
                let sources =
                    AdminSources { metrics: metrics.clone(), rules: rules.clone(), readiness, tail: tail.clone(), cluster: joined.clone() };
                Some(crate::admin::start(config.admin.listen, sources, stop_admin.clone(), &mut tasks).await?)
            }
            false => None,
        };

        let mut built = Vec::with_capacity(config.destinations().len());
        for destination in config.destinations() {
            let sink: Arc<dyn Sink> = match destination {
                Destination::File => Arc::new(FileSink::open(&config.data).with_context(|| {
                    format!("cannot open the file sink's {} under {} (data)", crate::sink::RECORDS_FILE, config.data.display())
                })?),
                Destination::Kafka => {
                    Arc::new(KafkaSink::new(&config.kafka).context("cannot create the Kafka producer (check the [kafka] settings)")?)
                }
                Destination::RabbitMq(name) => Arc::new(RabbitMqSink::start(name, &config.sink.rabbitmq[name])?),
            };
            built.push((destination.name().to_string(), sink));
        }
        let sinks = Arc::new(Sinks::new(built));

        let engine = RuleEngine::new(&config.rules, sinks.names()).context("cannot start the WebAssembly engine")?;
        let public_key = match &config.rules.public_key {
            None => None,
            Some(path) => Some(crate::rules::signature::read_public_key(path).map_err(anyhow::Error::msg)?),
        };
        let rule_watch = RuleWatcher::start(
            &config.rules.dir,
            Duration::from_millis(config.rules.reload_debounce_ms),
            public_key,
            engine.clone(),
            metrics.clone(),
            rules.clone(),
        )?;
        rules_ready.set_ready();

        let (spool, readers) = Spool::open(&config.buffer, &config.data, config.rule_workers(), metrics.clone())?;
        let boundary = Boundary::new(metrics.clone());
        let node: Arc<str> = config.node.as_str().into();
        let mut workers = Workers { sinks: sinks.clone(), running: Vec::with_capacity(readers.len()) };
        for (i, reader) in readers.into_iter().enumerate() {
            let state = Arc::new(WorkerState::default());
            let worker = Worker {
                reader,
                dispatcher: Dispatcher::new(engine.clone(), rules.clone(), metrics.clone()),
                sinks: sinks.clone(),
                boundary: boundary.clone(),
                node: node.clone(),
                metrics: metrics.clone(),
                state: state.clone(),
                tail: tail.clone(),
            };
            let thread = std::thread::Builder::new()
                .name(format!("hookline-rules-{i}"))
                .spawn(move || worker.run())
                .context("cannot start a rule worker thread")?;
            workers.running.push((state, Some(thread)));
        }

        // A login answered after the client's handshake timed out would be lost: checks
        // that cannot start within half of it are refused as busy.
        let access = Access::load(&config.auth, Duration::from_millis(config.broker.connect_timeout_ms as u64) / 2)?;
        let access_watch = access.watch(&config.auth)?;
        // With Kafka, the node joins its cluster before it takes a client, without
        // waiting for Kafka: a CONNECT waits for the cluster within `cluster.claim_wait_ms`.
        let cluster = match config.kafka.bootstrap_servers.is_empty() {
            false => Some(Cluster::join(&config.kafka, &config.cluster, &config.node, metrics.clone())?),
            true => None,
        };
        if let Some(cluster) = &cluster {
            let _ = joined.set(cluster.clone());
        }
        let broker = Broker::start(&config.broker, spool.clone(), metrics.clone(), access, cluster.clone(), listeners_ready).await?;
        let listen = broker.local_addrs()[0];
        let downlink = match &cluster {
            None => None,
            Some(cluster) => Some(DownlinkSource::start(
                &config.kafka,
                &config.downlink,
                cluster.clone(),
                Dispatcher::new(engine.clone(), rules.clone(), metrics.clone()),
                rules.clone(),
                broker.downlink(),
                metrics.clone(),
            )?),
        };
        tasks.spawn(log_stats(metrics.clone(), spool.clone(), cluster.clone()));
        tracing::info!(
            destinations = %sinks.describe(),
            rules_dir = %config.rules.dir.display(),
            workers = workers.running.len(),
            node = %config.node,
            "hookline gateway running"
        );
        Ok(Gateway {
            broker,
            downlink,
            cluster,
            workers,
            rule_watch,
            access_watch,
            tasks,
            stop_admin,
            rules,
            sinks,
            metrics,
            spool,
            listen,
            admin,
        })
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

    /// Where every MQTT listener is bound, in the order TCP, TLS, WebSocket, WSS (those
    /// configured).
    pub fn listener_addrs(&self) -> &[SocketAddr] {
        self.broker.local_addrs()
    }

    /// Every bound listener by name: `mqtt`, then `tls`, `ws` and `wss` where configured,
    /// and `admin` when the admin endpoint is enabled.
    pub fn bound_addrs(&self) -> Vec<(&'static str, SocketAddr)> {
        self.broker.named_addrs().chain(self.admin.map(|admin| ("admin", admin))).collect()
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
    /// workers deliver what the spool holds for up to `SHUTDOWN_GRACE`, then closes
    /// the connections, the spool and every thread and task the gateway started, and
    /// waits for them. Whatever is still undelivered is in the spool, committed up to
    /// what was delivered: the next start resumes from there, so an early end loses
    /// nothing.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        tracing::info!("shutting down: no new connections or publishes, delivering what the spool holds");
        self.broker.stop_accepting();
        if let Some(downlink) = self.downlink.take() {
            tokio::task::spawn_blocking(move || downlink.stop()).await?;
        }
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        let deliver_by = deadline - CLOSING_TIME;
        let workers = std::mem::take(&mut self.workers.running);
        for (state, _) in &workers {
            let _ = state.stop_by.set(deliver_by);
        }
        let mut joined = tokio::task::spawn_blocking(move || Workers::join(workers));
        if tokio::time::timeout_at(deliver_by.into(), &mut joined).await.is_err() {
            // A worker waits for room in a sink that does not drain (Kafka away).
            self.sinks.close();
            joined.await?;
        }
        let left = |share: u32| deadline.saturating_duration_since(Instant::now()) / share;
        self.broker.stop(left(2)).await;
        if let Some(cluster) = self.cluster.take() {
            // The sessions' last states (away since now) reach Kafka before the node leaves;
            // the sinks' producers, dropped last, take up to half a second more.
            let wait = left(1).saturating_sub(Duration::from_millis(600));
            tokio::task::spawn_blocking(move || cluster.leave(wait)).await?;
        }
        self.spool.close();
        self.spool.update_gauges();
        self.stop_admin.notify_one();
        if tokio::time::timeout(ADMIN_GRACE, self.tasks.join_next()).await.is_err() {
            self.tasks.abort_all();
        }
        // The stats logger never ends by itself.
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        tracing::info!(stats = ?self.metrics.snapshot(), "final counters");
        let backlog = self.metrics.spool_backlog_bytes.load(Ordering::Relaxed);
        if backlog > 0 {
            tracing::warn!(backlog_bytes = backlog, "records left undelivered stay in the spool; the next start delivers them");
        }
        // Threads of the watches and the sink's (librdkafka's) end as they are dropped.
        let Gateway { rule_watch, access_watch, sinks, .. } = self;
        tokio::task::spawn_blocking(move || drop((rule_watch, access_watch, sinks))).await?;
        Ok(())
    }

    /// Every event written to the spool is delivered and committed.
    pub fn drained(&self) -> bool {
        self.workers.running.iter().all(|(state, _)| state.drained.load(Ordering::SeqCst))
    }
}

/// The rule worker threads. Dropped without `Gateway::shutdown` (a start that failed
/// half-way, an embedder that drops the gateway), it stops them at once and waits.
struct Workers {
    sinks: Arc<Sinks>,
    running: Vec<(Arc<WorkerState>, Option<JoinHandle<()>>)>,
}

impl Workers {
    fn join(mut running: Vec<(Arc<WorkerState>, Option<JoinHandle<()>>)>) {
        for (_, thread) in &mut running {
            if let Some(thread) = thread.take() {
                if thread.join().is_err() {
                    tracing::error!("a rule worker thread panicked; its shard resumes from its last commit at the next start");
                }
            }
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        if self.running.is_empty() {
            return;
        }
        for (state, _) in &self.running {
            let _ = state.stop_by.set(Instant::now());
        }
        self.sinks.close();
        Workers::join(std::mem::take(&mut self.running));
    }
}

/// Refreshes the spool and cluster gauges every second; one info line every 10 s while
/// traffic flows.
async fn log_stats(metrics: Arc<Metrics>, spool: Arc<Spool>, cluster: Option<Arc<Cluster>>) {
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    let mut last = (0, 0);
    for tick in 0u64.. {
        interval.tick().await;
        spool.update_gauges();
        if let Some(cluster) = &cluster {
            let (sessions, connected) = cluster.session_counts();
            metrics.cluster_sessions.store(sessions as i64, Ordering::Relaxed);
            metrics.cluster_sessions_connected.store(connected as i64, Ordering::Relaxed);
            metrics.cluster_mail_pending.store(cluster.mailboxes().pending() as i64, Ordering::Relaxed);
        }
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
