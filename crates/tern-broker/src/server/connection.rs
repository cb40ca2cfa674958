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
//! - the future stays small: tokio allocates, for every task, room for
//!   the largest state of its future, so the rare awaits with large
//!   futures (opening a session, a cluster read barrier, detaching, a
//!   write to a full socket with its timers) are boxed, allocated only
//!   while they run, and [`serve`] builds the state before its future so
//!   that the future owns it once. A unit test bounds the size;
//! - a plain TCP stream is awaited for readiness before any receive buffer
//!   is reserved, and a drained buffer is released: an idle TCP connection
//!   holds none. Other streams (TLS, WebSocket) need room up front: theirs
//!   starts at [`MIN_READ`] bytes and grows to [`READ_CHUNK`] only while
//!   reads fill it;
//! - the per-turn scratch space (queued inputs and actions; a write
//!   buffer that grew, once a turn writes little) is released after each
//!   turn, and routing's match scratch is per thread, not per connection.
//!
//! A turn reads the clock once (`now`), not for every packet it handles.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use futures::FutureExt;
use tern_codec::{ByteString, Decoder, Packet, ProtocolVersion, TopicFilter};
use tern_session::{Pending, SessionStore, Subscription};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tracing::Instrument;

use super::acks::AckQueue;
use super::auth::{check_password, log_denial};
use super::parking::ParkingLot;
use super::throttle::Throttle;
use super::transport::proxy::Prefixed;
use super::transport::{ConnectionInfo, MqttStream, Serving};
use crate::broker::cluster::RouteCommit;
use crate::broker::registry::SessionLease;
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
/// How long a connection with nothing since its CONNACK (no packet, no
/// delivery) stays idle before it parks, if the lot's own time is longer.
/// Most clients of a fleet connect and then only ping: parking them soon
/// keeps a storm of connections (every device reconnecting after a
/// failover) from holding a task each for the lot's whole time, the
/// broker's peak memory in that storm. A client that sends something
/// right after its CONNACK (a SUBSCRIBE, usually) is not affected.
const QUIET_PARK_AFTER: Duration = Duration::from_millis(100);

/// The future that serves one connection past its handshakes until it
/// closes or parks (`lot`: where it parks when idle, if it may).
///
/// Not an `async fn`: the connection's state is built here, so the future
/// owns it once, rather than keeping its arguments beside it for its
/// whole life (a known limit of the layout of async functions).
pub(crate) fn serve<S: MqttStream>(
    broker: Arc<Broker>,
    stream: S,
    info: ConnectionInfo,
    shutdown: watch::Receiver<bool>,
    lot: Option<Arc<ParkingLot>>,
    permits: Box<[OwnedSemaphorePermit]>,
) -> impl Future<Output = ()> + Send {
    let connection_id = broker.next_connection_id();
    let span = tracing::info_span!(
        "connection",
        peer = %info.peer,
        listener = %info.listener,
        identity = info.identity.as_deref(),
        connection_id,
        client_id = tracing::field::Empty,
        username = tracing::field::Empty
    );
    span.in_scope(|| tracing::debug!("accepted"));
    let connection = Connection::new(broker, stream, info, connection_id, shutdown, lot, permits);
    drive(connection).instrument(span)
}

/// Runs `connection` until it closes, then ends it; or until it is idle
/// and parks.
///
/// Not an `async fn`, for the reason of [`serve`]: the future captures
/// the connection once.
#[allow(clippy::manual_async_fn)]
fn drive<S: MqttStream>(mut connection: Connection<S>) -> impl Future<Output = ()> + Send {
    async move {
        loop {
            // `run` borrows the connection rather than taking it: a
            // future that owns a large argument keeps it twice.
            connection.run().await;
            if connection.protocol.is_closed() {
                break;
            }
            // Idle: park, unless the lot says go on.
            match connection.park() {
                Ok(()) => return,
                Err(back) => connection = back,
            }
        }
        // Boxed: it runs once, at the end, and its future is large.
        Box::pin(connection.finish()).await;
    }
}

/// The time now, for a turn that starts (the protocol reads no clock).
fn read_clock() -> Now {
    Now {
        instant: Instant::now(),
        wall: wall_clock(),
    }
}

/// Makes room for a read of `size` bytes in `read_buf`.
fn reserve_read_room(read_buf: &mut BytesMut, size: usize) {
    if read_buf.capacity() - read_buf.len() < size {
        read_buf.reserve(size);
    }
}

