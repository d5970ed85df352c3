//! The connection's loop: one socket, the session's inbox, the client's router link when
//! it has one, the cluster's wake-ups and the keep-alive, served in turn; each turn's
//! work flushed in the order that keeps MQTT's promises (spool, router, client).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::FutureExt;
use rumqttd::protocol::{DisconnectReasonCode, Packet};
use rumqttd::Notification;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::end::End;
use super::ending::finish;
use super::handshake::Handshake;
use super::limits::{READ_MAX, READ_MIN};
use super::state::State;
use crate::broker::registry::CloseReason;
use crate::broker::Edge;
use crate::util::boxed::boxed;

/// Serves one accepted socket until its client is gone.
/// `identity` is what the client's verified TLS certificate names it, when
/// `broker.tls_identity` asks for that.
pub(in crate::broker) async fn serve<S>(edge: Arc<Edge>, mut stream: S, peer: SocketAddr, identity: Option<Arc<str>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let _live = edge.live_connection();
    let mut read = BytesMut::with_capacity(READ_MIN);
    let handshake = Handshake { edge: &edge, stream: &mut stream, peer, identity, read: &mut read };
    // The handshake's and the end's futures are large and short-lived: boxed (see
    // `boxed`), an idle connection's task does not carry their room.
    let Ok(Some(state)) = tokio::time::timeout(edge.limits.connect_timeout, boxed(|| handshake.run())).await else { return };
    let mut connection = Connection { stream, read, read_size: READ_MIN, state };
    let end = connection.run().await;
    boxed(|| finish(&mut connection.stream, &mut connection.state, end)).await;
}

pub(super) struct Connection<S> {
    pub(super) stream: S,
    pub(super) read: BytesMut,
    /// How much the next read asks for.
    pub(super) read_size: usize,
    pub(super) state: Box<State>,
}

