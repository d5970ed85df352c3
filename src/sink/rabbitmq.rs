//! The RabbitMQ sink: one AMQP 0-9-1 connection (lapin) with one channel in confirm
//! mode, fed by all rule workers through a bounded queue and driven by one task.
//!
//! Every record is published persistent (delivery mode 2) and mandatory, to the
//! route's exchange with the route's key as routing key; the broker's confirm resolves
//! its `Delivery`: an ack delivers it, a return (no queue bound for that routing key)
//! or a missing exchange fails it for good.
//! When the connection or the channel breaks, a confirm takes longer than
//! `confirm_timeout_ms` (time the broker says it blocks the connection does not count)
//! or the broker cannot take a message (nack), the task reconnects with a growing pause
//! and publishes every unconfirmed record again, in order, before anything newer: as
//! librdkafka does for Kafka. Meanwhile records wait in the bounded queue, then the
//! workers wait, and the spool holds what comes.

use std::collections::{HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind, PublisherConfirm};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::{Delivery, DestinationCheck, Record, Sink, SinkError};
use crate::config::{ExchangeType, RabbitMqConfig};
use crate::internal_events::{DestinationAway, InternalEvent, LogLimit};

/// How long connecting (TCP, TLS, AMQP handshake, channel) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Pauses between connection attempts, doubling from the first to the last.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LAST_RETRY: Duration = Duration::from_secs(10);
/// How long closing a connection may take before it is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// AMQP's limit on a routing key (a short string).
const MAX_ROUTING_KEY: usize = 255;

pub struct RabbitMqSink {
    queue: mpsc::Sender<Message>,
    runtime: tokio::runtime::Handle,
    /// Set by `close`: a `send` waiting for room gives up.
    closed: Arc<(AtomicBool, Notify)>,
    /// Records handed over and not yet resolved, for `flush`.
    unresolved: Arc<AtomicUsize>,
    describe: String,
}

/// One record on its way: what to publish and the delivery its confirm resolves.
struct Message {
    exchange: ShortString,
    routing_key: ShortString,
    payload: Vec<u8>,
    properties: BasicProperties,
    delivery: Counted,
}

/// A `Delivery` counted in `unresolved` until it is resolved or dropped.
struct Counted {
    delivery: Option<Delivery>,
    unresolved: Arc<AtomicUsize>,
}

impl Counted {
    fn delivered(mut self) {
        if let Some(delivery) = self.delivery.take() {
            delivery.delivered();
        }
    }

    fn failed(mut self, error: &SinkError) {
        if let Some(delivery) = self.delivery.take() {
            delivery.failed(error);
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.unresolved.fetch_sub(1, Ordering::Release);
    }
}

/// A published message waiting for its confirm.
struct InFlight {
    confirm: PublisherConfirm,
    message: Message,
    /// When its wait for the confirm began (or began again after a block).
    since: Instant,
}

/// What the task knows of its destination.
struct Link {
    name: String,
    config: RabbitMqConfig,
    /// The URI without its password, for logs.
    shown: String,
    tls: lapin::tcp::OwnedTLSConfig,
    log: LogLimit,
}

/// Why a connection's publishing ended.
enum Ended {
    /// The connection or its channel broke; what was unconfirmed waits to be published
    /// again.
    Broken(String),
    /// The sink was dropped: the queue is closed, and what was in flight had its
    /// confirm time.
    Closed,
}

/// RabbitMQ's rule for exchange names (AMQP 0-9-1's `exchange-name`): at most 127 bytes of
/// `a-z A-Z 0-9 - _ . :`; empty names the default exchange (routing key = queue name).
fn check_exchange(exchange: &str) -> Result<(), &'static str> {
    let legal = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':');
    match exchange {
        e if e.len() > 127 => Err("RabbitMQ exchange name over 127 bytes"),
        e if !e.bytes().all(legal) => Err("RabbitMQ exchange name with a character other than a-z A-Z 0-9 - _ . :"),
        _ => Ok(()),
    }
}

