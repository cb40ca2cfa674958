//! Outgoing QoS 1 and 2 messages awaiting acknowledgement, and the
//! allocation of their packet identifiers.
//!
//! QoS 1: `AwaitingPubAck` until PUBACK. QoS 2: `AwaitingPubRec` until
//! PUBREC, then `AwaitingPubComp` (the broker has sent PUBREL and no longer
//! needs the message) until PUBCOMP. A PUBREC carrying an error reason code
//! ends the exchange at once (MQTT 5 §4.3.3).

use std::collections::VecDeque;

use crate::{Message, SessionError};
use tern_codec::PacketId;

/// One outgoing message in flight, by its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InFlight {
    /// QoS 1 PUBLISH sent; waiting for PUBACK.
    AwaitingPubAck(Message),
    /// QoS 2 PUBLISH sent; waiting for PUBREC.
    AwaitingPubRec(Message),
    /// PUBREL sent; waiting for PUBCOMP.
    AwaitingPubComp,
}

impl InFlight {
    /// The state without the message.
    pub fn state(&self) -> InFlightState {
        match self {
            Self::AwaitingPubAck(_) => InFlightState::AwaitingPubAck,
            Self::AwaitingPubRec(_) => InFlightState::AwaitingPubRec,
            Self::AwaitingPubComp => InFlightState::AwaitingPubComp,
        }
    }

    /// The message, until the QoS 2 exchange has passed PUBREC.
    pub fn message(&self) -> Option<&Message> {
        match self {
            Self::AwaitingPubAck(message) | Self::AwaitingPubRec(message) => Some(message),
            Self::AwaitingPubComp => None,
        }
    }
}

/// The state of an in-flight message: which acknowledgement it awaits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InFlightState {
    /// Waiting for PUBACK.
    AwaitingPubAck,
    /// Waiting for PUBREC.
    AwaitingPubRec,
    /// Waiting for PUBCOMP.
    AwaitingPubComp,
}

/// An acknowledgement received from the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Acknowledgement {
    /// PUBACK.
    PubAck,
    /// PUBREC with a success reason code: answer with PUBREL.
    PubRec,
    /// PUBREC with an error reason code: the exchange ends.
    PubRecError,
    /// PUBCOMP.
    PubComp,
}

/// What an acknowledgement did to its in-flight message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The exchange is over and the packet identifier is free again.
    Completed,
    /// The message moved to `AwaitingPubComp`: send PUBREL.
    SendPubRel,
}

/// The in-flight window of one session: its entries, in the order they
/// were sent.
///
/// Two queues side by side rather than a map: MQTT has a client
/// acknowledge in the order it received (MQTT 5 §4.6), so the entry
/// acknowledged is almost always the first, found and removed in constant
/// time without moving the others. A client acknowledging out of order
/// costs a scan of `ids`, at most the limit's 2-byte identifiers; a map
/// keyed by identifier cost a search and a shift of ~100-byte entries for
/// every acknowledgement (a tenth of a QoS 1 fan-out's profile).
///
/// The window holds its entries only. The limit (the client's Receive
/// Maximum) and the identifier to try next are the session's, kept while
/// an empty window is freed; see
/// [`Session::release_idle_memory`](super::Session::release_idle_memory).
#[derive(Debug, Clone, Default)]
pub struct InFlightWindow {
    /// The packet identifiers, oldest first.
    ids: VecDeque<PacketId>,
    /// The entry of each identifier, at the same index.
    entries: VecDeque<InFlight>,
}

impl InFlightWindow {
    /// An empty window.
    pub const fn new() -> Self {
        Self {
            ids: VecDeque::new(),
            entries: VecDeque::new(),
        }
    }

    /// Number of messages in flight.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Where `packet_id` is, looking from the oldest.
    fn position(&self, packet_id: PacketId) -> Option<usize> {
        let (front, back) = self.ids.as_slices();
        front.iter().position(|id| *id == packet_id).or_else(|| {
            back.iter()
                .position(|id| *id == packet_id)
                .map(|index| front.len() + index)
        })
    }

    /// The entry for `packet_id`.
    pub fn get(&self, packet_id: PacketId) -> Option<&InFlight> {
        self.entries.get(self.position(packet_id)?)
    }

