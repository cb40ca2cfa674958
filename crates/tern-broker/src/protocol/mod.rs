//! The broker side of one MQTT connection, as a sans-IO state machine.
//!
//! [`Protocol::handle`] takes an [`Input`] (a decoded packet, a decode
//! error, a tick, the result of an operation it asked for) and appends
//! [`Action`]s for the runtime to carry out (send a packet, open a session,
//! route a message, change a subscription, close). It works on the
//! client's [`Session`], which the caller lends it for each input: in-flight
//! messages, packet identifiers, the queue and incoming QoS 2 identifiers
//! live there, not here. Time is an argument ([`Now`]); the protocol never
//! reads a clock, touches a socket or takes a lock.
//!
//! What lives where:
//! - `connect`: CONNECT and CONNACK, client identifiers, keep alive, the
//!   will, session expiry;
//! - `inbound`: PUBLISH from the client (QoS handshakes, topic aliases,
//!   limits) and its acknowledgements;
//! - `outbound`: delivery of queued messages and the client's
//!   acknowledgements of them;
//! - `aliases`: the topic aliases the broker assigns in what it sends;
//! - `subscriptions`: SUBSCRIBE and UNSUBSCRIBE;
//! - `auth`: authentication at CONNECT (password or SCRAM-SHA-256 over
//!   AUTH), the ACL checks of publish, subscribe and delivery, and the
//!   limits on client identifiers, topics and subscriptions;
//! - `ending`: DISCONNECT either way, refusals, errors and the will;
//! - this module: the types and the dispatch.

mod aliases;
mod auth;
mod connect;
mod ending;
mod inbound;
mod outbound;
mod settings;
mod subscriptions;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_auth::{Authorizer, Refusal};
use tern_codec::{
    ByteString, DecodeError, MAX_PACKET_SIZE, Packet, PacketId, ProtocolVersion, QoS, ReasonCode,
    TopicFilter,
};
use tern_session::{Message, Session, SessionExpiry, Subscription, Timestamp, Will};

pub use auth::Denial;
pub use settings::ProtocolSettings;

/// `text` in its own allocation. Strings decoded from a packet share the
/// connection's receive buffer; one kept for the life of a session (a client
/// id, a will) must not keep a whole buffer chunk alive.
pub(crate) fn detach(text: &ByteString) -> ByteString {
    ByteString::from(&**text)
}

/// The current time, in the two forms the protocol needs: monotonic for
/// keep alive, wall clock for expiry times that are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// For keep alive and the CONNECT timeout.
    pub instant: Instant,
    /// For session, will and message expiry.
    pub wall: Timestamp,
}

/// Something that happened to the connection.
#[derive(Debug)]
pub enum Input {
    /// A packet arrived.
    Packet(Packet),
    /// The bytes received are not a valid packet; the connection ends.
    DecodeError(DecodeError),
    /// Time passed: check the keep alive and CONNECT deadlines.
    Tick,
    /// The session asked for by [`Action::OpenSession`] is attached; it is
    /// lent with this input. `session_present` if it was resumed.
    SessionOpened {
        /// The session existed and was resumed.
        session_present: bool,
    },
    /// Messages were queued in the session: deliver what the window allows.
    Deliver,
    /// A message routed with [`Action::Route`] (or an [`Action::AckInOrder`])
    /// is as durable as configured: acknowledge it.
    Routed {
        /// The acknowledgement to send.
        ack: InboundAck,
        /// What routing achieved.
        outcome: RouteOutcome,
    },
    /// Another connection took over this client's session.
    TakenOver,
    /// The password asked for by [`Action::CheckPassword`] was checked.
    PasswordChecked(Result<(), Refusal>),
    /// The server is shutting down.
    ServerShutdown,
    /// The socket failed or the client closed it.
    ConnectionLost,
}

/// A PUBACK or PUBREC owed to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundAck {
    /// The packet identifier of the client's PUBLISH.
    pub packet_id: PacketId,
    /// QoS 1 (PUBACK) or 2 (PUBREC).
    pub qos: QoS,
}

