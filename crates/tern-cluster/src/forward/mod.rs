//! Node-to-node traffic outside Raft: published messages forwarded to the
//! nodes that have matching subscribers, and session handover
//! (proto/peer.proto).
//!
//! **Forwarding.** A node that receives a PUBLISH matches its own
//! sessions and the replicated route table; for each other node with a
//! match it calls [`Forwarder::send`] once. Each destination has one
//! [`PeerLink`] task holding one long-lived gRPC stream, which sends
//! whatever has accumulated as one batch: order is kept per sender, so the
//! messages of one publisher on one topic arrive in order on every node.
//! A message that asks for an acknowledgement (QoS 1 and 2) completes its
//! callback once the receiving node has queued it as durably as its store
//! promises; the publisher's PUBACK or PUBREC waits for that. If the link
//! breaks, every unacknowledged message fails (the publisher is not
//! acknowledged and publishes again), and messages for a node that cannot
//! be reached fail at once (QoS 0 ones are dropped and counted) until a
//! reconnection, tried with a growing pause, succeeds.
//!
//! **Handover** moves a session to the node its client reconnected to, in
//! two steps so that no message is lost in between: `Start` stops the
//! client's connection on the old node and returns the session, while the
//! old node keeps receiving messages for it; the new node restores the
//! session and announces its routes; `Finish` removes the session from the
//! old node and returns what was queued meanwhile.
//!
//! The broker supplies the receiving side as a [`PeerHandler`].

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesOrdered, StreamExt};
use tokio::sync::mpsc;
use tonic::transport::Endpoint;
use tonic::{Request, Response, Status, Streaming};

use crate::NodeId;

mod proto {
    #![allow(missing_docs, unused_qualifications, clippy::all, clippy::pedantic)]
    tonic::include_proto!("tern.peer");
}

use proto::peer_client::PeerClient;
use proto::peer_server::{Peer, PeerServer};

/// Most messages in one batch on the wire.
const MAX_BATCH: usize = 512;
/// How long a connection attempt to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Pauses between reconnection attempts, doubling up to the maximum.
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// A handover call gives up after this long.
const HANDOVER_TIMEOUT: Duration = Duration::from_secs(20);
/// An HTTP/2 ping goes to the peer this often, and a link whose ping is not
/// answered within the timeout counts as broken: a peer cut off by the
/// network sends no reset, and until the link is known to be broken the
/// publishers of the messages on it wait for their PUBACK (in order, so
/// even for messages no other node had to confirm). Pings are answered by
/// the peer's HTTP/2 layer, not by its session store: a slow disk there
/// does not break the link.
const PING_INTERVAL: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// A message as forwarded to, or received from, another node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message record (tern_session::store::transfer).
    pub message: Bytes,
    /// For the node's non-shared matching subscriptions.
    pub plain: bool,
    /// Shared groups (`$share/{name}/{filter}`) that chose the node.
    pub groups: Vec<String>,
}

/// Called once with the receiving node's answer: `Ok` once it queued the
/// message durably, or why not.
pub type AckCallback = Box<dyn FnOnce(Result<(), String>) + Send>;

/// Which step of a handover; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoverStep {
    /// Stop the client's connection and send the session.
    Start,
    /// Remove the session and send what was queued since `Start`.
    Finish,
}

/// The old node's answer to a handover step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handover {
    /// The session bundle (`Start`), if the old node had the session.
    pub session: Option<Bytes>,
    /// Message records queued since `Start` (`Finish`).
    pub messages: Vec<Bytes>,
}

/// The broker's side of peer traffic.
pub trait PeerHandler: Send + Sync + 'static {
    /// Queues a message forwarded by node `from`. Called in the order the
    /// sender sent them: queue it before returning; the future completes
    /// once it is durable (or with why it was refused).
    fn deliver(&self, from: NodeId, delivery: Delivery) -> BoxFuture<'static, Result<(), String>>;

    /// One step of handing the session of `client_id` over to node `to`.
    fn handover(
        &self,
        client_id: String,
        to: NodeId,
        step: HandoverStep,
    ) -> BoxFuture<'static, Result<Handover, String>>;
}

/// Why a handover call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandoverError {
    /// The old node has no known address.
    #[error("node {0} is not a member of the cluster; its sessions cannot be taken over")]
    UnknownNode(NodeId),
    /// The call itself failed.
    #[error("node {node} could not be reached to hand a session over: {detail}")]
    Unreachable {
        /// The old node.
        node: NodeId,
        /// What went wrong.
        detail: String,
    },
    /// The old node refused or failed.
    #[error("node {node} failed to hand the session over: {detail}")]
    Refused {
        /// The old node.
        node: NodeId,
        /// Its explanation.
        detail: String,
    },
}

