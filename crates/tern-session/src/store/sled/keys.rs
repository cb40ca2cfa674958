//! The keys of the sled store, designed for prefix and range scans.
//!
//! Every key starts with a one-byte tag. Client identifiers are prefixed
//! with their length (u16, big-endian) so that the keys of client `ab` never
//! share a prefix with those of client `abc`; numbers are big-endian so
//! that byte order is numeric order.
//!
//! | key                                          | value                  |
//! |----------------------------------------------|------------------------|
//! | `M` `schema`                                 | schema version, u32    |
//! | `S` len client                               | session record         |
//! | `Q` len client seq:u64                       | message record         |
//! | `F` len client packet_id:u16                 | in-flight record       |
//! | `I` len client packet_id:u16                 | empty (awaiting PUBREL)|
//! | `R` topic                                    | message record         |
//! | `X` expires_at_ms:u64 target-key             | empty                  |
//!
//! The expiry index (`X`) holds one entry per session, queued message and
//! retained message that has an expiry time; the target key is the full key
//! of the record it expires. Walking `X` up to `now` finds exactly what is
//! due.

use tern_codec::PacketId;

use crate::{StoreError, Timestamp};

pub(super) const META: u8 = b'M';
pub(super) const SESSION: u8 = b'S';
pub(super) const QUEUED: u8 = b'Q';
pub(super) const IN_FLIGHT: u8 = b'F';
pub(super) const INCOMING: u8 = b'I';
pub(super) const RETAINED: u8 = b'R';
pub(super) const EXPIRY: u8 = b'X';

/// The key of the schema version.
pub(super) const SCHEMA: &[u8] = b"Mschema";