/// What routing an inbound message achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteOutcome {
    /// Queued for at least one subscriber, and stored as configured.
    Delivered,
    /// Nobody subscribes to the topic (MQTT 5 reason 0x10).
    NoSubscribers,
    /// The session store failed: the message may be lost.
    StoreFailed,
    /// Another node of the cluster with subscribers for the message did not
    /// confirm it (unreachable, or its store failed): the publisher is not
    /// acknowledged, so that it publishes again.
    NodeUnconfirmed,
    /// Not routed: the topic is reserved for the broker (`$SYS`). MQTT 5
    /// clients are told (0x87); older ones are acknowledged as Mosquitto does.
    ReservedTopic,
    /// Not routed: the ACL does not let this client publish to the topic.
    /// MQTT 5 clients are told (0x87); older ones are acknowledged as
    /// Mosquitto does.
    NotAuthorized,
    /// Not routed: the topic has more levels or bytes than the broker
    /// allows (MQTT 5: 0x90; older clients are acknowledged).
    TopicInvalid,
}

/// What the runtime should do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Send a packet (encoded in [`Protocol::version`]).
    Send(Packet),
    /// Find, create or take over the client's session, then answer
    /// [`Input::SessionOpened`].
    OpenSession(OpenSession),
    /// Publish a message to its subscribers (and the retained store). With
    /// `ack`, answer [`Input::Routed`] once durable.
    Route {
        /// The message as received, normalised.
        message: Message,
        /// The acknowledgement owed once the message is stored.
        ack: Option<InboundAck>,
    },
    /// Answer [`Input::Routed`] with `outcome` for `ack` after every
    /// earlier route is durable, keeping acknowledgements in order (a QoS 2
    /// duplicate, or a publish that is refused without being routed).
    AckInOrder {
        /// The acknowledgement owed.
        ack: InboundAck,
        /// What to acknowledge with.
        outcome: RouteOutcome,
    },
    /// Add or replace a subscription in the router (the session has it).
    Subscribe {
        /// The filter.
        filter: TopicFilter,
        /// Its options (QoS already granted) and identifier.
        subscription: Subscription,
    },
    /// Remove a subscription from the router (the session no longer has it).
    Unsubscribe(TopicFilter),
    /// Queue the retained messages matching `filter` in the session, then
    /// deliver (after the SUBACK just sent).
    SendRetained {
        /// The filter subscribed.
        filter: TopicFilter,
        /// Its options and identifier.
        subscription: Subscription,
    },
    /// The delivery cap of one turn was reached: deliver again soon.
    ContinueDelivery,
    /// An outgoing message was dropped for this client only.
    Dropped(OutboundDrop),
    /// Something was refused by authentication, the ACL or a limit: count
    /// it and log `detail`.
    Denied {
        /// What was refused.
        denial: Denial,
        /// Why, for the log.
        detail: String,
    },
    /// Check a CONNECT's password with [`Protocol::authorizer`] off the
    /// async threads (a slow hash), then answer [`Input::PasswordChecked`]
    /// before feeding any further packet (a client may send packets right
    /// after CONNECT; they wait for the answer).
    CheckPassword {
        /// The user name.
        user: ByteString,
        /// The password, if the CONNECT had one.
        password: Option<Bytes>,
    },
    /// Close the connection after sending what precedes; nothing follows.
    Close {
        /// Why, for logs (sent to MQTT 5 clients before, when allowed).
        reason: ReasonCode,
    },
}

/// A request to attach the connection to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSession {
    /// The client identifier (assigned if the client sent none).
    pub client_id: ByteString,
    /// Discard any existing session.
    pub clean_start: bool,
    /// The session expiry granted.
    pub expiry: SessionExpiry,
}

/// Why an outgoing message was dropped for one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboundDrop {
    /// Larger than the client's Maximum Packet Size.
    PacketTooLarge,
}

/// Where the connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for CONNECT until the deadline.
    AwaitingConnect { deadline: Instant },
    /// CONNECT started enhanced authentication: waiting for the client's
    /// AUTH until the same deadline.
    Authenticating { deadline: Instant },
    /// CONNECT accepted; the session is being opened.
    Opening,
    /// CONNACK sent.
    Connected,
    /// Closed; every input is ignored.
    Closed,
}