/// The gRPC service receiving peer traffic, to serve next to Raft's.
/// When `shutdown` turns true, the forwarding streams end (the gRPC
/// server's graceful shutdown waits for open streams, and these never end
/// by themselves).
pub fn service(
    handler: Arc<dyn PeerHandler>,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> tonic::service::Routes {
    tonic::service::Routes::new(
        PeerServer::new(PeerService { handler, shutdown })
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX),
    )
}

struct PeerService {
    handler: Arc<dyn PeerHandler>,
    shutdown: tokio::sync::watch::Receiver<bool>,
}

type AckStream = futures::stream::BoxStream<'static, Result<proto::ForwardAck, Status>>;

#[tonic::async_trait]
impl Peer for PeerService {
    type ForwardStream = AckStream;

    async fn forward(
        &self,
        request: Request<Streaming<proto::ForwardBatch>>,
    ) -> Result<Response<Self::ForwardStream>, Status> {
        let inbound = request.into_inner();
        let (acks, receiver) = mpsc::channel(1024);
        tokio::spawn(receive(
            Arc::clone(&self.handler),
            inbound,
            acks,
            self.shutdown.clone(),
        ));
        let stream = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|ack| (Ok(ack), receiver))
        });
        Ok(Response::new(stream.boxed()))
    }

    async fn handover(
        &self,
        request: Request<proto::HandoverRequest>,
    ) -> Result<Response<proto::HandoverReply>, Status> {
        let request = request.into_inner();
        let step = if request.finish {
            HandoverStep::Finish
        } else {
            HandoverStep::Start
        };
        let reply = match self
            .handler
            .handover(request.client_id, request.to, step)
            .await
        {
            Ok(handover) => proto::HandoverReply {
                found: handover.session.is_some(),
                session: handover.session.unwrap_or_default(),
                messages: handover.messages,
                error: String::new(),
            },
            Err(error) => proto::HandoverReply {
                error,
                ..proto::HandoverReply::default()
            },
        };
        Ok(Response::new(reply))
    }
}

/// Completes once `shutdown` turns true or its sender is gone.
async fn stopping(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here.
    let _stopped = shutdown.wait_for(|stop| *stop).await.is_ok();
}

/// Delivers what one peer's stream carries, in order, and acknowledges
/// each message that asked for it once it is durable, in order.
async fn receive(
    handler: Arc<dyn PeerHandler>,
    mut inbound: Streaming<proto::ForwardBatch>,
    acks: mpsc::Sender<proto::ForwardAck>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut waiting = FuturesOrdered::new();
    loop {
        tokio::select! {
            () = stopping(&mut shutdown) => break,
            batch = inbound.next() => {
                let batch = match batch {
                    Some(Ok(batch)) => batch,
                    Some(Err(status)) => {
                        tracing::debug!(%status, "a peer's forwarding stream ended");
                        break;
                    }
                    None => break,
                };
                for forwarded in batch.messages {
                    let delivery = Delivery {
                        message: forwarded.message,
                        plain: forwarded.plain,
                        groups: forwarded.groups,
                    };
                    let done = handler.deliver(batch.from, delivery);
                    if forwarded.ack {
                        let seq = forwarded.seq;
                        waiting.push_back(async move { (seq, done.await) });
                    }
                }
            }
            Some((seq, result)) = waiting.next(), if !waiting.is_empty() => {
                let ack = proto::ForwardAck { seq, error: result.err().unwrap_or_default() };
                if acks.send(ack).await.is_err() {
                    break;
                }
            }
        }
    }
    // The sender is gone: whatever it still waits for has failed on its
    // side already. Let the deliveries finish without acknowledging.
    while waiting.next().await.is_some() {}
}

/// Where a node can be reached: the cluster address of a member.
pub type Resolver = Arc<dyn Fn(NodeId) -> Option<String> + Send + Sync>;

/// Counts of the forwarding side, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ForwardStats {
    /// Messages sent to other nodes.
    pub sent: u64,
    /// Messages that could not be sent (node unreachable, link broken).
    pub failed: u64,
}