/// A key taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Key<'a> {
    Meta(&'a [u8]),
    Session(&'a [u8]),
    Queued(&'a [u8], u64),
    InFlight(&'a [u8], PacketId),
    Incoming(&'a [u8], PacketId),
    Retained(&'a [u8]),
    Expiry(Timestamp, &'a [u8]),
}

/// `tag`, the length of `client_id` and `client_id`: the prefix of all
/// keys of one kind for one client.
pub(super) fn client_prefix(tag: u8, client_id: &str) -> Result<Vec<u8>, StoreError> {
    let len = u16::try_from(client_id.len()).map_err(|_| {
        StoreError::InvalidWrite("a client identifier is longer than 65,535 bytes".into())
    })?;
    let mut key = Vec::with_capacity(3 + client_id.len() + 8);
    key.push(tag);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(client_id.as_bytes());
    Ok(key)
}

pub(super) fn session(client_id: &str) -> Result<Vec<u8>, StoreError> {
    client_prefix(SESSION, client_id)
}

pub(super) fn queued(client_id: &str, seq: u64) -> Result<Vec<u8>, StoreError> {
    let mut key = client_prefix(QUEUED, client_id)?;
    key.extend_from_slice(&seq.to_be_bytes());
    Ok(key)
}

pub(super) fn in_flight(client_id: &str, packet_id: PacketId) -> Result<Vec<u8>, StoreError> {
    let mut key = client_prefix(IN_FLIGHT, client_id)?;
    key.extend_from_slice(&packet_id.get().to_be_bytes());
    Ok(key)
}

pub(super) fn incoming(client_id: &str, packet_id: PacketId) -> Result<Vec<u8>, StoreError> {
    let mut key = client_prefix(INCOMING, client_id)?;
    key.extend_from_slice(&packet_id.get().to_be_bytes());
    Ok(key)
}

pub(super) fn retained(topic: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + topic.len());
    key.push(RETAINED);
    key.extend_from_slice(topic.as_bytes());
    key
}

pub(super) fn expiry(at: Timestamp, target: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(9 + target.len());
    key.push(EXPIRY);
    key.extend_from_slice(&at.as_millis().to_be_bytes());
    key.extend_from_slice(target);
    key
}

/// The range of expiry keys due at `now`: `[start, end)`, or from `start`
/// to the end of the index when `end` is `None`.
pub(super) fn expiry_due(now: Timestamp) -> (Vec<u8>, Option<Vec<u8>>) {
    let start = vec![EXPIRY];
    let end = now.as_millis().checked_add(1).map(|after| {
        let mut end = vec![EXPIRY];
        end.extend_from_slice(&after.to_be_bytes());
        end
    });
    (start, end)
}

fn split_client(rest: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = rest.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    (rest.len() >= len).then(|| rest.split_at(len))
}

fn packet_id(bytes: &[u8]) -> Option<PacketId> {
    let bytes: [u8; 2] = bytes.try_into().ok()?;
    PacketId::new(u16::from_be_bytes(bytes))
}

/// Takes `key` apart; `None` if it is not a key this store writes.
pub(super) fn parse(key: &[u8]) -> Option<Key<'_>> {
    let (&tag, rest) = key.split_first()?;
    match tag {
        META => Some(Key::Meta(rest)),
        SESSION => {
            let (client, rest) = split_client(rest)?;
            rest.is_empty().then_some(Key::Session(client))
        }
        QUEUED => {
            let (client, rest) = split_client(rest)?;
            let seq: [u8; 8] = rest.try_into().ok()?;
            Some(Key::Queued(client, u64::from_be_bytes(seq)))
        }
        IN_FLIGHT => {
            let (client, rest) = split_client(rest)?;
            Some(Key::InFlight(client, packet_id(rest)?))
        }
        INCOMING => {
            let (client, rest) = split_client(rest)?;
            Some(Key::Incoming(client, packet_id(rest)?))
        }
        RETAINED => Some(Key::Retained(rest)),
        EXPIRY => {
            let (at, target) = rest.split_first_chunk::<8>()?;
            Some(Key::Expiry(
                Timestamp::from_millis(u64::from_be_bytes(*at)),
                target,
            ))
        }
        _ => None,
    }
}

/// `key` in a form fit for an error message.
pub(super) fn printable(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(value: u16) -> PacketId {
        PacketId::new(value).expect("non-zero")
    }

    #[test]
    fn keys_round_trip() -> Result<(), StoreError> {
        assert_eq!(parse(&session("c")?), Some(Key::Session(b"c")));
        assert_eq!(parse(&queued("c", 7)?), Some(Key::Queued(b"c", 7)));
        assert_eq!(
            parse(&in_flight("c", id(9))?),
            Some(Key::InFlight(b"c", id(9)))
        );
        assert_eq!(
            parse(&incoming("", id(1))?),
            Some(Key::Incoming(b"", id(1)))
        );
        assert_eq!(parse(&retained("a/b")), Some(Key::Retained(b"a/b")));
        let target = queued("c", 7)?;
        let at = Timestamp::from_millis(99);
        assert_eq!(
            parse(&expiry(at, &target)),
            Some(Key::Expiry(at, &target[..]))
        );
        assert_eq!(parse(SCHEMA), Some(Key::Meta(b"schema")));
        assert_eq!(parse(b"Z"), None);
        assert_eq!(parse(b"S\x00\x05ab"), None, "length longer than the key");
        Ok(())
    }

    #[test]
    fn client_prefixes_do_not_overlap() -> Result<(), StoreError> {
        let short = client_prefix(QUEUED, "ab")?;
        let long = queued("abc", 0)?;
        assert!(!long.starts_with(&short));
        Ok(())
    }

    #[test]
    fn sequence_numbers_sort_numerically() -> Result<(), StoreError> {
        assert!(queued("c", 255)? < queued("c", 256)?);
        assert!(queued("c", u64::MAX - 1)? < queued("c", u64::MAX)?);
        Ok(())
    }

    #[test]
    fn due_range_ends_after_now() {
        let now = Timestamp::from_millis(1_000);
        let (start, end) = expiry_due(now);
        let end = end.expect("bounded");
        let due = expiry(now, b"Sx");
        let later = expiry(Timestamp::from_millis(1_001), b"S");
        assert!(start <= due && due < end);
        assert!(later >= end);
        assert_eq!(expiry_due(Timestamp::from_millis(u64::MAX)).1, None);
    }

    #[test]
    fn overlong_client_ids_are_refused() {
        let long = "x".repeat(70_000);
        assert!(matches!(session(&long), Err(StoreError::InvalidWrite(_))));
    }
}
