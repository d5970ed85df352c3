//! simulator: door locks and the business app commanding them, over MQTT, as in
//! `docs/scenario.md`. Each lock (client id = lock id) subscribes QoS 1 to
//! `devices/{id}/command`, reports its state to `devices/{id}/state` every reporting
//! interval and on every change, obeys signed unlock commands (verifies the sign, the
//! `ts` window and the nonce; then unlocks, reports, and locks again a few seconds
//! later) and drains its battery. The business app (client `--sender-id`) signs unlock
//! commands with each lock's secret from the config.
//!
//! Faults, each naming a lock, so every alarm and audit path can be seen:
//! `--low-battery`, `--bad-state`, `--silent` (the lock misbehaves); `--tampered`,
//! `--replay`, `--stale` (the business app sends that lock one such command once all
//! locks are subscribed; a replay is a valid command sent twice).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Parser;
use hookline_platform::lock::{new_process_id, unlock_command, CommandKind, LockFaults, SimulatedLock};
use hookline_platform::PlatformConfig;
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

#[derive(Parser)]
#[command(about = "Simulated door locks and a business app sending them signed unlock commands")]
struct Args {
    /// The platform config: lock ids, secrets, and `monitor.report_interval_secs`.
    #[arg(long, env = "PLATFORM_CONFIG", default_value = "platform.toml")]
    config: PathBuf,
    /// MQTT broker (the hookline gateway), host:port.
    #[arg(long, env = "SIMULATOR_MQTT", default_value = "127.0.0.1:1883")]
    mqtt: String,
    /// Lock ids to simulate (comma-separated); default: every lock in the config.
    #[arg(long, value_delimiter = ',')]
    locks: Vec<String>,
    /// Seconds between state reports when nothing changes; default: the config's
    /// `monitor.report_interval_secs`.
    #[arg(long)]
    report_interval_secs: Option<f64>,
    /// Seconds between the business app's valid unlock commands, round-robin over the
    /// locks without a lock fault (low battery, bad state, silent); 0: none.
    #[arg(long, default_value_t = 30.0)]
    unlock_every_secs: f64,
    /// Seconds a lock stays unlocked before it locks again (and reports it).
    #[arg(long, default_value_t = 5.0)]
    relock_after_secs: f64,
    /// A lock's tolerance for a command's `ts`, in seconds (as the auditor's window).
    #[arg(long, default_value_t = 300)]
    ts_window_secs: u64,
    /// MQTT client id of the business app sending commands.
    #[arg(long, default_value = "business-app-1")]
    sender_id: String,
    /// Stop after this many seconds (0: run until SIGINT/SIGTERM).
    #[arg(long, default_value_t = 0.0)]
    duration: f64,
    /// Locks that start with a low battery (15 %).
    #[arg(long, value_delimiter = ',')]
    low_battery: Vec<String>,
    /// Locks that report an abnormal `lock_state` (7).
    #[arg(long, value_delimiter = ',')]
    bad_state: Vec<String>,
    /// Locks that report once, then go silent.
    #[arg(long, value_delimiter = ',')]
    silent: Vec<String>,
    /// Locks that get one command whose sign does not match.
    #[arg(long, value_delimiter = ',')]
    tampered: Vec<String>,
    /// Locks that get one valid command twice (same nonce).
    #[arg(long, value_delimiter = ',')]
    replay: Vec<String>,
    /// How the business app sends its commands: `mqtt` (publishes to
    /// `devices/{id}/command` as client `--sender-id`) or `kafka` (produces to Kafka
    /// topic `device_commands`, key = lock id, with the `[kafka]` settings of the config;
    /// the gateway's downlink rule publishes them to the lock, and their `from` is
    /// `kafka:device_commands`).
    #[arg(long, value_enum, default_value_t = Via::Mqtt)]
    via: Via,
    /// Locks that get one correctly signed command an hour old.
    #[arg(long, value_delimiter = ',')]
    stale: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Via {
    Mqtt,
    Kafka,
}

/// Where the business app's commands go.
enum CommandSender {
    Mqtt(AsyncClient, JoinHandle<()>),
    Kafka(rdkafka::producer::FutureProducer),
}

impl CommandSender {
    async fn send(&self, lock_id: &str, payload: Vec<u8>) -> anyhow::Result<()> {
        match self {
            CommandSender::Mqtt(client, _) => {
                Ok(client.publish(format!("devices/{lock_id}/command"), QoS::AtLeastOnce, false, payload).await?)
            }
            CommandSender::Kafka(producer) => {
                let record = rdkafka::producer::FutureRecord::to("device_commands").key(lock_id).payload(&payload);
                producer
                    .send(record, Duration::from_secs(30))
                    .await
                    .map_err(|(e, _)| anyhow::anyhow!("cannot produce a command for {lock_id}: {e}"))?;
                Ok(())
            }
        }
    }

