//! How a session records its changes for the store, and how the records
//! are trimmed before they are written.

use std::collections::HashSet;

use tern_codec::{ByteString, QoS};

use super::{Queued, Session};
use crate::store::Op;

impl Session {
    /// The changes recorded since the last call, for the store. A message
    /// queued and taken for delivery in the same span is not written twice:
    /// its `Enqueue` and `Dequeue` cancel out.
    pub fn take_changes(&mut self) -> Vec<Op> {
        let Some(changes) = self.changes.take() else {
            // The usual case, and called for every protocol step.
            return Vec::new();
        };
        let mut changes = *changes;
        let enqueued: HashSet<u64> = changes
            .iter()
            .filter_map(|op| match op {
                Op::Enqueue { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect();
        let cancelled: HashSet<u64> = changes
            .iter()
            .filter_map(|op| match op {
                Op::Dequeue { seq, .. } if enqueued.contains(seq) => Some(*seq),
                _ => None,
            })
            .collect();
        if !cancelled.is_empty() {
            changes.retain(|op| match op {
                Op::Enqueue { seq, .. } | Op::Dequeue { seq, .. } => !cancelled.contains(seq),
                _ => true,
            });
        }
        coalesce_records(&mut changes);
        changes
    }

    /// The operations that store this whole session from scratch.
    pub fn snapshot_ops(&self) -> Vec<Op> {
        let client_id = &self.record.client_id;
        let mut ops = vec![Op::PutSession(Box::new(self.record.clone()))];
        ops.extend(
            self.queue()
                .iter()
                .filter(|queued| queued.message.qos() != QoS::AtMostOnce)
                .map(|queued| Op::Enqueue {
                    client_id: client_id.clone(),
                    seq: queued.seq,
                    message: queued.message.clone(),
                }),
        );
        ops.extend(
            self.in_flight()
                .iter()
                .map(|(packet_id, entry)| Op::PutInFlight {
                    client_id: client_id.clone(),
                    packet_id,
                    entry: entry.clone(),
                }),
        );
        ops.extend(
            self.incoming_qos2()
                .iter()
                .map(|packet_id| Op::PutIncomingQos2 {
                    client_id: client_id.clone(),
                    packet_id: *packet_id,
                }),
        );
        ops
    }

    /// The changes not yet taken, allocated if there were none.
    pub(super) fn changes_mut(&mut self) -> &mut Vec<Op> {
        self.changes.get_or_insert_default()
    }

    /// Whether the store keeps this session's changes: only a persistent
    /// session's. A clean session's changes are not even built.
    pub(super) fn is_journaled(&self) -> bool {
        self.record.expiry.is_persistent()
    }

    /// Records a change for the store, built by `op` from the client
    /// identifier, only if [`is_journaled`](Self::is_journaled): on the
    /// delivery path of a clean session, building it (a message's clone,
    /// the client identifier's) and dropping it was a tenth of the work.
    pub(super) fn journal(&mut self, op: impl FnOnce(ByteString) -> Op) {
        if self.is_journaled() {
            let op = op(self.record.client_id.clone());
            self.changes_mut().push(op);
        }
    }

    pub(super) fn journal_record(&mut self) {
        if self.record.expiry.is_persistent() {
            let record = Box::new(self.record.clone());
            self.changes_mut().push(Op::PutSession(record));
        }
    }

    /// Records the removal of a queued message that was stored.
    pub(super) fn journal_removed(&mut self, queued: &Queued) {
        if queued.message.qos() != QoS::AtMostOnce {
            let seq = queued.seq;
            self.journal(|client_id| Op::Dequeue { client_id, seq });
        }
    }
}

/// Keeps one `PutSession` of several (the last, at the place of the first:
/// later operations only need the session to exist), unless a
/// `RemoveSession` makes their order matter.
fn coalesce_records(changes: &mut Vec<Op>) {
    if changes.iter().any(|op| matches!(op, Op::RemoveSession(_))) {
        return;
    }
    let mut puts = changes
        .iter()
        .enumerate()
        .filter(|(_, op)| matches!(op, Op::PutSession(_)))
        .map(|(index, _)| index);
    let (Some(first), Some(last)) = (puts.next(), puts.last()) else {
        return;
    };
    changes.swap(first, last);
    let mut index = 0;
    changes.retain(|op| {
        index += 1;
        index - 1 == first || !matches!(op, Op::PutSession(_))
    });
}