/// What happens to the will when the connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WillFate {
    /// Publish it when due (now, or after its delay).
    Publish,
    /// Discard it (normal DISCONNECT, server shutdown).
    Discard,
}

/// What an MQTT 5 client said it can take.
#[derive(Debug, Clone, Copy)]
struct ClientLimits {
    receive_maximum: u16,
    maximum_packet_size: u32,
    problem_information: bool,
}

/// The parts of a connection's state that few connections use (topic
/// aliases, enhanced authentication, a certificate's user name), or that
/// every connection uses only while it connects (the CONNACK and will
/// being prepared). Boxed together and allocated on first use: a
/// connected client usually has none of them, and an idle one keeps its
/// [`Protocol`] for as long as it is connected (parked, see
/// `server::parking`), so each pointer here would otherwise be 8 bytes of
/// every connection. [`Protocol::release_idle_memory`] frees the box once
/// it is empty again.
#[derive(Debug, Default)]
struct Extras {
    /// Prepared at CONNECT, sent once the session is open.
    connack: Option<Box<tern_codec::ConnAck>>,
    /// The will of the CONNECT, until the session is open.
    pending_will: Option<Box<Will>>,
    /// Inbound topic aliases (index = alias - 1); empty until the first.
    aliases: Box<[Option<ByteString>]>,
    /// Topic aliases assigned in what is sent to the client; only for a
    /// client that accepts some.
    outbound_aliases: Option<Box<aliases::OutboundAliases>>,
    /// An enhanced authentication in progress.
    pending_auth: Option<Box<auth::PendingAuth>>,
    /// The server-final SCRAM message, sent in the CONNACK.
    auth_response: Option<Box<[u8]>>,
    /// A re-authentication in progress.
    reauth: Option<Box<tern_auth::ScramServer>>,
    /// A user name the transport authenticated (a TLS client certificate).
    verified_user: Option<ByteString>,
}

impl Extras {
    fn is_empty(&self) -> bool {
        self.connack.is_none()
            && self.pending_will.is_none()
            && self.aliases.is_empty()
            && self.outbound_aliases.is_none()
            && self.pending_auth.is_none()
            && self.auth_response.is_none()
            && self.reauth.is_none()
            && self.verified_user.is_none()
    }
}

/// The broker side of one connection; see the module docs.
#[derive(Debug)]
pub struct Protocol {
    settings: Arc<ProtocolSettings>,
    connection_id: u64,
    state: State,
    version: ProtocolVersion,
    client_id: ByteString,
    keep_alive: Option<Duration>,
    last_received: Instant,
    client: ClientLimits,
    /// The session expiry granted at CONNECT.
    expiry: SessionExpiry,
    /// What few connections use, or all use only while connecting: `None`
    /// until needed, and again once empty (see [`Extras`]).
    extras: Option<Box<Extras>>,
    /// QoS 1 publishes received and not yet acknowledged.
    unacked_qos1: usize,
    /// The users, ACL and policy in force (swapped by the runtime on reload).
    authorizer: Arc<Authorizer>,
    /// The authenticated user name (`None`: anonymous).
    user: Option<ByteString>,
    /// The CONNECT used SCRAM-SHA-256 (so the client may re-authenticate).
    scram_connected: bool,
    /// The listener's `allow_anonymous`, overriding the authorizer's.
    allow_anonymous: Option<bool>,
}

impl Protocol {
    /// A connection accepted at `now`, numbered `connection_id`.
    pub fn new(settings: Arc<ProtocolSettings>, connection_id: u64, now: Instant) -> Self {
        let deadline = now + settings.connect_timeout;
        Self {
            settings,
            connection_id,
            state: State::AwaitingConnect { deadline },
            version: ProtocolVersion::V3_1_1,
            client_id: ByteString::new(),
            keep_alive: None,
            last_received: now,
            client: ClientLimits {
                receive_maximum: u16::MAX,
                maximum_packet_size: MAX_PACKET_SIZE,
                problem_information: true,
            },
            expiry: SessionExpiry::OnDisconnect,
            extras: None,
            unacked_qos1: 0,
            authorizer: Arc::new(Authorizer::allow_all()),
            user: None,
            scram_connected: false,
            allow_anonymous: None,
        }
    }

