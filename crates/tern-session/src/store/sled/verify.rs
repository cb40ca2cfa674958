//! A full check of a sled store: every record decodes, every message
//! belongs to a stored session, and the expiry index holds exactly one
//! entry per record with an expiry time.

use std::collections::{BTreeSet, HashSet};

use super::apply::{client_id, corrupt};
use super::keys::{self, Key};
use super::{SCHEMA_VERSION, sled_error};
use crate::StoreError;
use crate::store::StoreSummary;
use crate::store::record;

pub(super) fn verify(db: &sled::Db) -> Result<StoreSummary, StoreError> {
    let mut summary = StoreSummary::default();
    let mut sessions = HashSet::new();
    let mut owners: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    let mut expected_index = BTreeSet::new();
    let mut index = BTreeSet::new();
    let mut schema = None;
    for item in db.iter() {
        let (key, value) = item.map_err(sled_error)?;
        let parsed = keys::parse(&key).ok_or_else(|| corrupt(&key, "unknown key".into()))?;
        let fail = |detail: String| corrupt(&key, detail);
        match parsed {
            Key::Meta(name) => {
                if name == &keys::SCHEMA[1..] {
                    let bytes: [u8; 4] = value
                        .as_ref()
                        .try_into()
                        .map_err(|_| fail("the schema record is not 4 bytes".into()))?;
                    schema = Some(u32::from_be_bytes(bytes));
                }
            }
            Key::Session(client) => {
                let record = record::decode_session(client_id(client).map_err(fail)?, &value)
                    .map_err(fail)?;
                if let Some(at) = record.expires_at() {
                    expected_index.insert(keys::expiry(at, &key));
                }
                sessions.insert(client.to_vec());
                summary.sessions += 1;
            }
            Key::Queued(client, _) => {
                let message = record::decode_message(&value).map_err(fail)?;
                if let Some(at) = message.expires_at() {
                    expected_index.insert(keys::expiry(at, &key));
                }
                owners.push((client.to_vec(), key.to_vec()));
                summary.queued_messages += 1;
            }
            Key::InFlight(client, _) => {
                record::decode_in_flight(&value).map_err(fail)?;
                owners.push((client.to_vec(), key.to_vec()));
                summary.in_flight += 1;
            }
            Key::Incoming(client, _) => {
                if !value.is_empty() {
                    return Err(fail("an incoming packet identifier has a value".into()));
                }
                owners.push((client.to_vec(), key.to_vec()));
                summary.incoming_qos2 += 1;
            }
            Key::Retained(topic) => {
                let message = record::decode_message(&value).map_err(fail)?;
                if message.topic().as_bytes() != topic {
                    return Err(fail(
                        "the retained message's topic differs from its key".into(),
                    ));
                }
                if let Some(at) = message.expires_at() {
                    expected_index.insert(keys::expiry(at, &key));
                }
                summary.retained_messages += 1;
            }
            Key::Expiry(..) => {
                index.insert(key.to_vec());
                summary.expiry_entries += 1;
            }
        }
    }
    match schema {
        Some(SCHEMA_VERSION) => {}
        Some(other) => {
            return Err(StoreError::Inconsistent(format!("schema record {other}")));
        }
        None => return Err(StoreError::Inconsistent("no schema record".into())),
    }
    if let Some((_, key)) = owners.iter().find(|(client, _)| !sessions.contains(client)) {
        return Err(StoreError::Inconsistent(format!(
            "record {} belongs to a client with no session record",
            keys::printable(key)
        )));
    }
    if let Some(missing) = expected_index.difference(&index).next() {
        return Err(StoreError::Inconsistent(format!(
            "expiry index entry {} is missing",
            keys::printable(missing)
        )));
    }
    if let Some(stale) = index.difference(&expected_index).next() {
        return Err(StoreError::Inconsistent(format!(
            "expiry index entry {} points to no record with that expiry",
            keys::printable(stale)
        )));
    }
    Ok(summary)
}