/// Reads from `stream` into `read_buf`, with room for `size` bytes. A
/// stream that tells readiness is first awaited with no room reserved, so
/// an idle connection holds no receive buffer. Cancel-safe.
async fn read<S: MqttStream>(
    stream: &mut S,
    read_buf: &mut BytesMut,
    size: usize,
) -> io::Result<usize> {
    if !S::READINESS {
        reserve_read_room(read_buf, size);
        return stream.read_buf(read_buf).await;
    }
    loop {
        poll_fn(|cx| stream.poll_read_ready(cx)).await?;
        reserve_read_room(read_buf, size);
        // Ready: the read does not wait, unless the readiness was stale;
        // then it is cleared and awaited again.
        if let Some(read) = stream.read_buf(read_buf).now_or_never() {
            return read;
        }
    }
}

/// An action that waits for something (the session, the cluster, a
/// password check) before it is done.
enum Waiting {
    OpenSession(OpenSession),
    SendRetained {
        filter: TopicFilter,
        subscription: Subscription,
    },
    CheckPassword {
        user: ByteString,
        password: Option<Bytes>,
    },
}

/// Why a turn's bytes were not all written.
enum WriteFailure {
    Io(io::Error),
    TooSlow(&'static str),
}

/// What woke the connection.
enum Event {
    Read(io::Result<usize>),
    Kicked,
    Shutdown,
    Deliver,
    Acked(InboundAck, RouteOutcome),
    Tick,
    ThrottleOver,
}

struct Connection<S> {
    broker: Arc<Broker>,
    stream: S,
    /// The verified client certificate's name when the listener makes it
    /// the user name (`use_identity_as_username`); the rest of the
    /// [`ConnectionInfo`] is in the span or applied at the start.
    certificate_user: Option<Box<str>>,
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
    /// The session, once attached.
    lease: Option<SessionLease>,
    acks: AckQueue,
    /// Store writes of this session's own changes, until complete.
    own_writes: Vec<Pending<()>>,
    /// Route announcements of this turn's subscriptions (in a cluster):
    /// the turn's SUBACKs are written once they are committed, all at
    /// once, so a burst of SUBSCRIBEs costs few Raft rounds.
    route_commits: Vec<RouteCommit>,
    shutdown: watch::Receiver<bool>,
    /// The socket failed: nothing more is written.
    broken: bool,
    /// The authorizer generation the protocol has.
    auth_generation: u64,
    /// `max_message_rate` and `max_bytes_rate` of this client.
    throttle: Throttle,
    /// The time of this turn: read once when the connection wakes (and
    /// again after a rare action that waited), not for every packet of a
    /// burst; a turn lasts microseconds.
    now: Now,
    /// When the last event other than a timer's came.
    idle_since: Instant,
    /// Nothing has happened since the CONNACK: see [`QUIET_PARK_AFTER`].
    quiet_since_connack: bool,
    /// Where the connection parks once idle for the lot's time, if it may.
    lot: Option<Arc<ParkingLot>>,
    /// Its slots of the connection limits, held for its whole life.
    permits: Box<[OwnedSemaphorePermit]>,
}

/// A connection parked while idle ([`super::parking`]): what it needs to
/// resume, without its task, its buffers (empty), its link to the runtime
/// (the socket is deregistered) or its tracing span (made anew when it
/// resumes). Nor the certificate's user name: it replaces the user name
/// of a CONNECT, and a connection parks only once connected (the protocol
/// keeps the name it authenticated). Its connection id is its lease's.
pub(crate) struct Parked {
    /// `None` if the runtime could not let go of the socket (then it was
    /// closed): the connection resumes at once, to end as lost.
    socket: Option<std::net::TcpStream>,
    protocol: Protocol,
    decoder: Decoder,
    lease: SessionLease,
    auth_generation: u64,
    /// `None` without rate limits (most connections).
    throttle: Option<Box<Throttle>>,
    permits: Box<[OwnedSemaphorePermit]>,
}

impl Parked {
    /// The parked socket, if it is still open.
    pub(crate) fn socket(&self) -> Option<&std::net::TcpStream> {
        self.socket.as_ref()
    }

    /// When the protocol needs time again (keep-alive), if ever.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.protocol.next_timeout()
    }

    /// The lot has taken it back: wake-ups go to its task again.
    pub(crate) fn mark_resumed(&self) {
        self.lease.set_parked(&self.lease.lock(), None);
    }

