//! rumqttd 0.20 with no hooks: the baseline hookline's broker is compared against.
//!
//! The same router and server settings as `src/broker/mod.rs` (router limits, segment
//! sizes, connection settings, a multi-threaded tokio runtime), but rumqttd's own MQTT
//! 3.1.1 codec (`V4`) instead of the hook tap, and nothing behind it: no hook queue, no
//! rules, no sink. The difference between the two is the cost of the gateway.
//!
//! ```text
//! cargo run --release --example bare_rumqttd -- --listen 127.0.0.1:18830
//! ```
//!
//! Runs until killed (SIGINT/SIGTERM).

use clap::Parser;
use rumqttd::protocol::v4::V4;
use rumqttd::{ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings};

#[derive(Parser)]
struct Args {
    /// MQTT listener address.
    #[arg(long, default_value = "127.0.0.1:18830")]
    listen: std::net::SocketAddr,
    /// Largest accepted MQTT packet, as hookline's `broker.max_packet_size`.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_packet_size: usize,
    /// As hookline's `broker.max_inflight`.
    #[arg(long, default_value_t = 100)]
    max_inflight: usize,
    /// As hookline's `broker.max_connections`.
    #[arg(long, default_value_t = 10_000)]
    max_connections: usize,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("bare-rumqttd-io").build()?;
    runtime.block_on(async move {
        // Identical to hookline's `Broker::start`.
        let router_config = RouterConfig {
            max_connections: args.max_connections,
            max_outgoing_packet_count: 200,
            max_segment_size: 1024 * 1024,
            max_segment_count: 8,
            ..RouterConfig::default()
        };
        let router_tx = Router::new(0, router_config).spawn();
        let settings = ServerSettings {
            name: "mqtt".to_string(),
            listen: args.listen,
            tls: None,
            next_connection_delay_ms: 0,
            connections: ConnectionSettings {
                connection_timeout_ms: 5_000,
                max_payload_size: args.max_packet_size,
                max_inflight_count: args.max_inflight,
                auth: None,
                external_auth: None,
                dynamic_filters: true,
            },
        };
        let mut server = Server::new(settings, router_tx, V4);
        eprintln!("bare rumqttd (no hooks) listening on {}", args.listen);
        tokio::select! {
            result = server.start(LinkType::Remote) => result.map_err(|e| anyhow::anyhow!("listener stopped: {e}"))?,
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm() => {}
        }
        anyhow::Ok(())
    })
}

async fn sigterm() {
    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(mut term) => {
            term.recv().await;
        }
        Err(_) => std::future::pending().await,
    }
}
