//! The client's own requests: packet identifiers, the QoS 1 and QoS 2
//! handshakes of outgoing publishes, flow control by the server's receive
//! maximum, and subscribes and unsubscribes waiting for their answers.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};

use tern_codec::{Ack, PacketId, PacketType, Publish, QoS, ReasonCode, SubAck, UnsubAck};

use crate::{Event, ProtocolError, RequestId};

/// What a packet identifier in use is waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Awaiting {
    /// A QoS 1 publish waiting for PUBACK.
    PubAck(RequestId),
    /// A QoS 2 publish waiting for PUBREC.
    PubRec(RequestId),
    /// A QoS 2 publish, released with PUBREL, waiting for PUBCOMP. Keeps
    /// the PUBREC's reason, which may say "no matching subscribers".
    PubComp(RequestId, ReasonCode),
    /// A SUBSCRIBE of this many filters waiting for SUBACK.
    SubAck(RequestId, usize),
    /// An UNSUBSCRIBE of this many filters waiting for UNSUBACK.
    UnsubAck(RequestId, usize),
}

impl Awaiting {
    fn answered_by(self) -> PacketType {
        match self {
            Self::PubAck(_) => PacketType::PubAck,
            Self::PubRec(_) => PacketType::PubRec,
            Self::PubComp(..) => PacketType::PubComp,
            Self::SubAck(..) => PacketType::SubAck,
            Self::UnsubAck(..) => PacketType::UnsubAck,
        }
    }

    fn is_publish(self) -> bool {
        matches!(self, Self::PubAck(_) | Self::PubRec(_) | Self::PubComp(..))
    }
}

/// What to do after a PUBREC.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum PubRecOutcome {
    /// Send PUBREL for this identifier.
    Release(PacketId),
    /// The server refused the message: the exchange ends here.
    Refused(Event),
}

/// Requests of this client that wait for the server, and publishes that
/// wait for a free slot in the server's receive maximum.
#[derive(Debug)]
pub(super) struct Outgoing {
    awaiting: HashMap<PacketId, Awaiting>,
    /// Where the search for a free packet identifier starts.
    next_packet_id: u16,
    /// Accepted publishes not sent yet, in the order they were accepted.
    /// QoS 0 messages wait here too when QoS 1 and 2 ones are held back, so
    /// that messages leave in order.
    queue: VecDeque<(RequestId, Publish)>,
    /// QoS 1 and 2 publishes sent and not completed.
    publishes_in_flight: u32,
    /// The server's receive maximum.
    send_quota: u32,
    /// Topic aliases this client has set on this connection (MQTT 5).
    aliases: HashSet<u16>,
}

impl Outgoing {
    pub(super) fn new() -> Self {
        Self {
            awaiting: HashMap::new(),
            next_packet_id: 1,
            queue: VecDeque::new(),
            publishes_in_flight: 0,
            send_quota: u32::from(u16::MAX),
            aliases: HashSet::new(),
        }
    }

    /// Whether a message with a topic has set `alias` on this connection.
    pub(super) fn alias_is_set(&self, alias: u16) -> bool {
        self.aliases.contains(&alias)
    }

    /// Records that a message with a topic sets `alias`.
    pub(super) fn set_alias(&mut self, alias: u16) {
        self.aliases.insert(alias);
    }

    /// Adopts the server's receive maximum from CONNACK.
    pub(super) fn set_send_quota(&mut self, receive_maximum: u16) {
        self.send_quota = u32::from(receive_maximum.max(1));
    }

    pub(super) fn queued(&self) -> usize {
        self.queue.len()
    }

    pub(super) fn publishes_in_flight(&self) -> usize {
        self.publishes_in_flight as usize
    }

    /// Reserves a free packet identifier for `awaiting`.
    pub(super) fn allocate(&mut self, awaiting: Awaiting) -> Option<PacketId> {
        if self.awaiting.len() >= usize::from(u16::MAX) {
            return None;
        }
        loop {
            let candidate = PacketId::new(self.next_packet_id).unwrap_or(PacketId::MIN);
            self.next_packet_id = self.next_packet_id.checked_add(1).unwrap_or(1);
            if let Entry::Vacant(slot) = self.awaiting.entry(candidate) {
                slot.insert(awaiting);
                if awaiting.is_publish() {
                    self.publishes_in_flight += 1;
                }
                return Some(candidate);
            }
        }
    }

    /// Queues an accepted publish; [`Outgoing::next_to_send`] releases it.
    pub(super) fn enqueue(&mut self, request: RequestId, publish: Publish) {
        self.queue.push_back((request, publish));
    }

    /// The next queued publish that may be sent now, with its packet
    /// identifier set; `None` when the queue is empty or its head must wait
    /// for the receive maximum or a free identifier.
    pub(super) fn next_to_send(&mut self) -> Option<Publish> {
        let (request, publish) = self.queue.front()?;
        let awaiting = match publish.qos {
            QoS::AtMostOnce => None,
            _ if self.publishes_in_flight >= self.send_quota => return None,
            QoS::AtLeastOnce => Some(Awaiting::PubAck(*request)),
            QoS::ExactlyOnce => Some(Awaiting::PubRec(*request)),
        };
        let packet_id = match awaiting {
            None => None,
            Some(awaiting) => Some(self.allocate(awaiting)?),
        };
        let (_, mut publish) = self.queue.pop_front()?;
        publish.packet_id = packet_id;
        Some(publish)
    }

