//! [`ClientSession`]: the client side of MQTT as a state machine, with no
//! I/O and no clock. The outgoing half (packet identifiers, handshakes of
//! this client's publishes, flow control) is in `outgoing`, the incoming
//! half (QoS 2 deduplication, topic aliases) in `incoming`, and the
//! keep-alive timer in `keep_alive`.

mod incoming;
mod keep_alive;
mod outgoing;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use tern_codec::{
    Ack, ConnAck, DecodeError, Disconnect, Packet, PacketId, ProtocolVersion, Publish, QoS,
    SubscribeProperties, SubscriptionOptions, TopicFilter, UnsubscribeProperties,
};

use self::incoming::Incoming;
use self::keep_alive::{KeepAlive, KeepAliveAction};
use self::outgoing::{Awaiting, Outgoing, PubRecOutcome};
use crate::{CommandError, ConnectOptions, Event, Output, ProtocolError, RequestId};

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Created; CONNECT not sent yet.
    Idle,
    /// CONNECT sent, waiting for CONNACK.
    Connecting,
    /// CONNACK accepted the connection: commands are accepted.
    Connected,
    /// Ended: the driver writes what is queued and closes the connection.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    Connecting { deadline: Instant },
    Connected,
    Closed,
}

/// What the server's CONNACK allows (MQTT 5; everything before).
#[derive(Debug, Clone, Copy)]
struct ServerLimits {
    maximum_qos: QoS,
    retain_available: bool,
    topic_alias_maximum: u16,
}

/// The client side of one MQTT connection, as a sans-IO state machine.
///
/// A session lives for one network connection. It starts
/// [`SessionState::Idle`]; [`ClientSession::start`] queues CONNECT; CONNACK
/// makes it `Connected` (or closes it, refused); DISCONNECT either way, a
/// timeout or a protocol violation close it for good. Its driver feeds it
/// what arrives ([`ClientSession::handle_packet`]), what the application
/// asks ([`ClientSession::publish`] and friends) and the passing of time
/// ([`ClientSession::tick`], at [`ClientSession::next_deadline`]), and
/// carries out its [`Output`]s in order. Inputs carry `now`; outputs queue
/// up until [`ClientSession::poll_output`] takes them.
#[derive(Debug)]
pub struct ClientSession {
    options: ConnectOptions,
    state: State,
    outputs: VecDeque<Output>,
    /// The number of the next [`RequestId`].
    next_request: u64,
    outgoing: Outgoing,
    incoming: Incoming,
    keep_alive: KeepAlive,
    limits: ServerLimits,
    /// The client identifier in force: the configured one, or the one the
    /// server assigned.
    client_id: ByteString,
}

impl ClientSession {
    /// A session that will connect with `options`.
    pub fn new(options: ConnectOptions) -> Self {
        Self {
            state: State::Idle,
            outputs: VecDeque::new(),
            next_request: 1,
            outgoing: Outgoing::new(),
            incoming: Incoming::new(options.receive_maximum(), options.topic_alias_maximum()),
            keep_alive: KeepAlive::new(options.keep_alive, options.ping_timeout),
            limits: ServerLimits {
                maximum_qos: QoS::ExactlyOnce,
                retain_available: true,
                topic_alias_maximum: 0,
            },
            client_id: options.client_id.clone(),
            options,
        }
    }

    /// Queues CONNECT and starts waiting for CONNACK. Does nothing unless
    /// the session is [`SessionState::Idle`].
    pub fn start(&mut self, now: Instant) {
        if self.state != State::Idle {
            return;
        }
        let connect = self.options.to_connect();
        self.send(Packet::Connect(Box::new(connect)), now);
        self.state = State::Connecting {
            deadline: now + self.options.connect_timeout,
        };
    }

    /// Handles a packet from the server. A packet that breaks the protocol
    /// closes the session with [`Event::ProtocolViolation`]; packets after
    /// the session closed are ignored.
    pub fn handle_packet(&mut self, packet: Packet, now: Instant) {
        if let Err(error) = self.dispatch(packet, now) {
            self.violation(error, now);
        }
    }

