//! CONNECT and CONNACK: which connections are accepted, with which client
//! identifier, keep alive, session expiry and will, and what the CONNACK
//! tells an MQTT 5 client about the broker's limits.

use std::time::{Duration, Instant};

use bytes::Bytes;
use tern_auth::Access;
use tern_codec::{
    ConnAck, ConnAckProperties, Connect, LastWill, MAX_PACKET_SIZE, Packet, ProtocolVersion,
    Publish, PublishProperties, QoS, ReasonCode,
};
use tern_session::{Resend, Session, SessionExpiry, Will};

use super::{Action, Denial, Now, OpenSession, Protocol, State, detach};

/// Topics clients may not publish to, wills included.
pub(super) fn is_reserved_topic(topic: &str) -> bool {
    topic == "$SYS" || topic.starts_with("$SYS/")
}

impl Protocol {
    /// The first CONNECT: authenticate it, then accept it (and ask for the
    /// session) or refuse it. Enhanced authentication accepts it later,
    /// after the AUTH exchange.
    pub(super) fn on_connect(
        &mut self,
        connect: Connect,
        deadline: Instant,
        out: &mut Vec<Action>,
    ) {
        self.version = connect.protocol;
        let max_id = usize::from(self.settings.max_client_id_length);
        if connect.client_id.len() > max_id {
            out.push(Action::Denied {
                denial: Denial::Limit,
                detail: format!(
                    "client identifier of {} bytes, above max_client_id_length ({max_id})",
                    connect.client_id.len()
                ),
            });
            return self.refuse(ReasonCode::ClientIdentifierNotValid, out);
        }
        if let Some(connect) = self.authenticate(connect, deadline, out) {
            self.accept_connect(connect, out);
        }
    }

    /// An authenticated CONNECT: accept it (and ask for the session) or
    /// refuse it.
    pub(super) fn accept_connect(&mut self, connect: Connect, out: &mut Vec<Action>) {
        let v5 = self.version.is_v5();
        let assigned = connect.client_id.is_empty();
        if assigned {
            // MQTT 3.1 requires an identifier; 3.1.1 allows none only with
            // a clean session (§3.1.3-8).
            let allowed = self.settings.allow_zero_length_clientid
                && match self.version {
                    ProtocolVersion::V3_1 => false,
                    ProtocolVersion::V3_1_1 => connect.clean_start,
                    ProtocolVersion::V5 => true,
                };
            if !allowed {
                return self.refuse(ReasonCode::ClientIdentifierNotValid, out);
            }
        }
        self.client_id = if assigned {
            let prefix = &self.settings.assigned_id_prefix;
            format!("{prefix}{}", self.connection_id).into()
        } else {
            detach(&connect.client_id)
        };
        let Some((keep_alive, server_keep_alive)) = self.negotiate_keep_alive(connect.keep_alive)
        else {
            // Mosquitto's answer to a 3.1.1 client asking for too long a
            // keep alive: there is no way to tell it the maximum.
            return self.refuse(ReasonCode::ClientIdentifierNotValid, out);
        };
        if let Some(will) = &connect.will
            && let Err(reason) = self.check_will(will)
        {
            if reason == ReasonCode::NotAuthorized {
                out.push(Action::Denied {
                    denial: Denial::Will,
                    detail: format!(
                        "the ACL does not allow publishing the will to {:?}",
                        will.topic
                    ),
                });
            }
            return self.refuse(reason, out);
        }

        let requested = if v5 {
            let interval = connect.properties.session_expiry_interval.unwrap_or(0);
            SessionExpiry::from_interval(interval)
        } else if connect.clean_start {
            SessionExpiry::OnDisconnect
        } else {
            SessionExpiry::Never
        };
        self.expiry = self.capped_expiry(requested);
        if v5 {
            let properties = &connect.properties;
            self.client.receive_maximum = properties.receive_maximum.unwrap_or(u16::MAX).max(1);
            self.client.maximum_packet_size = properties
                .maximum_packet_size
                .unwrap_or(MAX_PACKET_SIZE)
                .max(1);
            self.client.problem_information =
                properties.request_problem_information.unwrap_or(true);
            let outbound = properties
                .topic_alias_maximum
                .unwrap_or(0)
                .min(self.settings.max_topic_alias_outbound);
            if outbound > 0 {
                self.extras_mut().outbound_aliases =
                    Some(Box::new(super::aliases::OutboundAliases::new(outbound)));
            }
        }
        self.keep_alive = (keep_alive > 0).then(|| Duration::from_secs(u64::from(keep_alive)));
        if let Some(will) = connect.will {
            self.extras_mut().pending_will = Some(Box::new(build_will(will)));
        }
        let mut connack = self.connack_for(assigned, requested, server_keep_alive);
        if let Some(server_final) = self
            .extras
            .as_mut()
            .and_then(|extras| extras.auth_response.take())
        {
            connack.properties.authentication_method = Some(tern_auth::scram::METHOD.into());
            connack.properties.authentication_data = Some(Vec::from(server_final).into());
        }
        self.extras_mut().connack = Some(Box::new(connack));
        self.state = State::Opening;
        out.push(Action::OpenSession(OpenSession {
            client_id: self.client_id.clone(),
            clean_start: connect.clean_start,
            expiry: self.expiry,
        }));
    }

