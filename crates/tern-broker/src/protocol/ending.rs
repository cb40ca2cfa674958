//! How a connection ends: DISCONNECT from the client, errors and events
//! on the server's side (MQTT 5 clients get DISCONNECT with a reason code;
//! older ones are just closed), refused CONNECTs, and the fate of the
//! will in each case.

use tern_codec::{Disconnect, Packet, ReasonCode};
use tern_session::{Session, SessionExpiry};

use super::{Action, Now, Protocol, State, WillFate};

impl Protocol {
    /// A DISCONNECT from the client.
    pub(super) fn on_disconnect(
        &mut self,
        disconnect: Disconnect,
        session: &mut Session,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        if let Some(interval) = disconnect.properties.session_expiry_interval {
            // MQTT 5 §3.14.2.2.2: a session that was to end with the
            // connection may not be made persistent at DISCONNECT.
            if self.expiry == SessionExpiry::OnDisconnect && interval != 0 {
                let detail = "session expiry set at DISCONNECT after 0 at CONNECT";
                return self.fail(ReasonCode::ProtocolError, detail, session, now, out);
            }
            self.expiry = self.capped_expiry(SessionExpiry::from_interval(interval));
            session.set_expiry(self.expiry);
        }
        let fate = if disconnect.reason_code == ReasonCode::DisconnectWithWillMessage {
            WillFate::Publish
        } else {
            WillFate::Discard
        };
        self.end(disconnect.reason_code, fate, Some(session), now, out);
    }

    /// Ends the connection because of an error or event on the server's
    /// side: MQTT 5 clients get DISCONNECT with `reason`; the will is
    /// published.
    pub(super) fn fail(
        &mut self,
        reason: ReasonCode,
        detail: &str,
        session: &mut Session,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        self.send_disconnect(reason, detail, out);
        self.end(reason, WillFate::Publish, Some(session), now, out);
    }

    /// Sends DISCONNECT to an MQTT 5 client that got CONNACK.
    pub(super) fn send_disconnect(&self, reason: ReasonCode, detail: &str, out: &mut Vec<Action>) {
        if self.state != State::Connected || !self.version.is_v5() {
            return;
        }
        let mut disconnect = Disconnect::new(reason);
        if !detail.is_empty() {
            disconnect.properties.reason_string = Some(detail.into());
        }
        let packet = self.within_client_limit(Packet::Disconnect(Box::new(disconnect)));
        out.push(Action::Send(packet));
    }

    /// Drops the Reason String and User Properties of a packet the broker
    /// writes when they would make it larger than the client's Maximum
    /// Packet Size: MQTT 5 §3.1.2.11.4 lets a server leave them out, and
    /// [MQTT-3.1.2-24] forbids the larger packet.
    pub(super) fn within_client_limit(&self, mut packet: Packet) -> Packet {
        let limit = self.client.maximum_packet_size as usize;
        let fits = |packet: &Packet| {
            packet
                .encoded_len(self.version)
                .is_ok_and(|len| len <= limit)
        };
        if !self.version.is_v5() || fits(&packet) {
            return packet;
        }
        match &mut packet {
            Packet::PubAck(ack)
            | Packet::PubRec(ack)
            | Packet::PubRel(ack)
            | Packet::PubComp(ack) => {
                ack.properties.reason_string = None;
                ack.properties.user_properties.clear();
            }
            Packet::Disconnect(disconnect) => {
                disconnect.properties.reason_string = None;
                disconnect.properties.user_properties.clear();
            }
            _ => {}
        }
        packet
    }

    /// Refuses a CONNECT with `reason` in CONNACK and closes.
    pub(super) fn refuse(&mut self, reason: ReasonCode, out: &mut Vec<Action>) {
        let connack = tern_codec::ConnAck::new(reason, false);
        out.push(Action::Send(Packet::ConnAck(Box::new(connack))));
        self.state = State::Closed;
        out.push(Action::Close { reason });
    }

    /// Detaches from the session (if attached) and closes.
    pub(super) fn end(
        &mut self,
        reason: ReasonCode,
        fate: WillFate,
        session: Option<&mut Session>,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        if let Some(session) = session {
            if fate == WillFate::Discard {
                session.discard_will();
            }
            session.disconnect(now.wall);
            // Its expiry counts from now, when it is published.
            if let Some(message) = session.take_due_will(now.wall) {
                out.push(Action::Route { message, ack: None });
            }
        }
        self.state = State::Closed;
        out.push(Action::Close { reason });
    }

    /// `expiry` bounded by the configured maximum.
    pub(super) fn capped_expiry(&self, expiry: SessionExpiry) -> SessionExpiry {
        match self.settings.session_expiry_max {
            Some(max) if expiry.interval() > max => SessionExpiry::from_interval(max),
            _ => expiry,
        }
    }
}
