//! Turning [`Op`]s into key/value changes, with the indexes kept exact.
//!
//! Changes go into an overlay over the tree (one per commit group) that is
//! applied as one atomic sled batch. Reads made while building a group see
//! the overlay first, so operations in the same group see each other. A
//! write that fails is rolled back out of the overlay and applies nothing.

use std::collections::BTreeMap;
use std::ops::Bound;

use sled::IVec;
use tern_codec::ByteString;

use super::keys::{self, Key};
use super::sled_error;
use crate::store::record;
use crate::store::{Expired, Op};
use crate::{StoreError, Timestamp};

/// Pending changes: `None` deletes the key.
pub(super) type Overlay = BTreeMap<Vec<u8>, Option<IVec>>;

/// Builds one write into an overlay, able to undo it.
pub(super) struct Staging<'a> {
    tree: &'a sled::Tree,
    overlay: &'a mut Overlay,
    /// Each key's overlay entry before this write touched it, oldest first.
    undo: Vec<(Vec<u8>, Option<Option<IVec>>)>,
}

impl<'a> Staging<'a> {
    pub(super) fn new(tree: &'a sled::Tree, overlay: &'a mut Overlay) -> Self {
        Self {
            tree,
            overlay,
            undo: Vec::new(),
        }
    }

    fn get(&self, key: &[u8]) -> Result<Option<IVec>, StoreError> {
        match self.overlay.get(key) {
            Some(value) => Ok(value.clone()),
            None => self.tree.get(key).map_err(sled_error),
        }
    }

    fn set(&mut self, key: Vec<u8>, value: Option<IVec>) {
        let previous = self.overlay.insert(key.clone(), value);
        self.undo.push((key, previous));
    }

    fn put(&mut self, key: Vec<u8>, value: impl Into<IVec>) {
        self.set(key, Some(value.into()));
    }

    fn delete(&mut self, key: Vec<u8>) {
        self.set(key, None);
    }

    /// Existing keys in `[start, end)` (to the end of the tree if `end` is
    /// `None`), as the overlay leaves them.
    fn keys_in(&self, start: &[u8], end: Option<&[u8]>) -> Result<Vec<Vec<u8>>, StoreError> {
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let range = (Bound::Included(start), upper);
        let mut keys: BTreeMap<Vec<u8>, bool> = BTreeMap::new();
        for item in self.tree.range::<&[u8], _>(range) {
            let (key, _) = item.map_err(sled_error)?;
            keys.insert(key.to_vec(), true);
        }
        for (key, value) in self.overlay.range::<[u8], _>(range) {
            keys.insert(key.clone(), value.is_some());
        }
        Ok(keys
            .into_iter()
            .filter_map(|(key, exists)| exists.then_some(key))
            .collect())
    }

