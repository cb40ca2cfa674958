//! [`MemoryStore`]: a [`SessionStore`] in memory.
//!
//! It keeps typed values in ordered maps, with an expiry index like the
//! sled store's. It is the reference the conformance suite holds the sled
//! store to, and the store of a broker configured without persistence.
//! Every write completes at once; nothing survives the process.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Mutex, MutexGuard};

use tern_codec::{ByteString, PacketId};

use super::{Expired, Op, Pending, SessionRecord, SessionStore, StoreSummary, StoredSession};
use crate::session::{InFlight, Queued};
use crate::{Message, StoreError, Timestamp};

/// A session store in memory; see the module docs.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    sessions: BTreeMap<ByteString, Entry>,
    retained: BTreeMap<ByteString, Message>,
    expiry: BTreeSet<(Timestamp, Target)>,
}

#[derive(Debug)]
struct Entry {
    record: SessionRecord,
    queue: BTreeMap<u64, Message>,
    in_flight: BTreeMap<PacketId, InFlight>,
    incoming_qos2: BTreeSet<PacketId>,
}

/// What an expiry index entry points to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Target {
    Session(ByteString),
    Queued(ByteString, u64),
    Retained(ByteString),
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        self.state.lock().map_err(|_| {
            StoreError::Engine("a thread panicked while writing the memory store".into())
        })
    }
}