/// Why a RabbitMQ sink could not start: only its settings can stop it, as it reaches
/// the broker later.
#[derive(Debug, thiserror::Error)]
pub enum RabbitMqStartError {
    /// lapin says what is wrong with the URI as text.
    #[error("sink.{name}.uri is not an AMQP URI: {reason}")]
    Uri { name: String, reason: String },
    #[error("cannot read sink.{name}.ca_file {path}")]
    CaFile { name: String, path: PathBuf, source: std::io::Error },
}

impl RabbitMqSink {
    /// Starts the publishing task for destination `name`; it connects in the background
    /// (the broker may be away at start: records wait in the spool meanwhile).
    pub fn start(name: &str, config: &RabbitMqConfig) -> Result<RabbitMqSink, RabbitMqStartError> {
        let uri: lapin::uri::AMQPUri = config.uri.parse().map_err(|reason| RabbitMqStartError::Uri { name: name.to_string(), reason })?;
        let vhost = uri.vhost.replace('/', "%2f");
        let shown = format!("{}://{}:{}/{vhost}", uri.scheme, uri.authority.host, uri.authority.port);
        let cert_chain = match &config.ca_file {
            None => None,
            Some(path) => Some(std::fs::read_to_string(path).map_err(|source| RabbitMqStartError::CaFile {
                name: name.to_string(),
                path: path.clone(),
                source,
            })?),
        };
        let link = Link {
            name: name.to_string(),
            config: config.clone(),
            shown: shown.clone(),
            tls: lapin::tcp::OwnedTLSConfig { identity: None, cert_chain },
            log: LogLimit::new(),
        };
        let (queue, receiver) = mpsc::channel(config.max_in_flight);
        let runtime = tokio::runtime::Handle::current();
        // Ends once the sink is dropped (its queue closes): it closes the connection.
        runtime.spawn(run(receiver, link));
        Ok(RabbitMqSink {
            queue,
            runtime,
            closed: Arc::new((AtomicBool::new(false), Notify::new())),
            unresolved: Arc::new(AtomicUsize::new(0)),
            describe: format!("RabbitMQ {shown}"),
        })
    }
}

/// The record's AMQP properties: persistent, its headers as AMQP headers (bytes as
/// long strings), JSON content type for the envelope.
fn properties(record: &Record<'_>) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in record.headers {
        headers.insert(ShortString::from(*name), AMQPValue::LongString(LongString::from(value.to_vec())));
    }
    let properties = BasicProperties::default().with_delivery_mode(2).with_app_id("hookline".into()).with_headers(headers);
    match record.envelope {
        true => properties.with_content_type("application/json".into()),
        false => properties,
    }
}

impl Sink for RabbitMqSink {
    fn send(&self, record: Record<'_>, delivery: Delivery) {
        if record.key.len() > MAX_ROUTING_KEY {
            let error = SinkError::final_(format!(
                "RabbitMQ routing key of {} bytes for exchange {:?}: AMQP allows {MAX_ROUTING_KEY}",
                record.key.len(),
                record.topic
            ));
            return delivery.failed(&error);
        }
        self.unresolved.fetch_add(1, Ordering::AcqRel);
        let message = Message {
            exchange: record.topic.into(),
            routing_key: String::from_utf8_lossy(record.key).into_owned().into(),
            payload: record.value.to_vec(),
            properties: properties(&record),
            delivery: Counted { delivery: Some(delivery), unresolved: self.unresolved.clone() },
        };
        let message = match self.queue.try_send(message) {
            Ok(()) => return,
            Err(mpsc::error::TrySendError::Full(message)) => message,
            // The task is gone (the runtime stops): the delivery drops unresolved.
            Err(mpsc::error::TrySendError::Closed(_)) => return,
        };
        // Waits for room; `close`, before or meanwhile, gives up, leaving the delivery
        // unresolved.
        let (closed, woken) = &*self.closed;
        self.runtime.block_on(async {
            let notified = woken.notified();
            tokio::pin!(notified);
            // Registered before the flag is read, so a `close` in between still wakes it.
            notified.as_mut().enable();
            if closed.load(Ordering::Acquire) {
                return;
            }
            tokio::select! {
                _ = self.queue.send(message) => {}
                _ = notified => {}
            }
        });
    }