/// What woke a connection up. It lives for one turn of the loop, on the stack: the size
/// of a notification costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
enum Wake {
    Close(CloseReason),
    Read(std::io::Result<usize>),
    Router(Option<Notification>),
    RouterGone,
    KeepAlive,
    Inbox,
    Mail,
    CaughtUp,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Connection<S> {
    /// Serves the client until the connection ends, and says how.
    pub(super) async fn run(&mut self) -> End {
        let mut last_read = tokio::time::Instant::now();
        loop {
            // Boxed: the flush's futures (the spool, the router, Kafka, the socket) are
            // not kept beside the wait's in every idle connection's task.
            if let Err(end) = boxed(|| self.flush()).await {
                return end;
            }
            // MQTT: a client silent for one and a half keep-alives is gone; 0 means never.
            let keep_alive = self.state.keep_alive;
            let deadline = last_read + Duration::from_millis(keep_alive as u64 * 1500);
            self.read.reserve(self.read_size);
            let mail = self.state.cluster.as_ref().map(|c| c.wake.clone());
            let mail = async {
                match mail {
                    Some(wake) => wake.notified().await,
                    None => std::future::pending().await,
                }
            };
            let cluster = self.state.edge.cluster.clone().filter(|_| self.state.claim_when_caught_up.is_some());
            let caught_up = async {
                match cluster {
                    Some(cluster) => cluster.caught_up().await,
                    None => std::future::pending().await,
                }
            };
            let link = self.state.link.as_mut();
            let router = async move {
                match link {
                    Some(link) => link.rx.next().await.map_or(Wake::RouterGone, Wake::Router),
                    None => std::future::pending().await,
                }
            };
            let inbox = self.state.inbox.clone();
            let hold = &self.state.claim.hold;
            let wake = tokio::select! {
                reason = hold.close_asked() => Wake::Close(reason),
                read = self.stream.read_buf(&mut self.read) => Wake::Read(read),
                wake = router => wake,
                _ = inbox.wake.notified() => Wake::Inbox,
                _ = tokio::time::sleep_until(deadline), if keep_alive > 0 => Wake::KeepAlive,
                _ = mail => Wake::Mail,
                _ = caught_up => Wake::CaughtUp,
            };
            let step = match wake {
                Wake::Close(reason) => Err(End::Closing(reason)),
                Wake::Read(Ok(0) | Err(_)) => Err(End::Closed),
                Wake::Read(Ok(n)) => {
                    last_read = tokio::time::Instant::now();
                    self.fit_read_size(n);
                    self.state.incoming(&mut self.read)
                }
                Wake::RouterGone => Err(End::Router(DisconnectReasonCode::UnspecifiedError)),
                Wake::Router(note) => self.router_notifications(note),
                Wake::KeepAlive => Err(End::KeepAlive),
                Wake::Inbox => {
                    self.state.take_inbox();
                    Ok(())
                }
                Wake::Mail => {
                    self.state.take_mail();
                    Ok(())
                }
                Wake::CaughtUp => {
                    boxed(|| self.state.join_cluster()).await;
                    Ok(())
                }
            };
            if let Err(end) = step {
                return end;
            }
        }
    }

    /// Takes what the router has for this client, as much as is there without waiting.
    fn router_notifications(&mut self, first: Option<Notification>) -> Result<(), End> {
        let mut next = first;
        while let Some(note) = next {
            self.state.notification(note)?;
            let Some(link) = self.state.link.as_mut() else { return Ok(()) };
            next = match link.rx.next().now_or_never() {
                Some(Ok(note)) => note,
                Some(Err(_)) => return Err(End::Router(DisconnectReasonCode::UnspecifiedError)),
                None => None,
            };
        }
        Ok(())
    }

    /// Reads ask for more while they come back full and for less when traffic drops; a
    /// read buffer much larger than the traffic needs is given back while it is empty.
    fn fit_read_size(&mut self, read: usize) {
        if read >= self.read_size {
            self.read_size = (self.read_size * 2).min(READ_MAX);
        } else if read < self.read_size / 4 {
            self.read_size = (self.read_size / 2).max(READ_MIN);
        }
    }

    /// Ends a batch: the spool gets its events before anything read is acknowledged,
    /// then the router its packets, then (a changed session in Kafka, in a cluster) the
    /// client its bytes.
    pub(super) async fn flush(&mut self) -> Result<(), End> {
        let state = &mut self.state;
        // Subscriptions ahead of the batch's other router packets go before the spool
        // write: a publish another client sends once this client's SUBSCRIBE is out then
        // finds the subscription, as on a broker handling packets in arrival order. Those
        // behind a publish keep their place: a client's own packets stay in order.
        let early = state.router_out.iter().take_while(|p| matches!(p, Packet::Subscribe(..) | Packet::Unsubscribe(..))).count();
        if early > 0 {
            let rest = state.router_out.split_off(early);
            state.send_router().await?;
            state.router_out = rest;
        }
        if state.spool_failed || state.edge.spool.flush(&mut state.batch).is_err() {
            // The spool logs and counts the failure; nothing of this batch is acknowledged.
            return Err(End::SpoolRefused);
        }
        // After the spool has the batch's `message.acked` events.
        state.write_session();
        state.send_router().await?;
        state.session_written().await;
        if !state.out.is_empty() {
            let written = async {
                self.stream.write_all(&state.out).await?;
                self.stream.flush().await
            };
            written.await.map_err(|_| End::Closed)?;
            state.out.clear();
            if state.out.capacity() > READ_MAX {
                state.out = BytesMut::new();
            }
        }
        if self.read.is_empty() && self.read.capacity() > 2 * self.read_size {
            self.read = BytesMut::new();
        }
        if std::mem::take(&mut state.wake_router) {
            if let Some(link) = state.link.as_mut() {
                link.rx.wake().await.map_err(|_| End::Router(DisconnectReasonCode::UnspecifiedError))?;
            }
        }
        Ok(())
    }
}