    /// The entries, oldest first (the order to send them again in).
    pub fn iter(&self) -> impl Iterator<Item = (PacketId, &InFlight)> {
        self.ids.iter().copied().zip(self.entries.iter())
    }

    /// A free packet identifier: `next_id` if it is not in use, else the
    /// first free one after it, wrapping from 65,535 to 1. `next_id` moves
    /// past the identifier returned. `None` only when every identifier is
    /// in use; the caller checks the window's limit.
    pub fn allocate(&self, next_id: &mut u16) -> Option<PacketId> {
        for _ in 0..u16::MAX {
            let candidate = PacketId::new(*next_id);
            *next_id = next_id.checked_add(1).unwrap_or(1);
            if let Some(id) = candidate
                && self.position(id).is_none()
            {
                return Some(id);
            }
        }
        None
    }

    /// Records `entry` under `packet_id`, replacing any entry there; a new
    /// one is the newest.
    pub fn insert(&mut self, packet_id: PacketId, entry: InFlight) {
        match self.position(packet_id) {
            Some(index) => self.entries[index] = entry,
            None => {
                self.ids.push_back(packet_id);
                self.entries.push_back(entry);
            }
        }
    }

    /// Records `entry` under `packet_id`, just allocated: the newest, with
    /// no search for an entry to replace.
    pub fn push(&mut self, packet_id: PacketId, entry: InFlight) {
        debug_assert!(
            self.position(packet_id).is_none(),
            "{packet_id:?} is in use"
        );
        self.ids.push_back(packet_id);
        self.entries.push_back(entry);
    }

    /// Removes the entry for `packet_id`, whatever its state.
    pub fn remove(&mut self, packet_id: PacketId) -> Option<InFlight> {
        let index = self.position(packet_id)?;
        Some(self.remove_at(index))
    }

    fn remove_at(&mut self, index: usize) -> InFlight {
        self.ids.remove(index);
        let entry = self
            .entries
            .remove(index)
            .expect("ids and entries have the same length");
        if self.ids.is_empty() {
            // Not kept by an idle session, as a map's nodes would not be.
            self.ids = VecDeque::new();
            self.entries = VecDeque::new();
        }
        entry
    }