    fn flush(&self, timeout: Duration) -> Result<(), SinkError> {
        let deadline = std::time::Instant::now() + timeout;
        while self.unresolved.load(Ordering::Acquire) > 0 {
            if std::time::Instant::now() >= deadline {
                let left = self.unresolved.load(Ordering::Acquire);
                return Err(SinkError::retriable(format!("{left} RabbitMQ records still unconfirmed after waiting {timeout:?}")));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
    }

    fn close(&self) {
        self.closed.0.store(true, Ordering::Release);
        self.closed.1.notify_waiters();
    }

    fn destination_check(&self) -> DestinationCheck {
        check_exchange
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

/// The publishing task: connect, publish until something breaks, pause, again, until
/// the sink is dropped. What a broken connection left unconfirmed is published again
/// first, in order, on the next one: records of a device never overtake each other,
/// whatever breaks (a failure handed back to the workers would be resent only after
/// later records had gone on). Meanwhile records wait in the queue, and once it is
/// full, in the spool.
async fn run(mut queue: mpsc::Receiver<Message>, link: Link) {
    let mut pause = FIRST_RETRY;
    let mut unconfirmed: VecDeque<Message> = VecDeque::new();
    loop {
        match tokio::time::timeout(CONNECT_TIMEOUT, connect(&link)).await {
            Ok(Ok((connection, channel))) => {
                tracing::info!(destination = %link.name, uri = %link.shown, republished = unconfirmed.len(), "connected to RabbitMQ");
                pause = FIRST_RETRY;
                let ended = publish_until_broken(&connection, &channel, &mut queue, &mut unconfirmed, &link).await;
                // A broken connection may never answer its close.
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, connection.close(200, "hookline stops or reconnects".into())).await;
                match ended {
                    Ended::Closed => return,
                    Ended::Broken(why) => tracing::warn!(
                        destination = %link.name,
                        uri = %link.shown,
                        %why,
                        unconfirmed = unconfirmed.len(),
                        "RabbitMQ connection lost; the unconfirmed records are published again, in order, once it is back"
                    ),
                }
            }
            Ok(Err(error)) => link.warn(&format!("cannot connect to RabbitMQ: {error}")),
            Err(_) => link.warn(&format!("cannot connect to RabbitMQ within {CONNECT_TIMEOUT:?}")),
        }
        let retry_at = Instant::now() + pause;
        while Instant::now() < retry_at {
            // Dropped meanwhile: what waits stays unresolved, sent again at the next start.
            if queue.is_closed() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        pause = (pause * 2).min(LAST_RETRY);
    }
}

impl Link {
    fn warn(&self, what: &str) {
        DestinationAway { log: &self.log, destination: &self.name, uri: &self.shown, what }.emit();
    }
}

async fn connect(link: &Link) -> lapin::Result<(Connection, Channel)> {
    let mut properties = ConnectionProperties::default();
    for (key, value) in &link.config.properties {
        properties = properties.with_client_property(key.as_str().into(), value.clone().into());
    }
    let runtime = lapin::runtime::default_runtime()?;
    let connection = Connection::connect_with_config(&link.config.uri, properties, link.tls.clone(), runtime).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok((connection, channel))
}

/// Publishes `unconfirmed` (left by the last connection), then what the queue brings,
/// resolving confirms in order, until the connection or channel breaks (what is
/// unconfirmed then goes back to `unconfirmed`) or the queue closes.
async fn publish_until_broken(
    connection: &Connection,
    channel: &Channel,
    queue: &mut mpsc::Receiver<Message>,
    unconfirmed: &mut VecDeque<Message>,
    link: &Link,
) -> Ended {
    let confirm_timeout = Duration::from_millis(link.config.confirm_timeout_ms);
    let max_in_flight = link.config.max_in_flight;
    let mut publishing =
        Publishing { connection, channel, link, confirm_timeout, in_flight: VecDeque::new(), exchanges: Exchanges::default() };
    while let Some(message) = unconfirmed.pop_front() {
        if let Err((why, message)) = publishing.publish_one(message).await {
            return publishing.broken(why, Some(message), unconfirmed);
        }
    }
    let mut blocked_logged = false;
    loop {
        let oldest_due = publishing.in_flight.front().map(|oldest| oldest.since + confirm_timeout);
        tokio::select! {
            biased;
            confirmed = async { (&mut publishing.in_flight.front_mut().expect("guarded").confirm).await }, if !publishing.in_flight.is_empty() => {
                blocked_logged = false;
                if let Err(why) = publishing.confirmed(confirmed) {
                    return publishing.broken(why, None, unconfirmed);
                }
            }
            _ = tokio::time::sleep_until(oldest_due.unwrap_or_else(Instant::now)), if oldest_due.is_some() => {
                if connection.status().blocked() {
                    if !blocked_logged {
                        tracing::warn!(destination = %link.name, uri = %link.shown, "RabbitMQ blocks this connection (memory or disk alarm): records wait in the spool until it lifts");
                        blocked_logged = true;
                    }
                    let now = Instant::now();
                    publishing.in_flight.iter_mut().for_each(|waiting| waiting.since = now);
                    continue;
                }
                return publishing.broken(format!("no confirm within {confirm_timeout:?}"), None, unconfirmed);
            }
            message = queue.recv(), if publishing.in_flight.len() < max_in_flight => {
                let Some(mut message) = message else {
                    publishing.finish().await;
                    return Ended::Closed;
                };
                // Publish what is already queued before looking at confirms again.
                loop {
                    if let Err((why, message)) = publishing.publish_one(message).await {
                        return publishing.broken(why, Some(message), unconfirmed);
                    }
                    if publishing.in_flight.len() >= max_in_flight {
                        break;
                    }
                    match queue.try_recv() {
                        Ok(next) => message = next,
                        Err(_) => break,
                    }
                }
            }
        }
    }
}

/// One connection's publishing: the messages waiting for their confirms, in order.
struct Publishing<'a> {
    connection: &'a Connection,
    channel: &'a Channel,
    link: &'a Link,
    confirm_timeout: Duration,
    in_flight: VecDeque<InFlight>,
    exchanges: Exchanges,
}

impl Publishing<'_> {
    /// Publishes one message (its exchange checked first). A message refused for good
    /// is resolved as failed; `Err` gives the message back when the connection or the
    /// channel broke.
    async fn publish_one(&mut self, message: Message) -> Result<(), (String, Message)> {
        let confirm_timeout = self.confirm_timeout;
        let checking = self.exchanges.check(self.connection, &message.exchange, self.link);
        match tokio::time::timeout(confirm_timeout, checking).await {
            Ok(Ok(())) => {}
            Ok(Err(Refusal::Final(refused))) => {
                message.delivery.failed(&refused);
                return Ok(());
            }
            Ok(Err(Refusal::Broken(why))) => return Err((why, message)),
            Err(_) => {
                return Err((format!("no answer to checking exchange {:?} within {confirm_timeout:?}", message.exchange.as_str()), message))
            }
        }
        let publishing = self.channel.basic_publish(
            message.exchange.clone(),
            message.routing_key.clone(),
            BasicPublishOptions { mandatory: true, immediate: false },
            &message.payload,
            message.properties.clone(),
        );
        match tokio::time::timeout(confirm_timeout, publishing).await {
            Ok(Ok(confirm)) => {
                self.in_flight.push_back(InFlight { confirm, message, since: Instant::now() });
                Ok(())
            }
            Ok(Err(error)) => Err((format!("cannot publish: {error}"), message)),
            Err(_) => Err((format!("a publish not written within {confirm_timeout:?}"), message)),
        }
    }

    /// The oldest message's confirm came: resolves it, and those after it whose confirms
    /// are already in. `Err` when a confirm says the channel broke or the broker could
    /// not take a message (nack): that message stays first in line.
    fn confirmed(&mut self, confirmed: lapin::Result<Confirmation>) -> Result<(), String> {
        let mut confirmed = Some(confirmed);
        while let Some(oldest) = self.in_flight.front_mut() {
            let Some(confirmation) = confirmed.take().or_else(|| (&mut oldest.confirm).now_or_never()) else { break };
            let returned = match confirmation {
                Ok(Confirmation::Ack(returned)) => returned,
                Ok(Confirmation::Nack(_)) => return Err("RabbitMQ could not take a message (nack)".to_string()),
                Ok(Confirmation::NotRequested) => return Err("the channel is not in confirm mode".to_string()),
                Err(error) => return Err(format!("the channel closed: {error}")),
            };
            let InFlight { message, .. } = self.in_flight.pop_front().expect("just seen");
            match returned {
                None => message.delivery.delivered(),
                Some(returned) => message.delivery.failed(&SinkError::final_(format!(
                    "RabbitMQ exchange {:?} routes routing key {:?} to no queue ({} {}): bind a queue for it",
                    message.exchange.as_str(),
                    message.routing_key.as_str(),
                    returned.reply_code,
                    returned.reply_text
                ))),
            }
        }
        Ok(())
    }

    /// The sink is gone: lets what is in flight be confirmed, briefly.
    async fn finish(&mut self) {
        let _ = tokio::time::timeout(self.confirm_timeout, async {
            while let Some(oldest) = self.in_flight.front_mut() {
                let confirmed = (&mut oldest.confirm).await;
                if self.confirmed(confirmed).is_err() {
                    return;
                }
            }
        })
        .await;
    }

    /// The connection or its channel broke: what is unconfirmed (those in flight, then
    /// `failed`, the message whose publish broke) goes first in line for the next
    /// connection, in order.
    fn broken(self, why: String, failed: Option<Message>, unconfirmed: &mut VecDeque<Message>) -> Ended {
        if let Some(message) = failed {
            unconfirmed.push_front(message);
        }
        for waiting in self.in_flight.into_iter().rev() {
            unconfirmed.push_front(waiting.message);
        }
        Ended::Broken(why)
    }
}

/// The exchanges known to exist on this connection: each is checked (or declared) on
/// its own channel before the first publish to it, since publishing to a missing one
/// would close the publishing channel with everything in flight.
#[derive(Default)]
struct Exchanges {
    known: HashSet<ShortString>,
}

impl Exchanges {
    async fn check(&mut self, connection: &Connection, exchange: &ShortString, link: &Link) -> Result<(), Refusal> {
        // The default exchange always exists and cannot be declared.
        if exchange.as_str().is_empty() || self.known.contains(exchange) {
            return Ok(());
        }
        let config = &link.config;
        let options = ExchangeDeclareOptions {
            passive: !config.declare_exchanges,
            durable: config.exchange_durable,
            ..ExchangeDeclareOptions::default()
        };
        let kind = match config.exchange_type {
            ExchangeType::Direct => ExchangeKind::Direct,
            ExchangeType::Fanout => ExchangeKind::Fanout,
            ExchangeType::Topic => ExchangeKind::Topic,
            ExchangeType::Headers => ExchangeKind::Headers,
        };
        // A refused declaration closes its channel, so each check has its own.
        let channel = connection.create_channel().await.map_err(|e| Refusal::Broken(format!("cannot open a channel: {e}")))?;
        let declared = channel.exchange_declare(exchange.clone(), kind, options, FieldTable::default()).await;
        let _ = channel.close(200, "checked".into()).await;
        match declared {
            Ok(()) => {
                self.known.insert(exchange.clone());
                Ok(())
            }
            Err(error) if config.declare_exchanges => Err(Refusal::Final(SinkError::final_(format!(
                "RabbitMQ refused to declare exchange {:?} as {:?}, durable {}: {error}",
                exchange.as_str(),
                config.exchange_type,
                config.exchange_durable
            )))),
            Err(error) => Err(Refusal::Final(SinkError::final_(format!(
                "RabbitMQ exchange {:?} does not exist ({error}): declare it, or set sink.{}.declare_exchanges = true",
                exchange.as_str(),
                link.name
            )))),
        }
    }
}

/// Why an exchange check did not let a message through.
enum Refusal {
    /// The broker refuses the exchange: the message fails for good.
    Final(SinkError),
    /// The connection broke while checking.
    Broken(String),
}