    /// The future of the resumed connection, on its socket registered
    /// with the runtime again.
    pub(crate) fn resume(mut self: Box<Self>, lot: Arc<ParkingLot>) -> Serving {
        // A new span: the subscriber keeps a span's fields (a few hundred
        // bytes) while it lives, which a parked connection should not.
        // The peer and the listener, logged when it connected, are not
        // repeated (behind a PROXY header the socket's peer is not the
        // client's).
        let span = tracing::info_span!(
            "connection",
            connection_id = self.lease.connection_id(),
            client_id = %self.lease.client_id,
            username = self.protocol.user().map(|user| &**user),
        );
        let broker = Arc::clone(&lot.broker);
        let shutdown = lot.shutdown.clone();
        let socket = self.socket.take().map(TcpStream::from_std);
        match socket {
            Some(Ok(stream)) => {
                let stream = Prefixed::new(BytesMut::new(), stream);
                let connection = Connection::resumed(*self, stream, broker, shutdown, lot);
                Box::pin(drive(connection).instrument(span))
            }
            failed => {
                if let Some(Err(error)) = failed {
                    let _entered = span.enter();
                    tracing::warn!(%error, "a parked connection could not resume: closing it");
                }
                let connection = Connection::resumed(*self, Gone, broker, shutdown, lot);
                Box::pin(drive(connection).instrument(span))
            }
        }
    }
}

/// The stream of a connection whose socket was lost while it parked:
/// reads end at once, writes fail. The connection then ends as a lost
/// one does (its will published).
struct Gone;

