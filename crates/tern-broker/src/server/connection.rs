//! The task of one client connection. It only moves bytes and carries out
//! what the protocol asks: it reads into a `BytesMut`, decodes packets
//! (refusing oversized ones from their header), feeds them to the
//! [`Protocol`] with the session locked, performs the resulting actions,
//! and writes everything one turn produced with a single `write_all`.
//!
//! It is generic over the byte stream (TCP, TLS, WebSocket, each maybe
//! after a PROXY header: see `transport`), so every listener runs this one
//! implementation; the [`ConnectionInfo`] says who the client is.
//!
//! Between turns it awaits the store's back-pressure
//! ([`tern_session::SessionStore::ready`]) with no lock held.
//!
//! It waits, in one `select!` of cancel-safe futures, for: bytes from the
//! socket, messages queued in its session, acknowledgements whose store
//! writes completed, a keep-alive or CONNECT deadline, a takeover by
//! another connection, and the server's shutdown.
//!
//! With `max_message_rate` or `max_bytes_rate` set, a client beyond its
//! rate is throttled: the socket is not read (and buffered packets are not
//! decoded) until the pause ends; the keep-alive deadline waits too, and
//! what arrived during the pause is read before time is checked again
//! (see [`super::throttle`] for why this rather than a refusal).
//!
//! # Memory of an idle connection
//!
//! Most connections are idle most of the time, so what one holds between
//! packets is what the broker holds per client (docs/performance.md,
//! "Idle connections"). Hence:
//! - the task's future stays small: tokio allocates, for every task, room
//!   for the largest state of its future, so the rare awaits with large
//!   futures (opening a session, a cluster read barrier, detaching) are
//!   boxed, allocated only while they run. A unit test bounds the size;
//! - the receive buffer starts at [`MIN_READ`] bytes and grows to
//!   [`READ_CHUNK`] only while reads fill it; once a burst is over and the
//!   buffer is drained, the large buffer is released;
//! - the per-turn scratch space (queued inputs and actions; a write
//!   buffer that grew, once a turn writes little) is released after each
//!   turn.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures::FutureExt;
use tern_codec::{ByteString, Decoder, Packet, ProtocolVersion};
use tern_router::Matches;
use tern_session::{Pending, SessionStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{oneshot, watch};
use tracing::Instrument;

use super::acks::AckQueue;
use super::auth::{check_password, log_denial};
use super::throttle::Throttle;
use super::transport::{ConnectionInfo, MqttStream};
use crate::broker::cluster::RouteCommit;
use crate::broker::registry::{Attachment, SessionCell, SessionKey};
use crate::broker::{Broker, stopped, wall_clock};
use crate::metrics::add;
use crate::protocol::{
    Action, InboundAck, Input, Now, OpenSession, OutboundDrop, Protocol, RouteOutcome,
};

/// Bytes read per system call, at most.
const READ_CHUNK: usize = 8 * 1024;
/// Room for the next read while the client sends little: more than a
/// CONNECT, a PINGREQ or a small PUBLISH need.
const MIN_READ: usize = 256;
/// A write buffer larger than this is released after a turn (bytes).
const KEEP_SCRATCH: usize = 1024;
/// How long a client may leave our writes unread before it is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// The same while the server shuts down.
const SHUTDOWN_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves one accepted connection until it closes.
pub(crate) async fn serve<S: MqttStream>(
    broker: Arc<Broker>,
    stream: S,
    info: ConnectionInfo,
    shutdown: watch::Receiver<bool>,
) {
    let connection_id = broker.next_connection_id();
    let span = tracing::info_span!(
        "connection",
        peer = %info.peer,
        listener = %info.listener,
        connection_id,
        client_id = tracing::field::Empty,
        username = tracing::field::Empty
    );
    let mut connection = Connection::new(broker, stream, info, connection_id, shutdown);
    // `run` borrows the connection rather than taking it: a future that
    // owns a large argument keeps it twice (the argument and the body's
    // copy), for its whole life.
    async move {
        connection.run().await;
        // Boxed: it runs once, at the end, and its future is large.
        Box::pin(connection.finish()).await;
    }
    .instrument(span)
    .await;
}

/// What woke the connection.
enum Event {
    Read(io::Result<usize>),
    Kicked(bool),
    Shutdown,
    Deliver,
    Acked(InboundAck, RouteOutcome),
    Tick,
    ThrottleOver,
}

struct Connection<S> {
    broker: Arc<Broker>,
    stream: S,
    info: ConnectionInfo,
    connection_id: u64,
    protocol: Protocol,
    decoder: Decoder,
    read_buf: BytesMut,
    /// Room reserved for the next read: [`MIN_READ`], or [`READ_CHUNK`]
    /// while reads fill the buffer.
    read_size: usize,
    write_buf: BytesMut,
    inputs: VecDeque<Input>,
    actions: Vec<Action>,
    cell: Option<Arc<SessionCell>>,
    kick: Option<oneshot::Receiver<()>>,
    done: Option<oneshot::Sender<()>>,
    acks: AckQueue,
    /// Store writes of this session's own changes, until complete.
    own_writes: Vec<Pending<()>>,
    /// Route announcements of this turn's subscriptions (in a cluster):
    /// the turn's SUBACKs are written once they are committed, all at
    /// once, so a burst of SUBSCRIBEs costs few Raft rounds.
    route_commits: Vec<RouteCommit>,
    matches: Matches<SessionKey>,
    shutdown: watch::Receiver<bool>,
    /// The socket failed: nothing more is written.
    broken: bool,
    /// The authorizer generation the protocol has.
    auth_generation: u64,
    /// `max_message_rate` and `max_bytes_rate` of this client.
    throttle: Throttle,
}

impl<S: MqttStream> Connection<S> {
    fn new(
        broker: Arc<Broker>,
        stream: S,
        info: ConnectionInfo,
        connection_id: u64,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let settings = Arc::clone(&broker.settings);
        let max_packet_size = settings.max_packet_size;
        let now = Instant::now();
        let mut protocol = Protocol::new(settings, connection_id, now);
        let auth_generation = broker.auth.generation();
        protocol.set_authorizer(broker.auth.current());
        // A listener with `use_identity_as_username` vouches for the
        // client certificate's name: no password is asked for it.
        if let Some(name) = info.username_override() {
            protocol.set_verified_user(ByteString::from(name));
        }
        // A listener's own `allow_anonymous` beats the broker-wide one.
        if let Some(allow) = info.allow_anonymous {
            protocol.set_allow_anonymous(allow);
        }
        let config = &broker.config;
        let throttle = Throttle::new(config.max_message_rate, config.max_bytes_rate, now);
        Self {
            protocol,
            decoder: Decoder::new(ProtocolVersion::V3_1_1, max_packet_size),
            broker,
            stream,
            info,
            connection_id,
            read_buf: BytesMut::new(),
            read_size: MIN_READ,
            write_buf: BytesMut::new(),
            inputs: VecDeque::new(),
            actions: Vec::new(),
            cell: None,
            kick: None,
            done: None,
            acks: AckQueue::default(),
            own_writes: Vec::new(),
            route_commits: Vec::new(),
            matches: Matches::new(),
            shutdown,
            broken: false,
            auth_generation,
            throttle,
        }
    }

    /// Serves the connection until the protocol closes it.
    async fn run(&mut self) {
        tracing::debug!("accepted");
        while !self.protocol.is_closed() {
            match self.next_event().await {
                Event::Read(Ok(0)) => self.process(Input::ConnectionLost).await,
                Event::Read(Ok(read)) => self.on_read(read).await,
                Event::ThrottleOver => {
                    self.throttle.resume();
                    self.decode_and_process().await;
                    // Read what arrived during the pause (a PINGREQ, say)
                    // before the keep-alive deadline is looked at again.
                    // One poll (read_buf is cancel-safe): whatever the
                    // stream has ready, TLS and WebSocket included.
                    match self.stream.read_buf(&mut self.read_buf).now_or_never() {
                        None => {}
                        Some(Ok(0)) => self.process(Input::ConnectionLost).await,
                        Some(Ok(read)) => self.on_read(read).await,
                        Some(Err(error)) => {
                            tracing::debug!(%error, "read failed");
                            self.broken = true;
                            self.process(Input::ConnectionLost).await;
                        }
                    }
                }
                Event::Read(Err(error)) => {
                    tracing::debug!(%error, "read failed");
                    self.broken = true;
                    self.process(Input::ConnectionLost).await;
                }
                Event::Kicked(true) => self.process(Input::TakenOver).await,
                Event::Kicked(false) => {}
                Event::Shutdown => self.process(Input::ServerShutdown).await,
                Event::Deliver => self.process(Input::Deliver).await,
                Event::Acked(ack, outcome) => {
                    self.process(Input::Routed { ack, outcome }).await;
                    while let Some((ack, outcome)) = self.acks.next().now_or_never() {
                        self.process(Input::Routed { ack, outcome }).await;
                    }
                }
                Event::Tick => self.process(Input::Tick).await,
            }
            self.reap_own_writes();
            let written = self.write_buf.len();
            self.flush().await;
            if self.broken && !self.protocol.is_closed() {
                // Not in `flush`: its future would hold another `process`.
                self.process(Input::ConnectionLost).await;
                self.write_buf.clear();
            }
            self.release_scratch(written);
            self.await_store_capacity().await;
        }
    }

    /// After a read of `read` bytes was processed: a read that filled the
    /// room it had means more is probably waiting, so the next one gets
    /// [`READ_CHUNK`]; otherwise the next gets [`MIN_READ`], and a large
    /// buffer with nothing left in it is released.
    fn size_read_buf(&mut self, read: usize) {
        if read >= self.read_size {
            self.read_size = READ_CHUNK;
            return;
        }
        self.read_size = MIN_READ;
        if self.read_buf.is_empty() && self.read_buf.capacity() > MIN_READ {
            self.read_buf = BytesMut::new();
        }
    }

    /// Releases the scratch space of a turn that wrote `written` bytes, so
    /// that an idle connection does not keep the peak of its busiest turn:
    /// the queues of inputs and actions (empty between turns; reallocating
    /// a few hundred bytes per turn costs little next to the turn's system
    /// calls), and a write buffer that grew beyond [`KEEP_SCRATCH`], once a
    /// turn writes little (a busy subscriber keeps it).
    fn release_scratch(&mut self, written: usize) {
        debug_assert!(self.inputs.is_empty() && self.actions.is_empty());
        if self.write_buf.capacity() > KEEP_SCRATCH && written <= KEEP_SCRATCH / 4 {
            self.write_buf = BytesMut::new();
        }
        if self.inputs.capacity() > 0 {
            self.inputs = VecDeque::new();
        }
        if self.actions.capacity() > 0 {
            self.actions = Vec::new();
        }
    }

    /// `read` bytes arrived: count them against the byte rate, then decode.
    async fn on_read(&mut self, read: usize) {
        add(&self.broker.metrics.bytes_received, read as u64);
        self.throttle.read(read, Instant::now());
        self.decode_and_process().await;
        self.size_read_buf(read);
    }

    /// The store's back-pressure: when the disk cannot keep up and too
    /// many writes wait, take no more input until it catches up. Awaited
    /// here, between turns, with no lock held (writes themselves never
    /// block); shutdown ends the wait. A closed store is reported by the
    /// writes themselves.
    async fn await_store_capacity(&mut self) {
        let mut ready = self.broker.store.ready();
        if (&mut ready).now_or_never().is_some() {
            return;
        }
        tracing::debug!("waiting for the session store to catch up");
        tokio::select! {
            _ready = ready => {}
            () = stopped(&mut self.shutdown) => {}
        }
    }

    /// Waits for the next thing to do. Every branch is cancel-safe.
    async fn next_event(&mut self) -> Event {
        let Self {
            stream,
            read_buf,
            read_size,
            kick,
            acks,
            shutdown,
            cell,
            protocol,
            throttle,
            ..
        } = self;
        if read_buf.capacity() - read_buf.len() < *read_size {
            read_buf.reserve(*read_size);
        }
        let throttled = throttle.paused_until();
        let deadline = protocol.next_timeout().filter(|_| throttled.is_none());
        let deliveries = cell.as_deref().filter(|_| protocol.is_connected());
        tokio::select! {
            () = stopped(shutdown) => Event::Shutdown,
            kicked = async {
                match kick.as_mut() {
                    Some(receiver) => receiver.await.is_ok(),
                    None => std::future::pending().await,
                }
            } => {
                *kick = None;
                Event::Kicked(kicked)
            }
            (ack, outcome) = acks.next(), if !acks.is_empty() => Event::Acked(ack, outcome),
            read = stream.read_buf(read_buf), if throttled.is_none() => Event::Read(read),
            () = async {
                match throttled {
                    Some(until) => tokio::time::sleep_until(until.into()).await,
                    None => std::future::pending().await,
                }
            } => Event::ThrottleOver,
            () = async {
                match deliveries {
                    Some(cell) => cell.notify.notified().await,
                    None => std::future::pending().await,
                }
            } => Event::Deliver,
            () = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => Event::Tick,
        }
    }

    /// Feeds every whole packet received to the protocol.
    async fn decode_and_process(&mut self) {
        while !self.protocol.is_closed() && self.throttle.paused_until().is_none() {
            // Decoded outside this future (a plain function): the packet
            // is not kept in it while the actions run.
            let Some((input, last)) = self.next_input() else {
                break;
            };
            self.process(input).await;
            if last {
                break;
            }
        }
    }

    /// The next whole packet received as an input, if any; `true` with
    /// the last input a bad packet allows.
    fn next_input(&mut self) -> Option<(Input, bool)> {
        match self.decoder.decode(&mut self.read_buf) {
            Ok(Some(mut packet)) => {
                match &mut packet {
                    Packet::Publish(_) => {
                        add(&self.broker.metrics.messages_received, 1);
                        self.throttle.publish(Instant::now());
                    }
                    // The listener vouches for the certificate's name:
                    // the protocol (and authentication) see it as the
                    // user name, whatever the client sent.
                    Packet::Connect(connect) => {
                        if let Some(name) = self.info.username_override() {
                            connect.username = Some(ByteString::from(name));
                        }
                        if let Some(name) = &connect.username {
                            tracing::Span::current().record("username", &**name);
                        }
                    }
                    _ => {}
                }
                Some((Input::Packet(packet), false))
            }
            Ok(None) => None,
            Err(error) => {
                tracing::info!(%error, "closing: the client sent an invalid packet");
                Some((Input::DecodeError(error), true))
            }
        }
    }

    /// Runs `input` and the inputs its actions produce.
    ///
    /// Not an `async fn`: the step runs when this is called, so the
    /// future, which the connection's future contains, does not hold the
    /// input.
    fn process(&mut self, input: Input) -> impl Future<Output = ()> + Send + '_ {
        self.step(input);
        self.execute_actions()
    }

    /// Carries out the actions of the last step, then runs the inputs they
    /// produced (rare; `inputs` stays unallocated otherwise).
    async fn execute_actions(&mut self) {
        loop {
            let mut actions = std::mem::take(&mut self.actions);
            for action in actions.drain(..) {
                self.execute(action).await;
            }
            self.actions = actions;
            let Some(input) = self.inputs.pop_front() else {
                break;
            };
            self.step(input);
        }
    }

    /// One protocol step, with the session locked; the session's changes
    /// are submitted to the store before the lock is released.
    fn step(&mut self, input: Input) {
        let now = Now {
            instant: Instant::now(),
            wall: wall_clock(),
        };
        let generation = self.broker.auth.generation();
        if generation != self.auth_generation {
            self.auth_generation = generation;
            self.protocol.set_authorizer(self.broker.auth.current());
        }
        let Some(cell) = &self.cell else {
            self.protocol.handle(input, None, now, &mut self.actions);
            return;
        };
        let mut session = cell.lock();
        if !cell.is_attached_to(self.connection_id) {
            // Taken over after our takeover wait timed out: the session is
            // another connection's now. End without touching it.
            drop(session);
            self.protocol
                .handle(Input::TakenOver, None, now, &mut self.actions);
            return;
        }
        let before = session.drops();
        self.protocol
            .handle(input, Some(&mut session), now, &mut self.actions);
        self.broker.metrics.count_drops(before, session.drops());
        if let Some(pending) = self.broker.submit(session.take_changes()) {
            self.own_writes.push(pending);
        }
    }

    async fn execute(&mut self, action: Action) {
        let key = self.cell.as_ref().map(|cell| cell.key);
        match action {
            Action::Send(packet) => self.encode(&packet),
            Action::OpenSession(request) => Box::pin(self.open_session(request)).await,
            Action::Route { message, ack } => {
                let routed = self
                    .broker
                    .route(message, key, &mut self.matches, wall_clock());
                match ack {
                    Some(ack) => {
                        let outcome = if routed.recipients == 0 {
                            RouteOutcome::NoSubscribers
                        } else {
                            RouteOutcome::Delivered
                        };
                        let mut pendings = routed.pendings;
                        pendings.append(&mut self.own_writes);
                        self.acks.push(ack, outcome, pendings);
                    }
                    None => self.own_writes.extend(routed.pendings),
                }
            }
            Action::AckInOrder { ack, outcome } => {
                let pendings = std::mem::take(&mut self.own_writes);
                self.acks.push(ack, outcome, pendings);
            }
            Action::Subscribe {
                filter,
                subscription,
            } => {
                if let Some(key) = key {
                    let options = subscription.options;
                    let identifier = subscription.identifier;
                    let announced = self
                        .broker
                        .subscribe_local(key, &filter, options, identifier);
                    // In a cluster, the SUBACK follows the route's commit
                    // (awaited with the turn's others before writing).
                    self.route_commits.extend(announced);
                }
            }
            Action::Unsubscribe(filter) => {
                if let Some(key) = key {
                    self.broker.unsubscribe_local(key, &filter);
                }
            }
            Action::SendRetained {
                filter,
                subscription,
            } => {
                if let Some(cell) = &self.cell {
                    // In a cluster, see every retained message already
                    // acknowledged on any node.
                    // Without a quorum there is no barrier: serve what this
                    // node has rather than wait for a timeout.
                    if let Some(link) = self.broker.cluster()
                        && link.raft.is_ready()
                        && let Err(error) = Box::pin(link.raft.read_barrier()).await
                    {
                        tracing::warn!(%error, "retained messages read without a cluster read barrier");
                    }
                    let pending =
                        self.broker
                            .send_retained(cell, &filter, &subscription, wall_clock());
                    self.own_writes.extend(pending);
                }
            }
            Action::ContinueDelivery => {
                if let Some(cell) = &self.cell {
                    cell.notify.notify_one();
                }
            }
            // Counted by the session (`Metrics::count_drops`).
            Action::Dropped(OutboundDrop::PacketTooLarge) => {
                tracing::debug!("message larger than the client's maximum packet size dropped");
            }
            Action::CheckPassword { user, password } => {
                let authorizer = Arc::clone(self.protocol.authorizer());
                let checked = check_password(authorizer, user, password).await;
                self.inputs.push_back(Input::PasswordChecked(checked));
            }
            Action::Denied { denial, detail } => {
                self.broker.metrics.count_denial(denial);
                log_denial(denial, &detail, self.protocol.user());
            }
            Action::Close { reason } => tracing::info!(%reason, "closing"),
        }
    }

    /// Attaches to the session, taking it over if another connection has
    /// it, then lets the protocol answer CONNECT.
    async fn open_session(&mut self, request: OpenSession) {
        tracing::Span::current().record("client_id", &*request.client_id);
        let (kick, kicked) = oneshot::channel();
        let (done, finished) = oneshot::channel();
        let attachment = Attachment {
            connection_id: self.connection_id,
            kick: Some(kick),
            done: Some(finished),
        };
        let opened = self.broker.open_session(&request, attachment).await;
        self.kick = Some(kicked);
        self.done = Some(done);
        let key = opened.cell.key;
        self.cell = Some(opened.cell);
        if let Some(will) = opened.orphan_will {
            let routed = self
                .broker
                .route(will, Some(key), &mut self.matches, wall_clock());
            self.own_writes.extend(routed.pendings);
        }
        tracing::info!(
            identity = self.info.identity.as_deref(),
            clean_start = request.clean_start,
            session_present = opened.session_present,
            "client connected"
        );
        self.inputs.push_back(Input::SessionOpened {
            session_present: opened.session_present,
        });
    }

    fn encode(&mut self, packet: &Packet) {
        match packet.encode(self.protocol.version(), &mut self.write_buf) {
            Ok(()) => {
                if let Packet::Publish(_) = packet {
                    add(&self.broker.metrics.messages_sent, 1);
                }
            }
            Err(error) => tracing::error!(
                %error,
                packet = %packet.packet_type(),
                "a packet could not be encoded and was not sent"
            ),
        }
    }

    /// Writes what this turn produced, in one `write_all`, then flushes
    /// (TLS and WebSocket streams buffer). A client that
    /// does not read for [`WRITE_TIMEOUT`] is dropped; during shutdown it
    /// gets [`SHUTDOWN_WRITE_TIMEOUT`] more at most. A failed write marks
    /// the connection broken; the caller then ends the protocol.
    async fn flush(&mut self) {
        if !self.route_commits.is_empty() {
            futures::future::join_all(std::mem::take(&mut self.route_commits)).await;
        }
        if self.write_buf.is_empty() {
            return;
        }
        if !self.broken {
            let len = self.write_buf.len() as u64;
            let stream = &mut self.stream;
            let write_buf = &self.write_buf;
            let write = tokio::time::timeout(WRITE_TIMEOUT, async move {
                stream.write_all(write_buf).await?;
                stream.flush().await
            });
            let shutdown = &mut self.shutdown;
            let grace_over = async {
                stopped(shutdown).await;
                tokio::time::sleep(SHUTDOWN_WRITE_TIMEOUT).await;
            };
            // Abandoning a partial write is fine: the connection is closed.
            let written = tokio::select! {
                written = write => written.map_err(|_| "the client did not read for 10 s"),
                () = grace_over => Err("the client did not read during shutdown"),
            };
            match written {
                Ok(Ok(())) => add(&self.broker.metrics.bytes_sent, len),
                Ok(Err(error)) => {
                    tracing::debug!(%error, "write failed");
                    self.broken = true;
                }
                Err(reason) => {
                    tracing::info!("closing: {reason}");
                    self.broken = true;
                }
            }
        }
        self.write_buf.clear();
    }

    /// Forgets completed store writes, logging failures.
    fn reap_own_writes(&mut self) {
        self.own_writes
            .retain_mut(|pending| match pending.now_or_never() {
                None => true,
                Some(Ok(())) => false,
                Some(Err(error)) => {
                    tracing::error!(%error, "session store write failed");
                    false
                }
            });
    }

    /// Closes the socket and detaches from the session.
    async fn finish(mut self) {
        if !self.broken {
            let _closed =
                tokio::time::timeout(SHUTDOWN_WRITE_TIMEOUT, self.stream.shutdown()).await;
        }
        for pending in std::mem::take(&mut self.own_writes) {
            if let Err(error) = pending.await {
                tracing::error!(%error, "session store write failed");
            }
        }
        // A connection taking the session over may proceed.
        drop(self.done.take());
        if let Some(cell) = self.cell.take() {
            self.broker.detach(&cell, self.connection_id).await;
        }
        tracing::debug!("connection ended");
    }
}