/// Sends messages to other nodes, one [`PeerLink`] per destination.
pub struct Forwarder {
    me: NodeId,
    resolve: Resolver,
    links: Mutex<HashMap<NodeId, mpsc::UnboundedSender<Outgoing>>>,
    stats: Arc<Mutex<ForwardStats>>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

struct Outgoing {
    delivery: Delivery,
    ack: Option<AckCallback>,
}

impl Forwarder {
    /// A forwarder for node `me`, finding peers with `resolve`. Call it
    /// inside the tokio runtime: links are tasks.
    pub fn new(me: NodeId, resolve: Resolver) -> Self {
        Self {
            me,
            resolve,
            links: Mutex::new(HashMap::new()),
            stats: Arc::default(),
        }
    }

    /// Sends `delivery` to `node`, after everything sent to it before.
    /// Never waits: `ack`, if given, is called with the outcome.
    pub fn send(&self, node: NodeId, delivery: Delivery, ack: Option<AckCallback>) {
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        let link = links.entry(node).or_insert_with(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            let link = PeerLink {
                me: self.me,
                node,
                resolve: Arc::clone(&self.resolve),
                stats: Arc::clone(&self.stats),
            };
            tokio::spawn(link.run(receiver));
            sender
        });
        if let Err(mpsc::error::SendError(outgoing)) = link.send(Outgoing { delivery, ack }) {
            // The link's task ended (runtime shutting down).
            links.remove(&node);
            if let Some(ack) = outgoing.ack {
                ack(Err(format!("the link to node {node} is closed")));
            }
        }
    }

    /// Stops the link to `node` (it left the cluster).
    pub fn forget(&self, node: NodeId) {
        self.links
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&node);
    }

    /// Counts so far.
    pub fn stats(&self) -> ForwardStats {
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One step of taking the session of `client_id` over from `node`.
    pub async fn handover(
        &self,
        node: NodeId,
        client_id: &str,
        step: HandoverStep,
    ) -> Result<Handover, HandoverError> {
        let address = (self.resolve)(node).ok_or(HandoverError::UnknownNode(node))?;
        let unreachable = |detail: String| HandoverError::Unreachable { node, detail };
        let channel = endpoint(&address)
            .map_err(unreachable)?
            .timeout(HANDOVER_TIMEOUT)
            .connect()
            .await
            .map_err(|error| unreachable(error.to_string()))?;
        let request = proto::HandoverRequest {
            client_id: client_id.to_owned(),
            to: self.me,
            finish: step == HandoverStep::Finish,
        };
        let reply = PeerClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .handover(request)
            .await
            .map_err(|status| unreachable(status.message().to_owned()))?
            .into_inner();
        if !reply.error.is_empty() {
            return Err(HandoverError::Refused {
                node,
                detail: reply.error,
            });
        }
        Ok(Handover {
            session: reply.found.then_some(reply.session),
            messages: reply.messages,
        })
    }
}

fn endpoint(address: &str) -> Result<Endpoint, String> {
    Endpoint::from_shared(format!("http://{address}"))
        .map(|endpoint| {
            endpoint
                .connect_timeout(CONNECT_TIMEOUT)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(PING_INTERVAL)
                .keep_alive_timeout(PING_TIMEOUT)
        })
        .map_err(|error| format!("bad cluster address {address:?}: {error}"))
}

/// The task sending to one node; see the module docs.
struct PeerLink {
    me: NodeId,
    node: NodeId,
    resolve: Resolver,
    stats: Arc<Mutex<ForwardStats>>,
}

/// A forwarding stream to a peer and what it waits for.
struct Stream {
    batches: mpsc::Sender<proto::ForwardBatch>,
    acks: Streaming<proto::ForwardAck>,
    next_seq: u64,
    unacked: VecDeque<(u64, AckCallback)>,
}

