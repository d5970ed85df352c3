//! The MQTT listeners: TCP, TLS, WebSocket and WebSocket over TLS, each bound by the
//! edge itself (so its backlog is ours to set and readiness is the bound socket), each
//! handing every accepted socket to its own connection task.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_tungstenite::tungstenite::handshake::server::{Callback, ErrorResponse, Request, Response};
use async_tungstenite::tungstenite::http::HeaderValue;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use ws_stream_tungstenite::WsStream;

use super::{connection, BrokerError, Edge};
use crate::config::{BrokerConfig, TlsIdentity};
use crate::internal_events::{AcceptFailed, HandshakeFailed, InternalEvent};
use crate::util::boxed::boxed;

/// What a listener speaks under MQTT.
#[derive(Clone)]
pub enum Transport {
    Tcp,
    Tls(TlsAcceptor, TlsIdentity),
    WebSocket,
    WebSocketTls(TlsAcceptor, TlsIdentity),
}

impl Transport {
    pub fn name(&self) -> &'static str {
        match self {
            Transport::Tcp => "MQTT",
            Transport::Tls(..) => "MQTT over TLS",
            Transport::WebSocket => "MQTT over WebSocket",
            Transport::WebSocketTls(..) => "MQTT over WebSocket and TLS",
        }
    }

    /// Its short name in `hookline run --addresses-file`: `mqtt`, `tls`, `ws` or `wss`.
    pub fn key(&self) -> &'static str {
        match self {
            Transport::Tcp => "mqtt",
            Transport::Tls(..) => "tls",
            Transport::WebSocket => "ws",
            Transport::WebSocketTls(..) => "wss",
        }
    }
}

/// The listeners the configuration asks for, bound; errors name the key and the
/// address.
pub fn bind_all(config: &BrokerConfig) -> Result<Vec<(TcpListener, Transport)>, BrokerError> {
    let tls = || tls_acceptor(config);
    let mut wanted = vec![(config.listen, Transport::Tcp, "broker.listen")];
    if let Some(listen) = config.tls_listen {
        wanted.push((listen, Transport::Tls(tls()?, config.tls_identity), "broker.tls_listen"));
    }
    if let Some(listen) = config.ws_listen {
        wanted.push((listen, Transport::WebSocket, "broker.ws_listen"));
    }
    if let Some(listen) = config.wss_listen {
        wanted.push((listen, Transport::WebSocketTls(tls()?, config.tls_identity), "broker.wss_listen"));
    }
    wanted
        .into_iter()
        .map(|(listen, transport, key)| {
            let listener = bind(listen, config.listen_backlog).map_err(|source| BrokerError::Bind {
                transport: transport.name(),
                listen,
                key,
                source,
            })?;
            Ok((listener, transport))
        })
        .collect()
}

fn bind(listen: SocketAddr, backlog: u32) -> std::io::Result<TcpListener> {
    let socket = if listen.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
    socket.set_reuseaddr(true)?;
    socket.bind(listen)?;
    socket.listen(backlog)
}

/// Accepts clients until the task is aborted, one task per connection, while their
/// sockets fit the open-file limit (see `capacity`); beyond it they wait in the listen
/// queue until a socket closes.
pub async fn accept(edge: Arc<Edge>, listener: TcpListener, transport: Transport) {
    loop {
        let Ok(permit) = edge.sockets.clone().acquire_owned().await else { return };
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, most likely: wait for some to be freed.
                AcceptFailed { error: &error }.emit();
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = socket.set_nodelay(true);
        let (edge, transport) = (edge.clone(), transport.clone());
        tokio::spawn(async move {
            // Held until the socket closes, with this task.
            let _permit = permit;
            // An idle connection's task is as large as the futures it awaits (see
            // `boxed`): TCP's, the common one, is served in it; the others, whose streams
            // and handshakes are much larger, in a box of their own.
            match transport {
                Transport::Tcp => connection::serve(edge, socket, peer, None).await,
                transport => boxed(|| serve_over(transport, edge, socket, peer)).await,
            }
        });
    }
}