    /// The rare parts of the state, allocated if they were not.
    fn extras_mut(&mut self) -> &mut Extras {
        self.extras.get_or_insert_default()
    }

    /// Frees the rare parts of the state if none is in use: to call when
    /// the connection goes idle (it parks). The connection also does it
    /// itself once its session is open.
    pub fn release_idle_memory(&mut self) {
        if self.extras.as_deref().is_some_and(Extras::is_empty) {
            self.extras = None;
        }
    }

    /// The version to encode packets in: the client's once CONNECT arrived.
    pub fn version(&self) -> ProtocolVersion {
        self.version
    }

    /// The client identifier, once CONNECT arrived (assigned or sent).
    pub fn client_id(&self) -> &ByteString {
        &self.client_id
    }

    /// True once the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// True once CONNACK has accepted the connection, until it closes.
    pub fn is_connected(&self) -> bool {
        self.state == State::Connected
    }

    /// When the runtime should send [`Input::Tick`]: the CONNECT deadline,
    /// or 1.5 times the keep alive after the last packet received.
    pub fn next_timeout(&self) -> Option<Instant> {
        match self.state {
            State::AwaitingConnect { deadline } | State::Authenticating { deadline } => {
                Some(deadline)
            }
            State::Connected => self
                .keep_alive
                .map(|keep_alive| self.last_received + keep_alive.mul_f32(1.5)),
            State::Opening | State::Closed => None,
        }
    }

    /// Handles one input, appending the actions to `out`. `session` is the
    /// client's session once [`Action::OpenSession`] has been answered, and
    /// `None` before, and also for [`Input::TakenOver`] when the session
    /// already belongs to another connection (the connection then ends
    /// without touching it).
    pub fn handle(
        &mut self,
        input: Input,
        session: Option<&mut Session>,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        if self.state == State::Closed {
            return;
        }
        if let Input::Packet(_) = input {
            self.last_received = now.instant;
        }
        match self.state {
            State::AwaitingConnect { deadline } => self.before_session(input, deadline, now, out),
            State::Authenticating { deadline } => self.authenticating(input, deadline, now, out),
            State::Opening => match (input, session) {
                (Input::SessionOpened { session_present }, Some(session)) => {
                    self.on_session_opened(session_present, session, now, out);
                }
                (Input::ServerShutdown, _) => {
                    let reason = ReasonCode::ServerShuttingDown;
                    self.end(reason, WillFate::Discard, None, now, out);
                }
                (Input::ConnectionLost, _) => {
                    let reason = ReasonCode::UnspecifiedError;
                    self.end(reason, WillFate::Discard, None, now, out);
                }
                (input, _) => {
                    debug_assert!(false, "input {input:?} while the session is opening");
                    let reason = ReasonCode::ImplementationSpecificError;
                    self.end(reason, WillFate::Discard, None, now, out);
                }
            },
            State::Connected => match session {
                Some(session) => self.connected(input, session, now, out),
                // The session was taken over by another connection before
                // this one could hand it back: end without touching it.
                None => {
                    debug_assert!(
                        matches!(input, Input::TakenOver),
                        "input {input:?} without the session"
                    );
                    let reason = ReasonCode::SessionTakenOver;
                    self.send_disconnect(reason, "another connection took over the session", out);
                    self.end(reason, WillFate::Discard, None, now, out);
                }
            },
            State::Closed => {}
        }
    }

