//! What can go wrong starting the broker: binding its listeners and reading their TLS
//! files. Each error names the config key and the address or file, and the fix where
//! there is one to suggest.

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio_rustls::rustls;
use tokio_rustls::rustls::server::VerifierBuilderError;

/// Why the broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen for {transport} on {listen} ({key}); is the port taken?")]
    Bind { transport: &'static str, listen: SocketAddr, key: &'static str, source: std::io::Error },
    #[error(transparent)]
    ListenerAddress(std::io::Error),
    #[error("a TLS listener needs broker.tls_cert and broker.tls_key (PEM files)")]
    TlsFilesMissing,
    #[error("{key}: cannot open {path}")]
    OpenPem { key: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{key}: {path} is not valid PEM")]
    InvalidPem { key: &'static str, path: PathBuf, source: std::io::Error },
    #[error("broker.tls_key: no private key in {path}")]
    NoPrivateKey { path: PathBuf },
    #[error("the TLS listener's protocol versions")]
    ProtocolVersions(#[source] rustls::Error),
    #[error("broker.tls_client_ca: a certificate in {path} is not a usable CA")]
    UnusableCa { path: PathBuf, source: rustls::Error },
    #[error("broker.tls_client_ca: {path} holds no usable CA")]
    NoUsableCa { path: PathBuf, source: VerifierBuilderError },
    #[error("broker.tls_key does not fit broker.tls_cert ({path})")]
    KeyMismatch { path: PathBuf, source: rustls::Error },
    /// The router's refusal comes as text: the message carries it.
    #[error("cannot open the gateway's own link to the MQTT router: {0}")]
    RouterLink(String),
}