    /// Applies an acknowledgement from the client.
    pub fn acknowledge(
        &mut self,
        packet_id: PacketId,
        ack: Acknowledgement,
    ) -> Result<AckOutcome, SessionError> {
        let Some(index) = self.position(packet_id) else {
            return Err(SessionError::PacketIdNotFound { packet_id, ack });
        };
        let entry = &mut self.entries[index];
        let outcome = match (entry.state(), ack) {
            (InFlightState::AwaitingPubAck, Acknowledgement::PubAck)
            | (InFlightState::AwaitingPubRec, Acknowledgement::PubRecError)
            | (InFlightState::AwaitingPubComp, Acknowledgement::PubComp) => AckOutcome::Completed,
            (InFlightState::AwaitingPubRec, Acknowledgement::PubRec) => {
                *entry = InFlight::AwaitingPubComp;
                return Ok(AckOutcome::SendPubRel);
            }
            (state, ack) => {
                return Err(SessionError::UnexpectedAck {
                    packet_id,
                    state,
                    ack,
                });
            }
        };
        self.remove_at(index);
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use tern_codec::{Publish, QoS};

    use super::*;

    fn id(value: u16) -> PacketId {
        PacketId::new(value).expect("test ids are non-zero")
    }

    fn message() -> Message {
        let mut publish = Publish::new("t", "x");
        publish.qos = QoS::ExactlyOnce;
        Message::with_expiry(publish, None)
    }

    #[test]
    fn allocation_counts_up_from_one() {
        let mut window = InFlightWindow::new();
        let mut next_id = 1;
        let first = window.allocate(&mut next_id);
        assert_eq!(first, Some(id(1)));
        window.insert(id(1), InFlight::AwaitingPubComp);
        assert_eq!(window.allocate(&mut next_id), Some(id(2)));
    }

    #[test]
    fn allocation_wraps_and_skips_identifiers_in_use() {
        let mut window = InFlightWindow::new();
        let mut next_id = 65_534;
        for used in [65_535, 1, 2] {
            window.insert(id(used), InFlight::AwaitingPubComp);
        }
        assert_eq!(window.allocate(&mut next_id), Some(id(65_534)));
        assert_eq!(
            window.allocate(&mut next_id),
            Some(id(3)),
            "skips 65,535, 1 and 2"
        );
        assert_eq!(window.allocate(&mut next_id), Some(id(4)));
        assert_eq!(next_id, 5);
    }

    #[test]
    fn every_identifier_in_use_allocates_nothing() {
        let mut window = InFlightWindow::new();
        for value in 1..=u16::MAX {
            window.ids.push_back(id(value));
            window.entries.push_back(InFlight::AwaitingPubComp);
        }
        assert_eq!(window.allocate(&mut 1), None);
    }

    #[test]
    fn qos1_completes_on_puback() {
        let mut window = InFlightWindow::new();
        window.insert(id(7), InFlight::AwaitingPubAck(message()));
        assert_eq!(
            window.acknowledge(id(7), Acknowledgement::PubComp),
            Err(SessionError::UnexpectedAck {
                packet_id: id(7),
                state: InFlightState::AwaitingPubAck,
                ack: Acknowledgement::PubComp,
            })
        );
        assert_eq!(
            window.acknowledge(id(7), Acknowledgement::PubAck),
            Ok(AckOutcome::Completed)
        );
        assert!(window.is_empty());
        assert_eq!(
            window.acknowledge(id(7), Acknowledgement::PubAck),
            Err(SessionError::PacketIdNotFound {
                packet_id: id(7),
                ack: Acknowledgement::PubAck
            })
        );
    }

    #[test]
    fn qos2_moves_through_pubrec_to_pubcomp() {
        let mut window = InFlightWindow::new();
        window.insert(id(8), InFlight::AwaitingPubRec(message()));
        assert!(window.acknowledge(id(8), Acknowledgement::PubAck).is_err());
        assert_eq!(
            window.acknowledge(id(8), Acknowledgement::PubRec),
            Ok(AckOutcome::SendPubRel)
        );
        assert_eq!(window.get(id(8)), Some(&InFlight::AwaitingPubComp));
        assert!(window.acknowledge(id(8), Acknowledgement::PubRec).is_err());
        assert_eq!(
            window.acknowledge(id(8), Acknowledgement::PubComp),
            Ok(AckOutcome::Completed)
        );
        assert!(window.is_empty());
    }

    #[test]
    fn pubrec_with_an_error_ends_the_exchange() {
        let mut window = InFlightWindow::new();
        window.insert(id(9), InFlight::AwaitingPubRec(message()));
        assert_eq!(
            window.acknowledge(id(9), Acknowledgement::PubRecError),
            Ok(AckOutcome::Completed)
        );
        assert!(window.get(id(9)).is_none());
    }

    #[test]
    fn acknowledgements_out_of_order_find_their_entry() {
        let mut window = InFlightWindow::new();
        let mut next_id = 1;
        for value in 1..=4 {
            let packet_id = window.allocate(&mut next_id).expect("a free id");
            assert_eq!(packet_id, id(value));
            window.insert(packet_id, InFlight::AwaitingPubAck(message()));
        }
        assert_eq!(
            window.acknowledge(id(3), Acknowledgement::PubAck),
            Ok(AckOutcome::Completed)
        );
        assert_eq!(
            window.acknowledge(id(1), Acknowledgement::PubAck),
            Ok(AckOutcome::Completed)
        );
        let left: Vec<u16> = window
            .iter()
            .map(|(packet_id, _)| packet_id.get())
            .collect();
        assert_eq!(left, [2, 4], "the rest, oldest first");
        assert_eq!(window.allocate(&mut next_id), Some(id(5)));
    }

    #[test]
    fn entries_come_out_in_the_order_they_were_sent_across_the_wrap() {
        let mut window = InFlightWindow::new();
        let mut next_id = 65_534;
        for _ in 0..4 {
            let packet_id = window.allocate(&mut next_id).expect("a free id");
            window.insert(packet_id, InFlight::AwaitingPubComp);
        }
        let order: Vec<u16> = window
            .iter()
            .map(|(packet_id, _)| packet_id.get())
            .collect();
        assert_eq!(order, [65_534, 65_535, 1, 2]);
    }
}