    /// Inputs before CONNECT: only CONNECT is allowed.
    fn before_session(&mut self, input: Input, deadline: Instant, now: Now, out: &mut Vec<Action>) {
        match input {
            Input::Packet(Packet::Connect(connect)) => self.on_connect(*connect, deadline, out),
            Input::DecodeError(DecodeError::UnsupportedProtocolLevel(level)) => {
                // Answer in the form the client most likely reads: MQTT 5's
                // for a newer level, 3.1.1's (return code 1) for an older.
                self.version = if level > 5 {
                    ProtocolVersion::V5
                } else {
                    ProtocolVersion::V3_1_1
                };
                self.refuse(ReasonCode::UnsupportedProtocolVersion, out);
            }
            Input::Tick if now.instant < deadline => {}
            Input::Tick => self.end(
                ReasonCode::MaximumConnectTime,
                WillFate::Discard,
                None,
                now,
                out,
            ),
            Input::DecodeError(error) => {
                self.end(error.reason_code(), WillFate::Discard, None, now, out);
            }
            // The first packet must be CONNECT; no CONNACK, just close.
            Input::Packet(_) => {
                self.end(ReasonCode::ProtocolError, WillFate::Discard, None, now, out);
            }
            Input::ServerShutdown => {
                let reason = ReasonCode::ServerShuttingDown;
                self.end(reason, WillFate::Discard, None, now, out);
            }
            Input::ConnectionLost => {
                let reason = ReasonCode::UnspecifiedError;
                self.end(reason, WillFate::Discard, None, now, out);
            }
            Input::SessionOpened { .. }
            | Input::Deliver
            | Input::Routed { .. }
            | Input::PasswordChecked(_)
            | Input::TakenOver => {}
        }
    }

    /// Inputs once connected.
    fn connected(&mut self, input: Input, session: &mut Session, now: Now, out: &mut Vec<Action>) {
        match input {
            Input::Packet(packet) => self.on_packet(packet, session, now, out),
            Input::DecodeError(error) => {
                // A CONNECT with a bad protocol name or level is a second
                // CONNECT here [MQTT-3.1.0-2]: 0x84 only answers the first,
                // in CONNACK; DISCONNECT cannot carry it.
                let reason = match error.reason_code() {
                    ReasonCode::UnsupportedProtocolVersion => ReasonCode::ProtocolError,
                    reason => reason,
                };
                self.fail(reason, &error.to_string(), session, now, out);
            }
            Input::Tick => {
                if self
                    .next_timeout()
                    .is_some_and(|deadline| now.instant >= deadline)
                {
                    let detail = "no packet within 1.5 times the keep alive";
                    self.fail(ReasonCode::KeepAliveTimeout, detail, session, now, out);
                }
            }
            Input::Deliver => self.deliver(session, now, out),
            Input::Routed { ack, outcome } => self.on_routed(ack, outcome, session, now, out),
            Input::TakenOver => {
                let detail = "another connection took over the session";
                self.fail(ReasonCode::SessionTakenOver, detail, session, now, out);
            }
            Input::ServerShutdown => {
                self.send_disconnect(ReasonCode::ServerShuttingDown, "", out);
                let reason = ReasonCode::ServerShuttingDown;
                self.end(reason, WillFate::Discard, Some(session), now, out);
            }
            Input::ConnectionLost => {
                let reason = ReasonCode::UnspecifiedError;
                self.end(reason, WillFate::Publish, Some(session), now, out);
            }
            Input::SessionOpened { .. } | Input::PasswordChecked(_) => {}
        }
    }

    fn on_packet(
        &mut self,
        packet: Packet,
        session: &mut Session,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish, session, now, out),
            Packet::PubAck(ack) => self.on_puback(ack, session, now, out),
            Packet::PubRec(ack) => self.on_pubrec(ack, session, now, out),
            Packet::PubRel(ack) => self.on_pubrel(ack, session, out),
            Packet::PubComp(ack) => self.on_pubcomp(ack, session, now, out),
            Packet::Subscribe(subscribe) => self.on_subscribe(subscribe, session, out),
            Packet::Unsubscribe(unsubscribe) => self.on_unsubscribe(unsubscribe, session, out),
            Packet::PingReq => out.push(Action::Send(Packet::PingResp)),
            Packet::Disconnect(disconnect) => self.on_disconnect(*disconnect, session, now, out),
            Packet::Connect(_) => {
                self.fail(
                    ReasonCode::ProtocolError,
                    "a second CONNECT",
                    session,
                    now,
                    out,
                );
            }
            Packet::Auth(auth) => self.on_reauth(*auth, session, now, out),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                let detail = "a packet only servers send";
                self.fail(ReasonCode::ProtocolError, detail, session, now, out);
            }
        }
    }
}
