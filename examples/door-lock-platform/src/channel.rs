//! Notification channels: how an owner is told about an unlock or an alarm. The channel
//! is a trait; `LogChannel` writes a log line, `WebhookChannel` POSTs the notification
//! as JSON over HTTP/1.1 and retries with exponential backoff. `AnyChannel` is the one
//! chosen by `channel.kind`.

use std::time::Duration;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper::Uri;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tracing::{info, warn};

use crate::config::{ChannelConfig, ChannelKind};

/// The longest wait between two webhook attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// One attempt (connect, send, answer) may take this long.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the owner is told.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub lock_id: String,
    pub owner: String,
    pub contact: String,
    /// `unlocked`, or an alarm condition such as `low_battery`.
    pub subject: String,
    pub text: String,
    /// When it happened (the envelope's `ts`), ms since the epoch.
    pub ts: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("webhook URL {url} is not http://host:port/path: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("webhook {url} failed {attempts} times, last: {last} (is the endpoint up?)")]
    Exhausted { url: String, attempts: u32, last: String },
}

// Used only on the consume loop's task, so the futures need not be Send.
#[allow(async_fn_in_trait)]
pub trait Channel {
    /// Delivers one notification; Err once the channel gave up.
    async fn send(&self, notification: &Notification) -> Result<(), ChannelError>;
}

/// Writes each notification as a log line; for the demo and for owners without a hook.
pub struct LogChannel;

impl Channel for LogChannel {
    async fn send(&self, n: &Notification) -> Result<(), ChannelError> {
        info!(lock_id = %n.lock_id, owner = %n.owner, contact = %n.contact, subject = %n.subject, "notify: {}", n.text);
        Ok(())
    }
}

/// POSTs each notification as JSON; any answer but 2xx, or no answer, is retried.
pub struct WebhookChannel {
    url: Uri,
    authority: String,
    attempts: u32,
    first_backoff: Duration,
}

impl WebhookChannel {
    pub fn new(config: &ChannelConfig) -> Result<WebhookChannel, ChannelError> {
        let bad = |reason: &str| ChannelError::BadUrl { url: config.webhook_url.clone(), reason: reason.into() };
        let url: Uri = config.webhook_url.parse().map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
        if url.scheme_str() != Some("http") {
            return Err(bad("only plain http is supported; put a TLS proxy in front for https"));
        }
        let host = url.host().ok_or_else(|| bad("no host"))?;
        let authority = format!("{host}:{}", url.port_u16().unwrap_or(80));
        Ok(WebhookChannel {
            url,
            authority,
            attempts: config.webhook_attempts.max(1),
            first_backoff: Duration::from_millis(config.webhook_backoff_ms),
        })
    }

    async fn post(&self, body: &[u8]) -> Result<(), String> {
        let stream = tokio::net::TcpStream::connect(&self.authority).await.map_err(|e| format!("connect: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        // The connection task ends when the exchange is over and `sender` is dropped.
        tokio::spawn(connection);
        let request = hyper::Request::post(self.url.path_and_query().map_or("/", |p| p.as_str()))
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::copy_from_slice(body)))
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        let status = response.status();
        // Read the body so the server sees a complete exchange.
        let _ = response.into_body().collect().await;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {status}"))
        }
    }
}

impl Channel for WebhookChannel {
    async fn send(&self, notification: &Notification) -> Result<(), ChannelError> {
        let body = serde_json::to_vec(notification).expect("a notification serializes");
        let mut backoff = self.first_backoff;
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            match tokio::time::timeout(ATTEMPT_TIMEOUT, self.post(&body)).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last = e,
                Err(_) => last = format!("no answer within {ATTEMPT_TIMEOUT:?}"),
            }
            if attempt < self.attempts {
                warn!(url = %self.url, attempt, error = %last, "webhook failed; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        Err(ChannelError::Exhausted { url: self.url.to_string(), attempts: self.attempts, last })
    }
}

/// The channel `channel.kind` names.
pub enum AnyChannel {
    Log(LogChannel),
    Webhook(WebhookChannel),
}

impl AnyChannel {
    pub fn from_config(config: &ChannelConfig) -> Result<AnyChannel, ChannelError> {
        Ok(match config.kind {
            ChannelKind::Log => AnyChannel::Log(LogChannel),
            ChannelKind::Webhook => AnyChannel::Webhook(WebhookChannel::new(config)?),
        })
    }
}

impl Channel for AnyChannel {
    async fn send(&self, notification: &Notification) -> Result<(), ChannelError> {
        match self {
            AnyChannel::Log(channel) => channel.send(notification).await,
            AnyChannel::Webhook(channel) => channel.send(notification).await,
        }
    }
}
