//! Messages to the client: delivery from the session's queue within the
//! in-flight window (the client's Receive Maximum), the client's
//! Maximum Packet Size, and the client's PUBACK, PUBREC and PUBCOMP.

use tern_codec::{Ack, MAX_PACKET_SIZE, Packet, ReasonCode};
use tern_session::{AckOutcome, Acknowledgement, DropReason, InFlightState, Session, SessionError};

use super::{Action, Now, OutboundDrop, Protocol};

impl Protocol {
    /// Sends queued messages while the in-flight window has room, at most
    /// `deliveries_per_turn` of them.
    pub(super) fn deliver(&mut self, session: &mut Session, now: Now, out: &mut Vec<Action>) {
        for _ in 0..self.settings.deliveries_per_turn {
            let Some(publish) = session.next_delivery(now.wall) else {
                return;
            };
            let packet_id = publish.packet_id;
            if self.read_denied(&publish.topic) {
                // Withheld by the ACL (counted by the session), its packet
                // identifier free again.
                let dropped = session.drop_delivery(packet_id, DropReason::NotAuthorized);
                debug_assert!(dropped, "a message just taken is in flight");
                continue;
            }
            let mut packet = Packet::Publish(publish);
            // Checked with the whole topic, so that an alias is bound
            // only by a packet that is sent.
            if self.fits_client(&packet) {
                let aliases = self.extras.as_deref_mut();
                if let (Packet::Publish(publish), Some(aliases)) = (
                    &mut packet,
                    aliases.and_then(|extras| extras.outbound_aliases.as_deref_mut()),
                ) {
                    aliases.apply(publish);
                }
                out.push(Action::Send(packet));
                continue;
            }
            // Too large for this client (MQTT 5 §3.1.2.11.4): dropped for
            // this client only, counted, its packet identifier free again.
            let dropped = session.drop_delivery(packet_id, DropReason::PacketTooLarge);
            debug_assert!(dropped, "a message just taken is in flight");
            out.push(Action::Dropped(OutboundDrop::PacketTooLarge));
        }
        if session.can_deliver() {
            out.push(Action::ContinueDelivery);
        }
    }

    /// Whether `packet` is within the client's Maximum Packet Size.
    fn fits_client(&self, packet: &Packet) -> bool {
        let max = self.client.maximum_packet_size;
        max >= MAX_PACKET_SIZE
            || packet
                .encoded_len(self.version)
                .is_ok_and(|len| len <= max as usize)
    }

    /// PUBACK: a QoS 1 delivery is complete.
    pub(super) fn on_puback(
        &mut self,
        ack: Ack,
        session: &mut Session,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        self.complete(ack, Acknowledgement::PubAck, session, now, out);
    }

    /// PUBCOMP: a QoS 2 delivery is complete.
    pub(super) fn on_pubcomp(
        &mut self,
        ack: Ack,
        session: &mut Session,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        self.complete(ack, Acknowledgement::PubComp, session, now, out);
    }

    /// PUBREC: answer PUBREL, or end the exchange on an error code.
    pub(super) fn on_pubrec(
        &mut self,
        ack: Ack,
        session: &mut Session,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        if !ack.reason_code.is_success() {
            return self.complete(ack, Acknowledgement::PubRecError, session, now, out);
        }
        let packet_id = ack.packet_id;
        let pubrel = |reason| Action::Send(Packet::PubRel(Ack::with_reason(packet_id, reason)));
        match session.acknowledge(packet_id, Acknowledgement::PubRec) {
            Ok(_) => out.push(pubrel(ReasonCode::Success)),
            Err(SessionError::PacketIdNotFound { .. }) => {
                out.push(pubrel(ReasonCode::PacketIdentifierNotFound));
            }
            // A PUBREC sent again: send PUBREL again.
            Err(SessionError::UnexpectedAck {
                state: InFlightState::AwaitingPubComp,
                ..
            }) => out.push(pubrel(ReasonCode::Success)),
            Err(error) => self.fail(error.reason_code(), &error.to_string(), session, now, out),
        }
    }

    /// Applies an acknowledgement that ends an exchange, then delivers
    /// into the room it made.
    fn complete(
        &mut self,
        ack: Ack,
        acknowledgement: Acknowledgement,
        session: &mut Session,
        now: Now,
        out: &mut Vec<Action>,
    ) {
        match session.acknowledge(ack.packet_id, acknowledgement) {
            Ok(AckOutcome::Completed) => self.deliver(session, now, out),
            Ok(AckOutcome::SendPubRel) => {
                debug_assert!(false, "{acknowledgement:?} never asks for PUBREL");
            }
            // An acknowledgement of nothing in flight is ignored, as
            // after a resend both copies may be acknowledged.
            Err(SessionError::PacketIdNotFound { .. }) => {}
            Err(error) => self.fail(error.reason_code(), &error.to_string(), session, now, out),
        }
    }
}