    /// The keep alive in force and the Server Keep Alive to announce;
    /// `None` if the client must be refused.
    fn negotiate_keep_alive(&self, requested: u16) -> Option<(u16, Option<u16>)> {
        let max = self.settings.max_keepalive;
        let too_long = requested > max || (requested == 0 && max < u16::MAX);
        match (too_long, self.version.is_v5()) {
            (false, _) => Some((requested, None)),
            (true, true) => Some((max, Some(max))),
            (true, false) => None,
        }
    }

    /// Whether the will can be published as asked.
    fn check_will(&self, will: &LastWill) -> Result<(), ReasonCode> {
        if will.qos > self.settings.max_qos {
            return Err(ReasonCode::QoSNotSupported);
        }
        if will.retain && !self.settings.retain_available {
            return Err(ReasonCode::RetainNotSupported);
        }
        if is_reserved_topic(&will.topic) || !self.authorized(Access::Write, &will.topic) {
            return Err(ReasonCode::NotAuthorized);
        }
        Ok(())
    }

    /// The CONNACK sent once the session is open (its session present flag
    /// is set then).
    fn connack_for(
        &self,
        assigned: bool,
        requested: SessionExpiry,
        server_keep_alive: Option<u16>,
    ) -> ConnAck {
        let mut connack = ConnAck::new(ReasonCode::Success, false);
        if !self.version.is_v5() {
            return connack;
        }
        let settings = &self.settings;
        connack.properties = ConnAckProperties {
            session_expiry_interval: (requested != self.expiry).then(|| self.expiry.interval()),
            assigned_client_identifier: assigned.then(|| self.client_id.clone()),
            server_keep_alive,
            receive_maximum: (settings.receive_maximum < u16::MAX)
                .then_some(settings.receive_maximum),
            topic_alias_maximum: (settings.max_topic_alias > 0).then_some(settings.max_topic_alias),
            maximum_qos: (settings.max_qos < QoS::ExactlyOnce).then_some(settings.max_qos),
            // Absent means available: only a restriction is announced, so
            // the CONNACK stays small for clients with a tiny Maximum
            // Packet Size.
            retain_available: (!settings.retain_available).then_some(false),
            maximum_packet_size: (settings.max_packet_size < MAX_PACKET_SIZE)
                .then_some(settings.max_packet_size),
            ..ConnAckProperties::default()
        };
        connack
    }

    /// The session is attached: CONNACK, then the packets to resend, then
    /// whatever is queued.
    pub(super) fn on_session_opened(
        &mut self,
        session_present: bool,
        session: &mut Session,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        if session.expiry() != self.expiry {
            session.set_expiry(self.expiry);
        }
        let window = self
            .client
            .receive_maximum
            .min(self.settings.max_inflight_messages);
        let (will, connack) = match self.extras.as_mut() {
            Some(extras) => (extras.pending_will.take(), extras.connack.take()),
            None => (None, None),
        };
        self.release_idle_memory();
        let resends = session.connect(now.wall, window, will.map(|will| *will));
        let mut connack = connack.unwrap_or_default();
        connack.session_present = session_present;
        out.push(Action::Send(Packet::ConnAck(connack)));
        for resend in resends {
            out.push(Action::Send(match resend {
                Resend::Publish(publish) => Packet::Publish(publish),
                Resend::PubRel(packet_id) => Packet::PubRel(tern_codec::Ack::new(packet_id)),
            }));
        }
        self.state = State::Connected;
        self.last_received = now.instant;
        self.deliver(session, now, out);
    }
}

/// The will of a CONNECT as a session keeps it: its Message Expiry
/// Interval stays relative until the will is published.
/// The will as a message to publish later, copied out of the receive buffer
/// (it lives as long as the session; see [`detach`]).
fn build_will(will: LastWill) -> Will {
    let delay = will.properties.will_delay_interval.unwrap_or(0);
    let mut publish = Publish::new(detach(&will.topic), Bytes::copy_from_slice(&will.payload));
    publish.qos = will.qos;
    publish.retain = will.retain;
    let properties = will.properties;
    publish.set_properties(PublishProperties {
        payload_format_indicator: properties.payload_format_indicator,
        message_expiry_interval: properties.message_expiry_interval,
        content_type: properties.content_type.as_ref().map(detach),
        response_topic: properties.response_topic.as_ref().map(detach),
        correlation_data: properties
            .correlation_data
            .as_deref()
            .map(Bytes::copy_from_slice),
        user_properties: properties
            .user_properties
            .iter()
            .map(|(name, value)| (detach(name), detach(value)))
            .collect(),
        ..PublishProperties::default()
    });
    Will::new(publish, delay)
}