impl tokio::io::AsyncRead for Gone {
    fn poll_read(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl tokio::io::AsyncWrite for Gone {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        _buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(Err(io::ErrorKind::NotConnected.into()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl MqttStream for Gone {}

impl<S: MqttStream> Connection<S> {
    fn new(
        broker: Arc<Broker>,
        stream: S,
        info: ConnectionInfo,
        connection_id: u64,
        shutdown: watch::Receiver<bool>,
        lot: Option<Arc<ParkingLot>>,
        permits: Box<[OwnedSemaphorePermit]>,
    ) -> Self {
        let settings = Arc::clone(&broker.settings);
        let max_packet_size = settings.max_packet_size;
        let now = read_clock();
        let mut protocol = Protocol::new(settings, connection_id, now.instant);
        let auth_generation = broker.auth.generation();
        protocol.set_authorizer(broker.auth.current());
        // A listener with `use_identity_as_username` vouches for the
        // client certificate's name: no password is asked for it.
        let certificate_user = info.username_override().map(Box::from);
        if let Some(name) = &certificate_user {
            protocol.set_verified_user(ByteString::from(&**name));
        }
        // A listener's own `allow_anonymous` beats the broker-wide one.
        if let Some(allow) = info.allow_anonymous {
            protocol.set_allow_anonymous(allow);
        }
        let config = &broker.config;
        let throttle = Throttle::new(config.max_message_rate, config.max_bytes_rate, now.instant);
        Self {
            protocol,
            decoder: Decoder::new(ProtocolVersion::V3_1_1, max_packet_size),
            broker,
            stream,
            certificate_user,
            connection_id,
            read_buf: BytesMut::new(),
            read_size: MIN_READ,
            write_buf: BytesMut::new(),
            inputs: VecDeque::new(),
            actions: Vec::new(),
            lease: None,
            acks: AckQueue::default(),
            own_writes: Vec::new(),
            route_commits: Vec::new(),
            shutdown,
            broken: false,
            auth_generation,
            throttle,
            idle_since: now.instant,
            quiet_since_connack: true,
            now,
            lot,
            permits,
        }
    }

    /// A parked connection, on `stream` again.
    fn resumed(
        parked: Parked,
        stream: S,
        broker: Arc<Broker>,
        shutdown: watch::Receiver<bool>,
        lot: Arc<ParkingLot>,
    ) -> Self {
        let now = read_clock();
        Self {
            broker,
            stream,
            certificate_user: None,
            connection_id: parked.lease.connection_id(),
            protocol: parked.protocol,
            decoder: parked.decoder,
            read_buf: BytesMut::new(),
            read_size: MIN_READ,
            write_buf: BytesMut::new(),
            inputs: VecDeque::new(),
            actions: Vec::new(),
            lease: Some(parked.lease),
            acks: AckQueue::default(),
            own_writes: Vec::new(),
            route_commits: Vec::new(),
            shutdown,
            broken: false,
            auth_generation: parked.auth_generation,
            throttle: parked
                .throttle
                .map_or_else(|| Throttle::new(0, 0, now.instant), |throttle| *throttle),
            idle_since: now.instant,
            quiet_since_connack: false,
            now,
            lot: Some(lot),
            permits: parked.permits,
        }
    }

    /// Serves the connection until the protocol closes it, or until it has
    /// been idle long enough to park (see [`Connection::park`]).
    async fn run(&mut self) {
        while !self.protocol.is_closed() {
            let event = self.next_event().await;
            self.now = read_clock();
            if !matches!(event, Event::Tick) {
                self.idle_since = self.now.instant;
                self.quiet_since_connack &= !self.protocol.is_connected();
            }
            match event {
                Event::Read(Ok(0)) => self.process(Input::ConnectionLost).await,
                Event::Read(Ok(read)) => self.on_read(read).await,
                Event::ThrottleOver => {
                    self.throttle.resume();
                    self.decode_and_process().await;
                    // Read what arrived during the pause (a PINGREQ, say)
                    // before the keep-alive deadline is looked at again.
                    // One poll (read_buf is cancel-safe): whatever the
                    // stream has ready, TLS and WebSocket included.
                    reserve_read_room(&mut self.read_buf, self.read_size);
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
                Event::Kicked => self.process(Input::TakenOver).await,
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
            if self.park_at().is_some_and(|at| self.now.instant >= at) {
                if self.is_idle() {
                    return;
                }
                // Not now: try again after as long.
                self.idle_since = self.now.instant;
            }
        }
    }

    /// When the connection parks if nothing happens, if it may park.
    fn park_at(&self) -> Option<Instant> {
        let lot = self.lot.as_ref()?;
        let after = if self.quiet_since_connack {
            lot.after.min(QUIET_PARK_AFTER)
        } else {
            lot.after
        };
        self.protocol
            .is_connected()
            .then(|| self.idle_since + after)
    }

    /// Whether nothing is under way: nothing to read, write, acknowledge,
    /// store or commit, no pause, no takeover, no shutdown.
    fn is_idle(&self) -> bool {
        self.lease.is_some()
            && !self.broken
            && self.read_buf.is_empty()
            && self.write_buf.is_empty()
            && self.acks.is_empty()
            && self.own_writes.is_empty()
            && self.route_commits.is_empty()
            && self.throttle.paused_until().is_none()
            && !self.is_kicked()
            && !*self.shutdown.borrow()
    }

    /// Whether a takeover came that the connection has not handled yet.
    fn is_kicked(&self) -> bool {
        self.lease.as_ref().is_some_and(SessionLease::is_kicked)
    }

    /// Parks the idle connection in its lot and ends its task; gives it
    /// back if it must go on: its stream cannot park, the lot is closed,
    /// or work for it came meanwhile. (Given back by value, unboxed: it
    /// lives in its task's future, which must not allocate to go on.)
    #[allow(clippy::result_large_err)]
    fn park(mut self) -> Result<(), Self> {
        let Some(lot) = self.lot.clone() else {
            return Err(self);
        };
        let Some(fd) = self.stream.parking_fd() else {
            return Err(self);
        };
        let Some(reservation) = lot.reserve(fd) else {
            return Err(self);
        };
        let token = reservation.token();
        let Some(lease) = self.lease.take_if(|lease| lease.try_park(token)) else {
            return Err(self);
        };
        reservation.commit(self.into_parked(lease));
        Ok(())
    }

    /// The state to resume from, the socket taken from the runtime.
    fn into_parked(mut self, lease: SessionLease) -> Box<Parked> {
        self.protocol.release_idle_memory();
        let socket = match self.stream.into_socket() {
            Ok(socket) => Some(socket),
            Err(error) => {
                tracing::warn!(%error, "an idle connection's socket was lost as it parked: closing it");
                None
            }
        };
        Box::new(Parked {
            socket,
            protocol: self.protocol,
            decoder: self.decoder,
            lease,
            auth_generation: self.auth_generation,
            throttle: (!self.throttle.is_unlimited()).then(|| Box::new(self.throttle)),
            permits: self.permits,
        })
    }

    /// After a read of `read` bytes was processed: a read that filled the
    /// room it had means more is probably waiting, so the next one gets
    /// [`READ_CHUNK`]; otherwise the next gets [`MIN_READ`]. A buffer with
    /// nothing left in it is released when the stream tells readiness (the
    /// next read allocates once bytes are there; the packets decoded from
    /// it usually still share it anyway), and otherwise when it is large
    /// and the read did not fill it.
    fn size_read_buf(&mut self, read: usize) {
        let filled = read >= self.read_size;
        self.read_size = if filled { READ_CHUNK } else { MIN_READ };
        let release = if S::READINESS {
            true
        } else {
            !filled && self.read_buf.capacity() > MIN_READ
        };
        if release && self.read_buf.is_empty() {
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
        self.throttle.read(read, self.now.instant);
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
        let park_at = self.park_at();
        let Self {
            stream,
            read_buf,
            read_size,
            acks,
            shutdown,
            lease,
            protocol,
            throttle,
            ..
        } = self;
        let throttled = throttle.paused_until();
        let deadline = match (protocol.next_timeout(), park_at) {
            (Some(timeout), Some(park)) => Some(timeout.min(park)),
            (timeout, park) => timeout.or(park),
        }
        .filter(|_| throttled.is_none());
        // Messages to deliver, or a takeover: both notify the session's
        // connection.
        let notified = lease.as_ref().filter(|_| protocol.is_connected());
        tokio::select! {
            () = stopped(shutdown) => Event::Shutdown,
            (ack, outcome) = acks.next(), if !acks.is_empty() => Event::Acked(ack, outcome),
            read = read(stream, read_buf, *read_size), if throttled.is_none() => Event::Read(read),
            kicked = async {
                match notified {
                    Some(lease) => {
                        lease.notify.notified().await;
                        lease.is_kicked()
                    }
                    None => std::future::pending().await,
                }
            } => if kicked { Event::Kicked } else { Event::Deliver },
            // One timer (each is 112 bytes of every connection's
            // future): the end of a throttling pause, else the protocol's
            // next deadline, which waits while the client is paused.
            () = async {
                match throttled.or(deadline) {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => if throttled.is_some() { Event::ThrottleOver } else { Event::Tick },
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
                        self.throttle.publish(self.now.instant);
                    }
                    // The listener vouches for the certificate's name:
                    // the protocol (and authentication) see it as the
                    // user name, whatever the client sent.
                    Packet::Connect(connect) => {
                        if let Some(name) = &self.certificate_user {
                            connect.username = Some(ByteString::from(&**name));
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
                // Most actions are done at once; only a few wait, and only
                // those go through a future.
                if let Some(waiting) = self.execute_at_once(action) {
                    self.execute_waiting(waiting).await;
                }
            }
            self.actions = actions;
            let Some(input) = self.inputs.pop_front() else {
                break;
            };
            // It follows an action that waited (a session to open, a
            // password to check).
            self.now = read_clock();
            self.step(input);
        }
    }

    /// One protocol step, with the session locked; the session's changes
    /// are submitted to the store before the lock is released.
    fn step(&mut self, input: Input) {
        let now = self.now;
        let generation = self.broker.auth.generation();
        if generation != self.auth_generation {
            self.auth_generation = generation;
            self.protocol.set_authorizer(self.broker.auth.current());
        }
        let Some(lease) = &self.lease else {
            self.protocol.handle(input, None, now, &mut self.actions);
            return;
        };
        let mut session = lease.lock();
        if !lease.is_attached() {
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

    /// Carries out `action` if it needs no waiting; returns it otherwise.
    fn execute_at_once(&mut self, action: Action) -> Option<Waiting> {
        let key = self.lease.as_ref().map(|lease| lease.key);
        match action {
            Action::Send(packet) => self.encode(&packet),
            Action::OpenSession(request) => return Some(Waiting::OpenSession(request)),
            Action::Route { message, ack } => {
                let routed = self.broker.route(message, key, self.now.wall);
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
                return Some(Waiting::SendRetained {
                    filter,
                    subscription,
                });
            }
            Action::ContinueDelivery => {
                if let Some(lease) = &self.lease {
                    lease.notify.notify_one();
                }
            }
            // Counted by the session (`Metrics::count_drops`).
            Action::Dropped(OutboundDrop::PacketTooLarge) => {
                tracing::debug!("message larger than the client's maximum packet size dropped");
            }
            Action::CheckPassword { user, password } => {
                return Some(Waiting::CheckPassword { user, password });
            }
            Action::Denied { denial, detail } => {
                self.broker.metrics.count_denial(denial);
                log_denial(denial, &detail, self.protocol.user());
            }
            Action::Close { reason } => tracing::info!(%reason, "closing"),
        }
        None
    }

    /// Carries out an action that waits for something.
    async fn execute_waiting(&mut self, waiting: Waiting) {
        match waiting {
            Waiting::OpenSession(request) => Box::pin(self.open_session(request)).await,
            Waiting::SendRetained {
                filter,
                subscription,
            } => {
                if let Some(lease) = &self.lease {
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
                    let pending = self.broker.send_retained(
                        lease.cell(),
                        &filter,
                        &subscription,
                        self.now.wall,
                    );
                    self.own_writes.extend(pending);
                }
            }
            Waiting::CheckPassword { user, password } => {
                let authorizer = Arc::clone(self.protocol.authorizer());
                let checked = check_password(authorizer, user, password).await;
                self.inputs.push_back(Input::PasswordChecked(checked));
            }
        }
    }

    /// Attaches to the session, taking it over if another connection has
    /// it, then lets the protocol answer CONNECT.
    async fn open_session(&mut self, request: OpenSession) {
        tracing::Span::current().record("client_id", &*request.client_id);
        let opened = self.broker.open_session(&request, self.connection_id).await;
        let key = opened.lease.key;
        self.lease = Some(opened.lease);
        if let Some(will) = opened.orphan_will {
            let routed = self.broker.route(will, Some(key), self.now.wall);
            self.own_writes.extend(routed.pendings);
        }
        tracing::info!(
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

    /// Writes what this turn produced, then flushes (TLS and WebSocket
    /// streams buffer). Most turns' bytes fit in the socket's buffer, so
    /// they are first written without waiting; only the rest, if any, is
    /// awaited, with a timer: a client that does not read for
    /// [`WRITE_TIMEOUT`] is dropped, and during shutdown it gets
    /// [`SHUTDOWN_WRITE_TIMEOUT`] more at most. A failed write marks the
    /// connection broken; the caller then ends the protocol.
    async fn flush(&mut self) {
        if !self.route_commits.is_empty() {
            futures::future::join_all(std::mem::take(&mut self.route_commits)).await;
        }
        if self.write_buf.is_empty() {
            return;
        }
        if !self.broken {
            let len = self.write_buf.len() as u64;
            let written = match self.write_without_waiting() {
                Ok(true) => Ok(()),
                // Boxed: the timers of a slow client's wait would
                // otherwise be part of every connection's future.
                Ok(false) => Box::pin(self.write_rest()).await,
                Err(error) => Err(WriteFailure::Io(error)),
            };
            match written {
                Ok(()) => add(&self.broker.metrics.bytes_sent, len),
                Err(WriteFailure::Io(error)) => {
                    tracing::debug!(%error, "write failed");
                    self.broken = true;
                }
                Err(WriteFailure::TooSlow(reason)) => {
                    tracing::info!("closing: {reason}");
                    self.broken = true;
                }
            }
        }
        self.write_buf.clear();
    }

    /// Writes and flushes what the stream takes at once; `true` if that
    /// was everything. What was written leaves `write_buf`.
    fn write_without_waiting(&mut self) -> io::Result<bool> {
        // Polled without a waker: if the socket is full, `write_rest`
        // polls again with the task's own, and the readiness seen
        // meanwhile is kept by the runtime, so no wake-up is lost.
        let mut context = Context::from_waker(Waker::noop());
        let mut stream = Pin::new(&mut self.stream);
        while !self.write_buf.is_empty() {
            match stream.as_mut().poll_write(&mut context, &self.write_buf) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(written)) => self.write_buf.advance(written),
                Poll::Ready(Err(error)) => return Err(error),
                Poll::Pending => return Ok(false),
            }
        }
        match stream.poll_flush(&mut context) {
            Poll::Ready(result) => result.map(|()| true),
            Poll::Pending => Ok(false),
        }
    }

    /// Writes the rest of `write_buf` and flushes, within the time limits.
    /// Abandoning a partial write is fine: the connection is then closed.
    async fn write_rest(&mut self) -> Result<(), WriteFailure> {
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
        tokio::select! {
            written = write => match written {
                Ok(result) => result.map_err(WriteFailure::Io),
                Err(_elapsed) => Err(WriteFailure::TooSlow("the client did not read for 10 s")),
            },
            () = grace_over => Err(WriteFailure::TooSlow("the client did not read during shutdown")),
        }
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
        if let Some(lease) = self.lease.take() {
            let cell = Arc::clone(lease.cell());
            // A connection taking the session over may proceed.
            drop(lease);
            self.broker.detach(&cell, self.connection_id).await;
        }
        tracing::debug!("connection ended");
    }
}