impl State {
    /// Refuses the whole write if any operation in it is invalid, so that
    /// a failed write applies nothing.
    fn validate(&self, ops: &[Op]) -> Result<(), StoreError> {
        let mut created = HashSet::new();
        let mut removed = HashSet::new();
        for op in ops {
            op.check()?;
            match op {
                Op::PutSession(record) => {
                    removed.remove(&record.client_id);
                    created.insert(record.client_id.clone());
                }
                Op::RemoveSession(client_id) => {
                    created.remove(client_id);
                    removed.insert(client_id.clone());
                }
                _ => {}
            }
            if let Some(client_id) = op.requires_session() {
                let exists = created.contains(client_id)
                    || (self.sessions.contains_key(client_id) && !removed.contains(client_id));
                if !exists {
                    return Err(StoreError::UnknownSession {
                        client_id: client_id.clone(),
                        op: op.name(),
                    });
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::PutSession(record) => {
                let record = *record;
                let client_id = record.client_id.clone();
                let expires_at = record.expires_at();
                match self.sessions.get_mut(&client_id) {
                    Some(entry) => {
                        if let Some(at) = entry.record.expires_at() {
                            self.expiry
                                .remove(&(at, Target::Session(client_id.clone())));
                        }
                        entry.record = record;
                    }
                    None => {
                        let entry = Entry {
                            record,
                            queue: BTreeMap::new(),
                            in_flight: BTreeMap::new(),
                            incoming_qos2: BTreeSet::new(),
                        };
                        self.sessions.insert(client_id.clone(), entry);
                    }
                }
                if let Some(at) = expires_at {
                    self.expiry.insert((at, Target::Session(client_id)));
                }
            }
            Op::RemoveSession(client_id) => self.remove_session(&client_id),
            Op::Enqueue {
                client_id,
                seq,
                message,
            } => {
                self.dequeue(&client_id, seq);
                if let Some(entry) = self.sessions.get_mut(&client_id) {
                    if let Some(at) = message.expires_at() {
                        self.expiry.insert((at, Target::Queued(client_id, seq)));
                    }
                    entry.queue.insert(seq, message);
                }
            }
            Op::Dequeue { client_id, seq } => {
                self.dequeue(&client_id, seq);
            }
            Op::PutInFlight {
                client_id,
                packet_id,
                entry,
            } => {
                if let Some(session) = self.sessions.get_mut(&client_id) {
                    session.in_flight.insert(packet_id, entry);
                }
            }
            Op::RemoveInFlight {
                client_id,
                packet_id,
            } => {
                if let Some(session) = self.sessions.get_mut(&client_id) {
                    session.in_flight.remove(&packet_id);
                }
            }
            Op::PutIncomingQos2 {
                client_id,
                packet_id,
            } => {
                if let Some(session) = self.sessions.get_mut(&client_id) {
                    session.incoming_qos2.insert(packet_id);
                }
            }
            Op::RemoveIncomingQos2 {
                client_id,
                packet_id,
            } => {
                if let Some(session) = self.sessions.get_mut(&client_id) {
                    session.incoming_qos2.remove(&packet_id);
                }
            }
            Op::PutRetained(message) => {
                let topic = message.publish().topic.clone();
                self.remove_retained(&topic);
                if let Some(at) = message.expires_at() {
                    self.expiry.insert((at, Target::Retained(topic.clone())));
                }
                self.retained.insert(topic, message);
            }
            Op::RemoveRetained(topic) => {
                self.remove_retained(&topic);
            }
        }
    }

    fn remove_session(&mut self, client_id: &ByteString) {
        let Some(entry) = self.sessions.remove(client_id) else {
            return;
        };
        if let Some(at) = entry.record.expires_at() {
            self.expiry
                .remove(&(at, Target::Session(client_id.clone())));
        }
        for (seq, message) in entry.queue {
            if let Some(at) = message.expires_at() {
                self.expiry
                    .remove(&(at, Target::Queued(client_id.clone(), seq)));
            }
        }
    }

    fn dequeue(&mut self, client_id: &ByteString, seq: u64) -> bool {
        let Some(entry) = self.sessions.get_mut(client_id) else {
            return false;
        };
        let Some(message) = entry.queue.remove(&seq) else {
            return false;
        };
        if let Some(at) = message.expires_at() {
            self.expiry
                .remove(&(at, Target::Queued(client_id.clone(), seq)));
        }
        true
    }

    fn remove_retained(&mut self, topic: &ByteString) -> bool {
        let Some(message) = self.retained.remove(topic) else {
            return false;
        };
        if let Some(at) = message.expires_at() {
            self.expiry.remove(&(at, Target::Retained(topic.clone())));
        }
        true
    }

    fn expected_index(&self) -> BTreeSet<(Timestamp, Target)> {
        let mut index = BTreeSet::new();
        for (client_id, entry) in &self.sessions {
            if let Some(at) = entry.record.expires_at() {
                index.insert((at, Target::Session(client_id.clone())));
            }
            for (seq, message) in &entry.queue {
                if let Some(at) = message.expires_at() {
                    index.insert((at, Target::Queued(client_id.clone(), *seq)));
                }
            }
        }
        for (topic, message) in &self.retained {
            if let Some(at) = message.expires_at() {
                index.insert((at, Target::Retained(topic.clone())));
            }
        }
        index
    }
}

impl SessionStore for MemoryStore {
    fn write(&self, ops: Vec<Op>) -> Pending<()> {
        let result = self.lock().and_then(|mut state| {
            state.validate(&ops)?;
            for op in ops {
                state.apply(op);
            }
            Ok(())
        });
        Pending::ready(result)
    }

    fn expire(&self, now: Timestamp) -> Pending<Expired> {
        let result = self.lock().map(|mut state| {
            let due: Vec<(Timestamp, Target)> = state
                .expiry
                .iter()
                .take_while(|(at, _)| *at <= now)
                .cloned()
                .collect();
            let mut expired = Expired::default();
            for (_, target) in due {
                match target {
                    Target::Session(client_id) => {
                        state.remove_session(&client_id);
                        expired.sessions.push(client_id);
                    }
                    Target::Queued(client_id, seq) => {
                        if state.dequeue(&client_id, seq) {
                            expired.queued_messages += 1;
                        }
                    }
                    Target::Retained(topic) => {
                        if state.remove_retained(&topic) {
                            expired.retained_messages += 1;
                        }
                    }
                }
            }
            expired
        });
        Pending::ready(result)
    }

    fn flush(&self) -> Pending<()> {
        Pending::ready(Ok(()))
    }

    fn load_session(&self, client_id: &str) -> Result<Option<StoredSession>, StoreError> {
        let state = self.lock()?;
        let Some(entry) = state.sessions.get(client_id) else {
            return Ok(None);
        };
        Ok(Some(StoredSession {
            record: entry.record.clone(),
            queue: entry
                .queue
                .iter()
                .map(|(seq, message)| Queued {
                    seq: *seq,
                    message: message.clone(),
                })
                .collect(),
            in_flight: entry
                .in_flight
                .iter()
                .map(|(id, entry)| (*id, entry.clone()))
                .collect(),
            incoming_qos2: entry.incoming_qos2.iter().copied().collect(),
        }))
    }

    fn client_ids(&self) -> Result<Vec<ByteString>, StoreError> {
        Ok(self.lock()?.sessions.keys().cloned().collect())
    }

    fn retained(&self) -> Result<Vec<Message>, StoreError> {
        Ok(self.lock()?.retained.values().cloned().collect())
    }

    fn verify(&self) -> Result<StoreSummary, StoreError> {
        let state = self.lock()?;
        if state.expected_index() != state.expiry {
            return Err(StoreError::Inconsistent(
                "the expiry index does not match the stored expiry times".into(),
            ));
        }
        let mut summary = StoreSummary {
            sessions: state.sessions.len() as u64,
            retained_messages: state.retained.len() as u64,
            expiry_entries: state.expiry.len() as u64,
            ..StoreSummary::default()
        };
        for entry in state.sessions.values() {
            summary.queued_messages += entry.queue.len() as u64;
            summary.in_flight += entry.in_flight.len() as u64;
            summary.incoming_qos2 += entry.incoming_qos2.len() as u64;
        }
        Ok(summary)
    }
}