    /// Removes the entry of `packet_id` if `answer` is what it waits for.
    fn answer(
        &mut self,
        answer: PacketType,
        packet_id: PacketId,
    ) -> Result<Awaiting, ProtocolError> {
        let unknown = ProtocolError::UnknownPacketId {
            packet: answer,
            packet_id,
        };
        let Entry::Occupied(entry) = self.awaiting.entry(packet_id) else {
            return Err(unknown);
        };
        if entry.get().answered_by() != answer {
            return Err(unknown);
        }
        let awaiting = entry.remove();
        if awaiting.is_publish() {
            self.publishes_in_flight -= 1;
        }
        Ok(awaiting)
    }

    pub(super) fn on_puback(&mut self, ack: &Ack) -> Result<Event, ProtocolError> {
        let Awaiting::PubAck(request) = self.answer(PacketType::PubAck, ack.packet_id)? else {
            unreachable!("answer() checked the kind");
        };
        Ok(Event::PublishCompleted {
            request,
            packet_id: ack.packet_id,
            reason: ack.reason_code,
        })
    }

    pub(super) fn on_pubrec(&mut self, ack: &Ack) -> Result<PubRecOutcome, ProtocolError> {
        let packet_id = ack.packet_id;
        let Awaiting::PubRec(request) = self.answer(PacketType::PubRec, packet_id)? else {
            unreachable!("answer() checked the kind");
        };
        if !ack.reason_code.is_success() {
            return Ok(PubRecOutcome::Refused(Event::PublishCompleted {
                request,
                packet_id,
                reason: ack.reason_code,
            }));
        }
        // Still in flight: the receive maximum counts it until PUBCOMP.
        self.awaiting
            .insert(packet_id, Awaiting::PubComp(request, ack.reason_code));
        self.publishes_in_flight += 1;
        Ok(PubRecOutcome::Release(packet_id))
    }

    pub(super) fn on_pubcomp(&mut self, ack: &Ack) -> Result<Event, ProtocolError> {
        let Awaiting::PubComp(request, pubrec_reason) =
            self.answer(PacketType::PubComp, ack.packet_id)?
        else {
            unreachable!("answer() checked the kind");
        };
        let reason = if ack.reason_code == ReasonCode::Success {
            pubrec_reason
        } else {
            ack.reason_code
        };
        Ok(Event::PublishCompleted {
            request,
            packet_id: ack.packet_id,
            reason,
        })
    }

    pub(super) fn on_suback(&mut self, suback: SubAck) -> Result<Event, ProtocolError> {
        let Awaiting::SubAck(request, requested) =
            self.answer(PacketType::SubAck, suback.packet_id)?
        else {
            unreachable!("answer() checked the kind");
        };
        check_count(requested, suback.reason_codes.len())?;
        Ok(Event::Subscribed {
            request,
            reason_codes: suback.reason_codes,
        })
    }

    pub(super) fn on_unsuback(
        &mut self,
        unsuback: UnsubAck,
        has_reason_codes: bool,
    ) -> Result<Event, ProtocolError> {
        let Awaiting::UnsubAck(request, requested) =
            self.answer(PacketType::UnsubAck, unsuback.packet_id)?
        else {
            unreachable!("answer() checked the kind");
        };
        if has_reason_codes {
            check_count(requested, unsuback.reason_codes.len())?;
        }
        Ok(Event::Unsubscribed {
            request,
            reason_codes: unsuback.reason_codes,
        })
    }
}

fn check_count(requested: usize, received: usize) -> Result<(), ProtocolError> {
    if requested == received {
        Ok(())
    } else {
        Err(ProtocolError::ReasonCodeCount {
            requested,
            received,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u16) -> PacketId {
        PacketId::new(n).unwrap()
    }

    #[test]
    fn identifiers_skip_those_in_use_and_wrap_past_65535() {
        let mut outgoing = Outgoing::new();
        let request = RequestId(1);
        assert_eq!(outgoing.allocate(Awaiting::PubAck(request)), Some(id(1)));
        assert_eq!(outgoing.allocate(Awaiting::PubAck(request)), Some(id(2)));
        outgoing.next_packet_id = u16::MAX;
        assert_eq!(
            outgoing.allocate(Awaiting::PubAck(request)),
            Some(id(u16::MAX))
        );
        // 1 and 2 are still waiting for PUBACK.
        assert_eq!(outgoing.allocate(Awaiting::PubAck(request)), Some(id(3)));
        assert_eq!(outgoing.publishes_in_flight(), 4);
    }

    #[test]
    fn identifiers_run_out_only_when_all_are_in_use() {
        let mut outgoing = Outgoing::new();
        for _ in 0..u16::MAX {
            assert!(
                outgoing
                    .allocate(Awaiting::SubAck(RequestId(1), 1))
                    .is_some()
            );
        }
        assert_eq!(outgoing.allocate(Awaiting::SubAck(RequestId(1), 1)), None);
    }

    #[test]
    fn an_answer_of_the_wrong_kind_is_refused() {
        let mut outgoing = Outgoing::new();
        let packet_id = outgoing.allocate(Awaiting::PubRec(RequestId(1))).unwrap();
        assert_eq!(
            outgoing.on_puback(&Ack::new(packet_id)),
            Err(ProtocolError::UnknownPacketId {
                packet: PacketType::PubAck,
                packet_id
            })
        );
        // The entry is still there for the right answer.
        assert_eq!(
            outgoing.on_pubrec(&Ack::new(packet_id)),
            Ok(PubRecOutcome::Release(packet_id))
        );
        assert_eq!(outgoing.publishes_in_flight(), 1);
    }
}