    fn keys_with_prefix(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>, StoreError> {
        let end = prefix_end(prefix);
        self.keys_in(prefix, end.as_deref())
    }

    /// Puts the overlay back as it was before this write.
    pub(super) fn rollback(mut self) {
        while let Some((key, previous)) = self.undo.pop() {
            match previous {
                Some(value) => self.overlay.insert(key, value),
                None => self.overlay.remove(&key),
            };
        }
    }

    /// Applies all of `ops`, or rolls back and returns the first error.
    pub(super) fn write(mut self, ops: &[Op]) -> Result<(), StoreError> {
        for op in ops {
            if let Err(error) = self.apply(op) {
                self.rollback();
                return Err(error);
            }
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op) -> Result<(), StoreError> {
        op.check()?;
        if let Some(client_id) = op.requires_session()
            && self.get(&keys::session(client_id)?)?.is_none()
        {
            return Err(StoreError::UnknownSession {
                client_id: client_id.clone(),
                op: op.name(),
            });
        }
        match op {
            Op::PutSession(session) => {
                let key = keys::session(&session.client_id)?;
                let value = record::encode_session(session)?;
                self.remove_session_index(&key)?;
                if let Some(at) = session.expires_at() {
                    self.put(keys::expiry(at, &key), IVec::default());
                }
                self.put(key, value);
            }
            Op::RemoveSession(client_id) => {
                self.remove_session(client_id)?;
            }
            Op::Enqueue {
                client_id,
                seq,
                message,
            } => {
                let key = keys::queued(client_id, *seq)?;
                let mut value = Vec::with_capacity(64 + message.publish().payload.len());
                record::encode_message(message, &mut value)?;
                self.remove_message(&key)?;
                if let Some(at) = message.expires_at() {
                    self.put(keys::expiry(at, &key), IVec::default());
                }
                self.put(key, value);
            }
            Op::Dequeue { client_id, seq } => {
                self.remove_message(&keys::queued(client_id, *seq)?)?;
            }
            Op::PutInFlight {
                client_id,
                packet_id,
                entry,
            } => {
                let value = record::encode_in_flight(entry)?;
                self.put(keys::in_flight(client_id, *packet_id)?, value);
            }
            Op::RemoveInFlight {
                client_id,
                packet_id,
            } => self.delete(keys::in_flight(client_id, *packet_id)?),
            Op::PutIncomingQos2 {
                client_id,
                packet_id,
            } => self.put(keys::incoming(client_id, *packet_id)?, IVec::default()),
            Op::RemoveIncomingQos2 {
                client_id,
                packet_id,
            } => self.delete(keys::incoming(client_id, *packet_id)?),
            Op::PutRetained(message) => {
                let key = keys::retained(message.topic());
                let mut value = Vec::with_capacity(64 + message.publish().payload.len());
                record::encode_message(message, &mut value)?;
                self.remove_message(&key)?;
                if let Some(at) = message.expires_at() {
                    self.put(keys::expiry(at, &key), IVec::default());
                }
                self.put(key, value);
            }
            Op::RemoveRetained(topic) => {
                self.remove_message(&keys::retained(topic))?;
            }
        }
        Ok(())
    }

    /// Deletes the expiry entry of the session record at `key`, if any.
    fn remove_session_index(&mut self, key: &[u8]) -> Result<(), StoreError> {
        if let Some(old) = self.get(key)? {
            let expires_at = record::session_expiry(&old).map_err(|detail| corrupt(key, detail))?;
            if let Some(at) = expires_at {
                self.delete(keys::expiry(at, key));
            }
        }
        Ok(())
    }

    /// Deletes a session and everything stored for it; false if absent.
    fn remove_session(&mut self, client_id: &str) -> Result<bool, StoreError> {
        let key = keys::session(client_id)?;
        if self.get(&key)?.is_none() {
            return Ok(false);
        }
        self.remove_session_index(&key)?;
        self.delete(key);
        for queued in self.keys_with_prefix(&keys::client_prefix(keys::QUEUED, client_id)?)? {
            self.remove_message(&queued)?;
        }
        for tag in [keys::IN_FLIGHT, keys::INCOMING] {
            for key in self.keys_with_prefix(&keys::client_prefix(tag, client_id)?)? {
                self.delete(key);
            }
        }
        Ok(true)
    }

    /// Deletes the message record at `key` and its expiry entry; false if
    /// there was none.
    fn remove_message(&mut self, key: &[u8]) -> Result<bool, StoreError> {
        let Some(old) = self.get(key)? else {
            return Ok(false);
        };
        let expires_at = record::message_expiry(&old).map_err(|detail| corrupt(key, detail))?;
        if let Some(at) = expires_at {
            self.delete(keys::expiry(at, key));
        }
        self.delete(key.to_vec());
        Ok(true)
    }

    /// Removes everything whose expiry time is at or before `now`, walking
    /// only the due part of the expiry index.
    pub(super) fn expire(mut self, now: Timestamp) -> Result<Expired, StoreError> {
        match self.expire_due(now) {
            Ok(expired) => Ok(expired),
            Err(error) => {
                self.rollback();
                Err(error)
            }
        }
    }

    fn expire_due(&mut self, now: Timestamp) -> Result<Expired, StoreError> {
        let (start, end) = keys::expiry_due(now);
        let mut expired = Expired::default();
        for index_key in self.keys_in(&start, end.as_deref())? {
            let Some(Key::Expiry(_, target)) = keys::parse(&index_key) else {
                return Err(corrupt(&index_key, "not an expiry index key".into()));
            };
            match keys::parse(target) {
                Some(Key::Session(client)) => {
                    let client_id = client_id(client).map_err(|detail| corrupt(target, detail))?;
                    if self.remove_session(&client_id)? {
                        expired.sessions.push(client_id);
                    }
                }
                Some(Key::Queued(..)) => {
                    if self.remove_message(target)? {
                        expired.queued_messages += 1;
                    }
                }
                Some(Key::Retained(_)) => {
                    if self.remove_message(target)? {
                        expired.retained_messages += 1;
                    }
                }
                _ => {
                    return Err(corrupt(
                        &index_key,
                        "the expiry target is not a record key".into(),
                    ));
                }
            }
            self.delete(index_key);
        }
        Ok(expired)
    }
}

/// The first key after every key starting with `prefix`; `None` if there
/// is none (a prefix of 0xFF bytes).
pub(super) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

/// A client identifier taken from a key.
pub(super) fn client_id(bytes: &[u8]) -> Result<ByteString, String> {
    ByteString::try_from(bytes.to_vec()).map_err(|_| "the client identifier is not UTF-8".into())
}

pub(super) fn corrupt(key: &[u8], detail: String) -> StoreError {
    StoreError::CorruptRecord {
        key: keys::printable(key),
        detail,
    }
}