    async fn close(self) {
        if let CommandSender::Mqtt(client, driver) = self {
            disconnect(client, driver).await;
        }
    }
}

fn now_secs() -> i64 {
    hookline_platform::now_ms() / 1000
}

fn mqtt_options(broker: &str, client_id: &str) -> anyhow::Result<MqttOptions> {
    let (host, port) = broker.rsplit_once(':').context("--mqtt must be host:port")?;
    let port = port.parse().with_context(|| format!("--mqtt {broker}: bad port"))?;
    let mut options = MqttOptions::new(client_id, host, port);
    options.set_keep_alive(Duration::from_secs(30));
    Ok(options)
}

/// Timings shared by every lock.
#[derive(Clone, Copy)]
struct Timing {
    report_every: Duration,
    relock_after: Duration,
}

/// One lock's life: connect, subscribe (then say `ready`), report, obey, until `stop`.
async fn run_lock(
    mut lock: SimulatedLock,
    options: MqttOptions,
    timing: Timing,
    ready: mpsc::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let (client, mut packets, driver) = connect(options);
    let state_topic = format!("devices/{}/state", lock.id);
    let command_topic = format!("devices/{}/command", lock.id);
    let mut reports = tokio::time::interval(timing.report_every);
    let mut reported = false;
    let mut ready = Some(ready);
    let mut relock_at: Option<Instant> = None;
    loop {
        // A silent lock reports once, then never again.
        let may_report = !(lock.faults.silent && reported);
        let relock = async move {
            match relock_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        let report = tokio::select! {
            _ = stop.changed() => break,
            _ = reports.tick() => Some(lock.report("report", &new_process_id())),
            _ = relock => {
                relock_at = None;
                lock.relock();
                Some(lock.report("lock", &new_process_id()))
            }
            packet = packets.recv() => match packet {
                // A clean session forgets subscriptions: subscribe on every (re)connection.
                Some(Packet::ConnAck(_)) => {
                    client.subscribe(&command_topic, QoS::AtLeastOnce).await?;
                    None
                }
                Some(Packet::SubAck(_)) => {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(()).await;
                    }
                    None
                }
                Some(Packet::Publish(publish)) => match lock.obey(&publish.payload, now_secs()) {
                    Ok(command) => {
                        info!(lock_id = %lock.id, process_id = %command.process_id, "unlocked by command");
                        relock_at = Some(Instant::now() + timing.relock_after);
                        Some(lock.report("unlock", &command.process_id))
                    }
                    Err(refusal) => {
                        warn!(lock_id = %lock.id, %refusal, "command refused");
                        None
                    }
                },
                Some(_) => None,
                None => bail!("lock {}: MQTT event loop ended", lock.id),
            },
        };
        if let Some(payload) = report.filter(|_| may_report) {
            client.publish(&state_topic, QoS::AtLeastOnce, false, payload).await?;
            reported = true;
        }
    }
    disconnect(client, driver).await;
    Ok(())
}

/// A client whose event loop runs on its own task, forwarding incoming packets. The
/// loop's `poll` must not race timers in a `select!`: cancelled while connecting, it
/// starts a second connection with the same client id, and the broker drops the first.
fn connect(options: MqttOptions) -> (AsyncClient, mpsc::UnboundedReceiver<Packet>, JoinHandle<()>) {
    let client_id = options.client_id();
    let (client, mut eventloop) = AsyncClient::new(options, 100);
    let (packets, received) = mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(packet)) => {
                    // A client that does not read its packets (the business app) drops
                    // the receiver; the loop goes on until DISCONNECT.
                    let _ = packets.send(packet);
                }
                Ok(Event::Outgoing(Outgoing::Disconnect)) => {
                    // One more poll writes the DISCONNECT to the socket.
                    let _ = tokio::time::timeout(Duration::from_millis(200), eventloop.poll()).await;
                    return;
                }
                Ok(Event::Outgoing(_)) => {}
                Err(e) => {
                    // rumqttc reconnects on the next poll; wait a little first.
                    warn!(client_id, error = %e, "MQTT connection lost; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    });
    (client, received, driver)
}

/// Clean MQTT DISCONNECT, so the gateway sees a normal end and queued publishes go out.
async fn disconnect(client: AsyncClient, driver: JoinHandle<()>) {
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), driver).await;
}