    /// Handles bytes from the server that did not decode: the session
    /// closes, sending DISCONNECT with the matching reason code (MQTT 5).
    pub fn handle_decode_error(&mut self, error: DecodeError, now: Instant) {
        self.violation(ProtocolError::Decode(error), now);
    }

    /// Lets time pass: sends PINGREQ when the client has been silent for
    /// the keep-alive interval, and closes the session when CONNACK or
    /// PINGRESP is overdue.
    pub fn tick(&mut self, now: Instant) {
        match self.state {
            State::Connecting { deadline } if now >= deadline => {
                self.close_with(Event::ConnectTimeout);
            }
            State::Connected => match self.keep_alive.poll(now) {
                KeepAliveAction::Nothing => {}
                KeepAliveAction::SendPing => self.send(Packet::PingReq, now),
                KeepAliveAction::TimedOut => self.close_with(Event::PingTimeout),
            },
            _ => {}
        }
    }

    /// When [`ClientSession::tick`] next has something to do, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        match self.state {
            State::Connecting { deadline } => Some(deadline),
            State::Connected => self.keep_alive.deadline(),
            State::Idle | State::Closed => None,
        }
    }

    /// Takes the oldest output not yet carried out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// Publishes a message. QoS 0 messages need no answer; QoS 1 and 2
    /// messages end with [`Event::PublishCompleted`] under the returned
    /// identifier. The session sets the packet identifier and the DUP flag.
    ///
    /// Messages are sent in order, and QoS 1 and 2 messages only while
    /// fewer than the server's receive maximum are unacknowledged; the rest
    /// wait in the session (see [`ClientSession::queued_publishes`]).
    pub fn publish(
        &mut self,
        mut publish: Publish,
        now: Instant,
    ) -> Result<RequestId, CommandError> {
        self.check_connected()?;
        self.check_publish(&publish)?;
        publish.dup = false;
        publish.packet_id = None;
        let request = self.new_request();
        self.outgoing.enqueue(request, publish);
        self.send_queued(now);
        Ok(request)
    }

    /// Subscribes to topic filters; ends with [`Event::Subscribed`].
    pub fn subscribe(
        &mut self,
        filters: Vec<(TopicFilter, SubscriptionOptions)>,
        properties: SubscribeProperties,
        now: Instant,
    ) -> Result<RequestId, CommandError> {
        let (request, packet_id) = self.start_filter_request(filters.len(), |request, count| {
            Awaiting::SubAck(request, count)
        })?;
        let subscribe = tern_codec::Subscribe {
            packet_id,
            properties,
            filters,
        };
        self.send(Packet::Subscribe(subscribe), now);
        Ok(request)
    }

    /// Checks a SUBSCRIBE or UNSUBSCRIBE of `count` filters can be sent and
    /// allocates its request and packet identifier.
    fn start_filter_request(
        &mut self,
        count: usize,
        awaiting: impl FnOnce(RequestId, usize) -> Awaiting,
    ) -> Result<(RequestId, PacketId), CommandError> {
        self.check_connected()?;
        if count == 0 {
            return Err(CommandError::NoTopicFilters);
        }
        let request = RequestId(self.next_request);
        let packet_id = self
            .outgoing
            .allocate(awaiting(request, count))
            .ok_or(CommandError::PacketIdsExhausted)?;
        self.new_request();
        Ok((request, packet_id))
    }

    /// Unsubscribes from topic filters; ends with [`Event::Unsubscribed`].
    pub fn unsubscribe(
        &mut self,
        filters: Vec<TopicFilter>,
        properties: UnsubscribeProperties,
        now: Instant,
    ) -> Result<RequestId, CommandError> {
        let (request, packet_id) = self.start_filter_request(filters.len(), |request, count| {
            Awaiting::UnsubAck(request, count)
        })?;
        let unsubscribe = tern_codec::Unsubscribe {
            packet_id,
            properties,
            filters,
        };
        self.send(Packet::Unsubscribe(unsubscribe), now);
        Ok(request)
    }

    /// Sends DISCONNECT and closes the session. Publishes still waiting for
    /// the receive maximum are dropped, and unacknowledged ones stay
    /// unacknowledged: wait for their completions first to deliver them all.
    /// A disconnect reason of `DisconnectWithWillMessage` (MQTT 5) asks the
    /// server to publish the will all the same.
    pub fn disconnect(&mut self, disconnect: Disconnect, now: Instant) -> Result<(), CommandError> {
        match self.state {
            State::Closed => return Err(CommandError::Closed),
            State::Idle => {}
            State::Connecting { .. } | State::Connected => {
                self.send(Packet::Disconnect(Box::new(disconnect)), now);
            }
        }
        self.state = State::Closed;
        Ok(())
    }

    /// Where the session is in its life.
    pub fn state(&self) -> SessionState {
        match self.state {
            State::Idle => SessionState::Idle,
            State::Connecting { .. } => SessionState::Connecting,
            State::Connected => SessionState::Connected,
            State::Closed => SessionState::Closed,
        }
    }

    /// True once the session has ended for good.
    pub fn is_closed(&self) -> bool {
        self.state == State::Closed
    }

    /// The protocol version of the connection.
    pub fn protocol(&self) -> ProtocolVersion {
        self.options.protocol
    }

    /// The client identifier: as configured, or as assigned by the server.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The keep-alive interval in force (the server's if it set one).
    pub fn keep_alive(&self) -> Option<Duration> {
        self.keep_alive.interval()
    }

    /// Publishes accepted but not sent yet, held back by the server's
    /// receive maximum. A driver stops taking commands when this grows.
    pub fn queued_publishes(&self) -> usize {
        self.outgoing.queued()
    }

    /// QoS 1 and 2 publishes sent and not yet completed.
    pub fn publishes_in_flight(&self) -> usize {
        self.outgoing.publishes_in_flight()
    }

    fn dispatch(&mut self, packet: Packet, now: Instant) -> Result<(), ProtocolError> {
        match (self.state, packet) {
            (State::Closed, _) => Ok(()),
            (State::Connecting { .. }, Packet::ConnAck(connack)) => {
                self.on_connack(connack);
                Ok(())
            }
            (State::Connecting { .. } | State::Connected, Packet::Disconnect(disconnect)) => {
                self.close_with(Event::Disconnected(disconnect));
                Ok(())
            }
            (State::Connected, packet) => self.on_packet(packet, now),
            (State::Idle | State::Connecting { .. }, packet) => {
                Err(ProtocolError::UnexpectedPacket(packet.packet_type()))
            }
        }
    }

    fn on_connack(&mut self, connack: Box<ConnAck>) {
        if !connack.reason_code.is_success() {
            self.close_with(Event::ConnectionRefused(connack));
            return;
        }
        if self.options.protocol.is_v5() {
            let properties = &connack.properties;
            self.outgoing
                .set_send_quota(properties.receive_maximum.unwrap_or(u16::MAX));
            self.limits = ServerLimits {
                maximum_qos: properties.maximum_qos.unwrap_or(QoS::ExactlyOnce),
                retain_available: properties.retain_available.unwrap_or(true),
                topic_alias_maximum: properties.topic_alias_maximum.unwrap_or(0),
            };
            if let Some(secs) = properties.server_keep_alive {
                self.keep_alive.set_interval(secs);
            }
            if let Some(assigned) = &properties.assigned_client_identifier {
                self.client_id = assigned.clone();
            }
        }
        self.state = State::Connected;
        self.emit(Event::Connected(connack));
    }

    fn on_packet(&mut self, packet: Packet, now: Instant) -> Result<(), ProtocolError> {
        match packet {
            Packet::Publish(publish) => self.on_publish(publish, now)?,
            Packet::PubAck(ack) => {
                let event = self.outgoing.on_puback(&ack)?;
                self.emit(event);
                self.send_queued(now);
            }
            Packet::PubRec(ack) => match self.outgoing.on_pubrec(&ack)? {
                PubRecOutcome::Release(packet_id) => {
                    self.send(Packet::PubRel(Ack::new(packet_id)), now);
                }
                PubRecOutcome::Refused(event) => {
                    self.emit(event);
                    self.send_queued(now);
                }
            },
            Packet::PubRel(ack) => {
                self.incoming.release(ack.packet_id);
                self.send(Packet::PubComp(Ack::new(ack.packet_id)), now);
            }
            Packet::PubComp(ack) => {
                let event = self.outgoing.on_pubcomp(&ack)?;
                self.emit(event);
                self.send_queued(now);
            }
            Packet::SubAck(suback) => {
                let event = self.outgoing.on_suback(suback)?;
                self.emit(event);
            }
            Packet::UnsubAck(unsuback) => {
                let event = self
                    .outgoing
                    .on_unsuback(unsuback, self.options.protocol.is_v5())?;
                self.emit(event);
            }
            Packet::PingResp => self.keep_alive.pong(),
            other => return Err(ProtocolError::UnexpectedPacket(other.packet_type())),
        }
        Ok(())
    }

    fn on_publish(&mut self, mut publish: Publish, now: Instant) -> Result<(), ProtocolError> {
        if self.options.protocol.is_v5() {
            self.incoming.resolve_topic_alias(&mut publish)?;
        }
        let packet_id = publish.packet_id;
        match (publish.qos, packet_id) {
            (QoS::AtMostOnce, _) => self.emit(Event::Message(publish)),
            (QoS::AtLeastOnce, Some(packet_id)) => {
                self.emit(Event::Message(publish));
                self.send(Packet::PubAck(Ack::new(packet_id)), now);
            }
            (QoS::ExactlyOnce, Some(packet_id)) => {
                if self.incoming.receive_qos2(packet_id)? {
                    self.emit(Event::Message(publish));
                }
                self.send(Packet::PubRec(Ack::new(packet_id)), now);
            }
            // The decoder never yields QoS 1 or 2 without an identifier.
            (QoS::AtLeastOnce | QoS::ExactlyOnce, None) => {
                return Err(ProtocolError::Decode(DecodeError::ZeroPacketId));
            }
        }
        Ok(())
    }

    fn check_connected(&self) -> Result<(), CommandError> {
        match self.state {
            State::Connected => Ok(()),
            State::Closed => Err(CommandError::Closed),
            State::Idle | State::Connecting { .. } => Err(CommandError::NotConnected),
        }
    }

    fn check_publish(&mut self, publish: &Publish) -> Result<(), CommandError> {
        if publish.qos > self.limits.maximum_qos {
            return Err(CommandError::QosNotSupported {
                requested: publish.qos,
                maximum: self.limits.maximum_qos,
            });
        }
        if publish.retain && !self.limits.retain_available {
            return Err(CommandError::RetainNotSupported);
        }
        let alias = publish
            .properties()
            .topic_alias
            .filter(|_| self.options.protocol.is_v5());
        if !(publish.topic.is_empty() && alias.is_some()) {
            publish
                .validate_topic()
                .map_err(CommandError::InvalidTopic)?;
        }
        if let Some(alias) = alias {
            let maximum = self.limits.topic_alias_maximum;
            let known = self.outgoing.alias_is_set(alias);
            if alias == 0 || alias > maximum || (publish.topic.is_empty() && !known) {
                return Err(CommandError::TopicAliasInvalid { alias, maximum });
            }
            if !publish.topic.is_empty() {
                self.outgoing.set_alias(alias);
            }
        }
        Ok(())
    }

    fn new_request(&mut self) -> RequestId {
        let request = RequestId(self.next_request);
        self.next_request += 1;
        request
    }

    fn send_queued(&mut self, now: Instant) {
        while let Some(publish) = self.outgoing.next_to_send() {
            self.send(Packet::Publish(publish), now);
        }
    }

    fn send(&mut self, packet: Packet, now: Instant) {
        self.keep_alive.packet_sent(now);
        self.outputs.push_back(Output::Send(packet));
    }

    fn emit(&mut self, event: Event) {
        self.outputs.push_back(Output::Event(event));
    }

    fn close_with(&mut self, event: Event) {
        self.state = State::Closed;
        self.emit(event);
    }

    fn violation(&mut self, error: ProtocolError, now: Instant) {
        if self.state == State::Closed {
            return;
        }
        if self.options.protocol.is_v5() && self.state != State::Idle {
            let disconnect = Disconnect::new(error.reason_code());
            self.send(Packet::Disconnect(Box::new(disconnect)), now);
        }
        self.close_with(Event::ProtocolViolation(error));
    }
}