impl PeerLink {
    async fn run(self, mut outgoing: mpsc::UnboundedReceiver<Outgoing>) {
        let mut stream: Option<Stream> = None;
        let mut backoff = MIN_BACKOFF;
        let mut retry_at = Instant::now();
        loop {
            let Some(stream_now) = stream.as_mut() else {
                // Not connected: wait for something to send.
                let Some(first) = outgoing.recv().await else {
                    return;
                };
                if Instant::now() >= retry_at {
                    match self.connect().await {
                        Ok(connected) => {
                            backoff = MIN_BACKOFF;
                            stream = Some(connected);
                        }
                        Err(error) => {
                            tracing::warn!(node = self.node, %error, "cannot reach a peer to forward messages; retrying");
                            retry_at = Instant::now() + backoff;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
                match stream.as_mut() {
                    Some(connected) => {
                        if self
                            .send_batch(connected, first, &mut outgoing)
                            .await
                            .is_err()
                        {
                            self.fail_all(stream.take(), "the link broke");
                        }
                    }
                    None => {
                        self.fail(first, "the node cannot be reached");
                        while let Ok(more) = outgoing.try_recv() {
                            self.fail(more, "the node cannot be reached");
                        }
                    }
                }
                continue;
            };
            tokio::select! {
                next = outgoing.recv() => {
                    let Some(first) = next else {
                        self.fail_all(stream.take(), "the link was closed");
                        return;
                    };
                    if self.send_batch(stream_now, first, &mut outgoing).await.is_err() {
                        self.fail_all(stream.take(), "the link broke");
                    }
                }
                ack = stream_now.acks.next() => {
                    match ack {
                        Some(Ok(ack)) => settle(stream_now, &ack),
                        Some(Err(status)) => {
                            tracing::warn!(node = self.node, %status, "forwarding stream to a peer failed");
                            self.fail_all(stream.take(), "the link broke");
                        }
                        None => self.fail_all(stream.take(), "the peer closed the link"),
                    }
                    if stream.is_none() {
                        retry_at = Instant::now() + backoff;
                    }
                }
            }
        }
    }

    async fn connect(&self) -> Result<Stream, String> {
        let address = (self.resolve)(self.node)
            .ok_or_else(|| format!("node {} is not a member of the cluster", self.node))?;
        let channel = endpoint(&address)?
            .connect()
            .await
            .map_err(|error| format!("{address}: {error}"))?;
        let (batches, receiver) = mpsc::channel(64);
        let requests = futures::stream::unfold(receiver, |mut receiver| async move {
            receiver.recv().await.map(|batch| (batch, receiver))
        });
        let acks = PeerClient::new(channel)
            .max_encoding_message_size(usize::MAX)
            .forward(requests)
            .await
            .map_err(|status| format!("{address}: {}", status.message()))?
            .into_inner();
        tracing::info!(node = self.node, %address, "forwarding stream to a peer open");
        Ok(Stream {
            batches,
            acks,
            next_seq: 1,
            unacked: VecDeque::new(),
        })
    }

    /// Sends `first` and whatever else is waiting, as one batch.
    async fn send_batch(
        &self,
        stream: &mut Stream,
        first: Outgoing,
        outgoing: &mut mpsc::UnboundedReceiver<Outgoing>,
    ) -> Result<(), ()> {
        let mut messages = Vec::with_capacity(1);
        push_message(stream, &mut messages, first);
        while messages.len() < MAX_BATCH {
            match outgoing.try_recv() {
                Ok(item) => push_message(stream, &mut messages, item),
                Err(_) => break,
            }
        }
        let count = messages.len() as u64;
        let batch = proto::ForwardBatch {
            from: self.me,
            messages,
        };
        let sent = stream.batches.send(batch).await.is_ok();
        let mut stats = self.stats.lock().unwrap_or_else(PoisonError::into_inner);
        if sent {
            stats.sent += count;
            Ok(())
        } else {
            Err(())
        }
    }

    fn fail(&self, item: Outgoing, why: &str) {
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failed += 1;
        if let Some(ack) = item.ack {
            ack(Err(format!("node {}: {why}", self.node)));
        }
    }

    fn fail_all(&self, stream: Option<Stream>, why: &str) {
        let Some(stream) = stream else { return };
        let count = stream.unacked.len() as u64;
        for (_, ack) in stream.unacked {
            ack(Err(format!("node {}: {why}", self.node)));
        }
        self.stats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .failed += count;
    }
}

/// Numbers `item`, remembers its callback and adds it to the batch.
fn push_message(stream: &mut Stream, messages: &mut Vec<proto::Forwarded>, item: Outgoing) {
    let seq = stream.next_seq;
    stream.next_seq += 1;
    let ack = item.ack.is_some();
    if let Some(callback) = item.ack {
        stream.unacked.push_back((seq, callback));
    }
    messages.push(proto::Forwarded {
        seq,
        message: item.delivery.message,
        plain: item.delivery.plain,
        groups: item.delivery.groups,
        ack,
    });
}

/// Completes the callbacks an acknowledgement settles: acks arrive in
/// order, one per message that asked.
fn settle(stream: &mut Stream, ack: &proto::ForwardAck) {
    while let Some((seq, _)) = stream.unacked.front() {
        if *seq > ack.seq {
            break;
        }
        let (seq, callback) = stream.unacked.pop_front().expect("front exists");
        let result = if seq < ack.seq {
            Err("the peer skipped this message".to_owned())
        } else if ack.error.is_empty() {
            Ok(())
        } else {
            Err(ack.error.clone())
        };
        callback(result);
    }
}

#[cfg(test)]
mod tests;
