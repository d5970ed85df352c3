//! The embedded MQTT broker: rumqttd's router and TCP server, with the hook tap as the
//! codec of every connection.
//!
//! rumqttd's router runs on its own thread (as rumqttd designs it); the servers' accept
//! loops and connection tasks run on our tokio runtime. Up to four listeners (TCP, TLS,
//! WebSocket, WebSocket over TLS) share one router and one tap; each serves MQTT 3.1.1
//! and MQTT 5: the tap picks the codec from the CONNECT's protocol level.

mod publishers;
mod tap;
pub mod wire;

use std::sync::Arc;

use rumqttd::{ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings, TlsConfig};

pub use publishers::PublisherIndex;
pub use tap::{TapCodec, TapShared};

use crate::access::Access;
use crate::config::BrokerConfig;
use crate::readiness::ReadyFlag;

/// Commit-log segment size per subscription filter; with `SEGMENT_COUNT` it bounds how
/// far a slow subscriber may lag before the broker drops its oldest messages.
const SEGMENT_SIZE: usize = 1024 * 1024;
const SEGMENT_COUNT: usize = 8;

/// A running broker. Dropping it does not stop rumqttd's router thread (rumqttd has no
/// way to), only the listener.
pub struct Broker {
    servers: Vec<tokio::task::JoinHandle<()>>,
    /// The listeners' part of `/readyz`.
    ready: Arc<ReadyFlag>,
}

impl Broker {
    /// Binds the listeners and starts accepting clients; every connection raises its hook
    /// events through `tap`. `ready` is set once every listener is bound, and cleared
    /// again if one stops or shutdown begins.
    pub async fn start(config: &BrokerConfig, tap: Arc<TapShared>, access: Arc<Access>, ready: Arc<ReadyFlag>) -> std::io::Result<Broker> {
        let router_config = RouterConfig {
            max_connections: config.max_connections,
            max_outgoing_packet_count: 200,
            max_segment_size: SEGMENT_SIZE,
            max_segment_count: SEGMENT_COUNT,
            ..RouterConfig::default()
        };
        let router_tx = Router::new(0, router_config).spawn();

        let mut connections = ConnectionSettings {
            connection_timeout_ms: config.connect_timeout_ms,
            max_payload_size: config.max_packet_size,
            max_inflight_count: config.max_inflight,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        };
        // Password hashes are slow on purpose: verify them on the blocking pool.
        connections.set_auth_handler(move |_client_id, username, password| {
            let access = access.clone();
            async move {
                tokio::task::spawn_blocking(move || access.authenticate(&username, &password))
                    .await
                    .unwrap_or(false)
            }
        });
        let tls = TlsConfig::Rustls {
            capath: path_text(&config.tls_client_ca),
            certpath: path_text(&config.tls_cert).unwrap_or_default(),
            keypath: path_text(&config.tls_key).unwrap_or_default(),
        };
        let listeners = [
            Some(("MQTT", config.listen, None, LinkType::Remote)),
            config.tls_listen.map(|a| ("MQTT over TLS", a, Some(tls.clone()), LinkType::Remote)),
            config.ws_listen.map(|a| ("MQTT over WebSocket", a, None, LinkType::Websocket)),
            config.wss_listen.map(|a| ("MQTT over WebSocket and TLS", a, Some(tls.clone()), LinkType::Websocket)),
        ];
        let mut servers = Vec::new();
        let mut unbound = Vec::new();
        for (name, listen, tls, link) in listeners.into_iter().flatten() {
            // rumqttd binds inside `Server::start` and only logs a bind failure; bind
            // once here first so a taken port is reported to the user as an error.
            drop(std::net::TcpListener::bind(listen).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen for {name} on {listen}: {e}"))
            })?);
            let settings = ServerSettings {
                name: name.to_string(),
                listen,
                tls,
                next_connection_delay_ms: 0,
                connections: connections.clone(),
            };
            let mut server = Server::new(settings, router_tx.clone(), TapCodec::new(tap.clone()));
            let server_ready = ready.clone();
            servers.push(tokio::spawn(async move {
                let outcome = server.start(link).await;
                let error = outcome.err().map_or_else(|| "no error given".to_string(), |e| e.to_string());
                tracing::error!(%listen, %error, "{name} listener stopped");
                server_ready.set_not_ready(format!("{name} listener on {listen} stopped ({error}); restart the gateway"));
            }));
            if wait_until_bound(listen).await {
                tracing::info!(%listen, "{name} listener up (MQTT 3.1.1 and 5)");
            } else {
                unbound.push(format!("{name} on {listen}"));
            }
        }
        match unbound.is_empty() {
            true => ready.set_ready(),
            false => ready.set_not_ready(format!("MQTT listener not bound after {LISTEN_WAIT:?}: {}; see the log", unbound.join(", "))),
        }
        Ok(Broker { servers, ready })
    }

    /// Stops accepting new connections; from now on the gateway is not ready.
    pub fn stop_accepting(&self) {
        self.ready.set_not_ready("shutting down: no new connections accepted");
        for server in &self.servers {
            server.abort();
        }
    }
}

fn path_text(path: &std::path::Path) -> Option<String> {
    (!path.as_os_str().is_empty()).then(|| path.display().to_string())
}

/// rumqttd binds in its own task; wait until its socket listens, so clients connecting
/// right after `start` returns are not refused. The kernel's socket table is read
/// rather than probed: binding a probe could take the port from rumqttd at the wrong
/// moment, and connecting would leave a half-open MQTT connection. Returns whether it
/// listens within `LISTEN_WAIT`.
async fn wait_until_bound(listen: std::net::SocketAddr) -> bool {
    let deadline = std::time::Instant::now() + LISTEN_WAIT;
    while std::time::Instant::now() < deadline {
        if listening(listen.port()) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    tracing::warn!(%listen, "MQTT listener not bound after {LISTEN_WAIT:?}");
    false
}

const LISTEN_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Whether a TCP socket listens on `port` (Linux: `/proc/net/tcp` and `tcp6`, whose
/// rows hold the local address as `<hex ip>:<hex port>` and state `0A` for LISTEN).
fn listening(port: u16) -> bool {
    let wanted = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|table| {
        std::fs::read_to_string(table).is_ok_and(|text| {
            text.lines().skip(1).any(|row| {
                let mut fields = row.split_whitespace();
                let local = fields.nth(1).unwrap_or_default();
                let state = fields.nth(1).unwrap_or_default();
                local.ends_with(&wanted) && state == "0A"
            })
        })
    })
}