/// Serves a client over TLS or WebSocket: the transport's handshake, then MQTT.
async fn serve_over(transport: Transport, edge: Arc<Edge>, socket: TcpStream, peer: SocketAddr) {
    let timeout = edge.limits.connect_timeout;
    let outcome = match transport {
        Transport::Tcp => return connection::serve(edge, socket, peer, None).await,
        Transport::Tls(tls, identity) => match tokio::time::timeout(timeout, tls.accept(socket)).await {
            Ok(Ok(stream)) => {
                let identity = certificate_identity(stream.get_ref().1.peer_certificates(), identity);
                return connection::serve(edge, stream, peer, identity).await;
            }
            Ok(Err(error)) => error.to_string(),
            Err(_) => "TLS handshake timed out".to_string(),
        },
        Transport::WebSocket => match tokio::time::timeout(timeout, websocket(socket)).await {
            Ok(Ok(stream)) => return connection::serve(edge, stream, peer, None).await,
            Ok(Err(error)) => error,
            Err(_) => "WebSocket handshake timed out".to_string(),
        },
        Transport::WebSocketTls(tls, identity) => {
            let handshake = async {
                let stream = tls.accept(socket).await.map_err(|e| e.to_string())?;
                let identity = certificate_identity(stream.get_ref().1.peer_certificates(), identity);
                Ok::<_, String>((websocket(stream).await?, identity))
            };
            match tokio::time::timeout(timeout, handshake).await {
                Ok(Ok((stream, identity))) => return connection::serve(edge, stream, peer, identity).await,
                Ok(Err(error)) => error,
                Err(_) => "WebSocket over TLS handshake timed out".to_string(),
            }
        }
    };
    HandshakeFailed { metrics: &edge.metrics, peer, error: &outcome }.emit();
}

/// The identity `wanted` of the client's certificate (rustls has verified it against
/// `broker.tls_client_ca`), if it has one.
fn certificate_identity(certificates: Option<&[CertificateDer<'_>]>, wanted: TlsIdentity) -> Option<Arc<str>> {
    let der = certificates?.first()?;
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let name = match wanted {
        TlsIdentity::None => return None,
        TlsIdentity::CommonName => certificate.subject().iter_common_name().next()?.as_str().ok()?.to_string(),
        TlsIdentity::SanDns => certificate.subject_alternative_name().ok()??.value.general_names.iter().find_map(|name| match name {
            x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
            _ => None,
        })?,
    };
    Some(name.into())
}

/// Answers a WebSocket upgrade offering the `mqtt` subprotocol, and gives its binary
/// messages as a byte stream.
async fn websocket<S>(socket: S) -> Result<WsStream<async_tungstenite::tokio::TokioAdapter<S>>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + Sync + 'static,
{
    let socket = async_tungstenite::tokio::accept_hdr_async(socket, MqttSubprotocol).await.map_err(|e| e.to_string())?;
    Ok(WsStream::new(socket))
}

/// MQTT over WebSocket: the server names the `mqtt` subprotocol in its answer.
struct MqttSubprotocol;

impl Callback for MqttSubprotocol {
    fn on_request(self, _request: &Request, mut response: Response) -> Result<Response, ErrorResponse> {
        response.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
        Ok(response)
    }
}

fn tls_acceptor(config: &BrokerConfig) -> Result<TlsAcceptor, BrokerError> {
    let (Some(cert_file), Some(key_file)) = (&config.tls_cert, &config.tls_key) else {
        return Err(BrokerError::TlsFilesMissing);
    };
    let certs = read_pem(cert_file, "broker.tls_cert", |r| rustls_pemfile::certs(r).collect::<Result<Vec<_>, _>>())?;
    let key = read_pem(key_file, "broker.tls_key", |r| rustls_pemfile::private_key(r))?
        .ok_or_else(|| BrokerError::NoPrivateKey { path: key_file.clone() })?;
    // The provider named, not the process default, which another TLS user in the same
    // process could have set otherwise (or left unset: rustls would then panic).
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(BrokerError::ProtocolVersions)?;
    let builder = match &config.tls_client_ca {
        None => builder.with_no_client_auth(),
        Some(ca_file) => {
            let mut roots = RootCertStore::empty();
            let cas = read_pem(ca_file, "broker.tls_client_ca", |r| rustls_pemfile::certs(r).collect::<Result<Vec<_>, _>>())?;
            for ca in cas {
                roots.add(ca).map_err(|source| BrokerError::UnusableCa { path: ca_file.clone(), source })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|source| BrokerError::NoUsableCa { path: ca_file.clone(), source })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let server = builder.with_single_cert(certs, key).map_err(|source| BrokerError::KeyMismatch { path: cert_file.clone(), source })?;
    Ok(TlsAcceptor::from(Arc::new(server)))
}

fn read_pem<T>(
    path: &Path,
    key: &'static str,
    parse: impl FnOnce(&mut dyn std::io::BufRead) -> std::io::Result<T>,
) -> Result<T, BrokerError> {
    let file = std::fs::File::open(path).map_err(|source| BrokerError::OpenPem { key, path: path.to_path_buf(), source })?;
    parse(&mut std::io::BufReader::new(file)).map_err(|source| BrokerError::InvalidPem { key, path: path.to_path_buf(), source })
}