/// The business app: the faulty commands first, then a valid unlock every
/// `unlock_every` round-robin over `healthy` locks, until `stop`.
async fn run_sender(args: &Args, config: &PlatformConfig, healthy: Vec<String>, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let sender = match args.via {
        Via::Mqtt => {
            // Its incoming packets are only acks: nothing to do with them.
            let (client, _, driver) = connect(mqtt_options(&args.mqtt, &args.sender_id)?);
            CommandSender::Mqtt(client, driver)
        }
        Via::Kafka => CommandSender::Kafka(hookline_platform::kafka::producer(&config.kafka)?),
    };
    let secret = |lock_id: &str| config.secret(lock_id).with_context(|| format!("lock {lock_id} has no secret in the config"));
    let send = |lock_id: String, payload: Vec<u8>| {
        let sender = &sender;
        async move { sender.send(&lock_id, payload).await }
    };
    let faulty = [(&args.tampered, CommandKind::Tampered), (&args.stale, CommandKind::Stale)];
    for (locks, kind) in faulty {
        for lock_id in locks {
            info!(lock_id, ?kind, "sending a faulty command");
            send(lock_id.clone(), serde_json::to_vec(&unlock_command(secret(lock_id)?, now_secs(), kind))?).await?;
        }
    }
    for lock_id in &args.replay {
        let payload = serde_json::to_vec(&unlock_command(secret(lock_id)?, now_secs(), CommandKind::Valid))?;
        info!(lock_id, "sending a command, then the same again (replay)");
        send(lock_id.clone(), payload.clone()).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        send(lock_id.clone(), payload).await?;
    }
    if args.unlock_every_secs > 0.0 && !healthy.is_empty() {
        let mut ticks = tokio::time::interval(Duration::from_secs_f64(args.unlock_every_secs));
        ticks.tick().await;
        for lock_id in healthy.iter().cycle() {
            tokio::select! {
                _ = stop.changed() => break,
                _ = ticks.tick() => {
                    let command = unlock_command(secret(lock_id)?, now_secs(), CommandKind::Valid);
                    info!(lock_id, process_id = %command.process_id, "sending unlock");
                    send(lock_id.clone(), serde_json::to_vec(&command)?).await?;
                }
            }
        }
    } else {
        let _ = stop.changed().await;
    }
    sender.close().await;
    Ok(())
}

async fn wait_for_stop(duration: f64) -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let run_for = async {
        match duration {
            0.0 => std::future::pending().await,
            secs => tokio::time::sleep(Duration::from_secs_f64(secs)).await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
        _ = run_for => {}
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    hookline_platform::init_logging();
    let args = Args::parse();
    let config = PlatformConfig::load(&args.config)?;
    let lock_ids = if args.locks.is_empty() { config.locks.keys().cloned().collect() } else { args.locks.clone() };
    let lock_faulty: Vec<&String> = [&args.low_battery, &args.bad_state, &args.silent].into_iter().flatten().collect();
    let command_faulty = [&args.tampered, &args.replay, &args.stale].into_iter().flatten();
    for lock_id in lock_ids.iter().chain(lock_faulty.iter().copied()).chain(command_faulty) {
        if config.secret(lock_id).is_none() {
            bail!("lock {lock_id} is not in {}: add [locks.\"{lock_id}\"] with its secret", args.config.display());
        }
    }
    let report_every = args.report_interval_secs.unwrap_or(config.monitor.report_interval_secs as f64);
    let timing =
        Timing { report_every: Duration::from_secs_f64(report_every), relock_after: Duration::from_secs_f64(args.relock_after_secs) };
    let (stop_tx, stop) = watch::channel(false);
    let (ready_tx, mut ready) = mpsc::channel(lock_ids.len().max(1));
    let mut locks = Vec::new();
    for lock_id in &lock_ids {
        let faults = LockFaults {
            low_battery: args.low_battery.contains(lock_id),
            bad_state: args.bad_state.contains(lock_id),
            silent: args.silent.contains(lock_id),
        };
        let secret = config.secret(lock_id).unwrap_or_default();
        let lock = SimulatedLock::new(lock_id, secret, faults, args.ts_window_secs);
        let options = mqtt_options(&args.mqtt, lock_id)?;
        locks.push(tokio::spawn(run_lock(lock, options, timing, ready_tx.clone(), stop.clone())));
    }
    // Commands sent before a lock subscribed would reach nobody.
    for _ in &lock_ids {
        tokio::time::timeout(Duration::from_secs(30), ready.recv())
            .await
            .with_context(|| format!("locks not subscribed within 30 s; is the gateway at {} up?", args.mqtt))?;
    }
    info!(locks = lock_ids.len(), "all locks connected and subscribed");
    let healthy = lock_ids.iter().filter(|id| !lock_faulty.contains(id)).cloned().collect();
    let sender = run_sender(&args, &config, healthy, stop.clone());
    let stopper = async {
        wait_for_stop(args.duration).await?;
        let _ = stop_tx.send(true);
        anyhow::Ok(())
    };
    let (sent, stopped) = tokio::join!(sender, stopper);
    sent?;
    stopped?;
    for lock in locks {
        lock.await??;
    }
    info!("simulation stopped");
    Ok(())
}
