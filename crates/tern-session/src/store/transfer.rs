//! Sessions and messages as bytes, to move them between the nodes of a
//! cluster: a message forwarded to the node of its subscribers, a session
//! handed over to the node its client reconnected to.
//!
//! The records are the ones the sled store writes (see its record module:
//! versioned, big-endian, a PUBLISH in tern-codec's MQTT 5 encoding), so a
//! session moves with exactly what a restart would keep — plus its QoS 0
//! messages, which a restart drops but a handover need not.
//!
//! **Session bundle**: format byte (1); u16 length + client identifier;
//! u32 length + session record; u32 count of queued messages, each u64
//! sequence number + u32 length + message record; u32 count of in-flight
//! entries, each u16 packet identifier + u32 length + in-flight record;
//! u32 count of incoming QoS 2 packet identifiers, each u16.

use bytes::{Buf, BufMut};
use tern_codec::{ByteString, PacketId};

use super::record;
use super::{SessionRecord, StoredSession};
use crate::session::Queued;
use crate::{Message, Session, StoreError};

const BUNDLE_FORMAT: u8 = 1;

/// Why bytes received from another node are not a session or a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a {what} received from another node cannot be read: {detail}; the nodes may run \
     incompatible releases: upgrade every node to the same release"
)]
pub struct TransferError {
    /// A message or a session.
    pub what: &'static str,
    /// What is wrong with it.
    pub detail: String,
}

fn message_error(detail: String) -> TransferError {
    TransferError {
        what: "message",
        detail,
    }
}

fn session_error(detail: impl Into<String>) -> TransferError {
    TransferError {
        what: "session",
        detail: detail.into(),
    }
}

/// `message` as a record, with its delivery QoS and expiry time.
pub fn encode_message(message: &Message) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(message.publish().payload.len() + 64);
    record::encode_message(message, &mut out)?;
    Ok(out)
}

/// The message [`encode_message`] wrote.
pub fn decode_message(bytes: &[u8]) -> Result<Message, TransferError> {
    record::decode_message(bytes).map_err(message_error)
}

/// A session record (subscriptions, expiry, will) as the sled store
/// writes it: what a cluster replicates of every persistent session.
pub fn encode_record(record: &SessionRecord) -> Result<Vec<u8>, StoreError> {
    record::encode_session(record)
}

/// The record [`encode_record`] wrote, for client `client_id`.
pub fn decode_record(client_id: ByteString, bytes: &[u8]) -> Result<SessionRecord, TransferError> {
    record::decode_session(client_id, bytes).map_err(session_error)
}

/// Everything `session` holds, as a [`StoredSession`]: what another node
/// restores with [`Session::restore`].
pub fn stored_session(session: &Session) -> StoredSession {
    StoredSession {
        record: session.record().clone(),
        queue: session.queue().iter().cloned().collect(),
        in_flight: session
            .in_flight()
            .iter()
            .map(|(packet_id, entry)| (packet_id, entry.clone()))
            .collect(),
        incoming_qos2: session.incoming_qos2().iter().copied().collect(),
    }
}

/// `session` as one bundle of bytes; see the module docs.
pub fn encode_session(session: &StoredSession) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    out.put_u8(BUNDLE_FORMAT);
    let client_id = session.record.client_id.as_bytes();
    let Ok(client_id_len) = u16::try_from(client_id.len()) else {
        return Err(StoreError::InvalidWrite(
            "a session's client identifier is longer than 65,535 bytes".into(),
        ));
    };
    out.put_u16(client_id_len);
    out.put_slice(client_id);
    put_chunk(&mut out, &record::encode_session(&session.record)?);
    put_count(&mut out, session.queue.len());
    for queued in &session.queue {
        out.put_u64(queued.seq);
        put_chunk(&mut out, &encode_message(&queued.message)?);
    }
    put_count(&mut out, session.in_flight.len());
    for (packet_id, entry) in &session.in_flight {
        out.put_u16(packet_id.get());
        put_chunk(&mut out, &record::encode_in_flight(entry)?);
    }
    put_count(&mut out, session.incoming_qos2.len());
    for packet_id in &session.incoming_qos2 {
        out.put_u16(packet_id.get());
    }
    Ok(out)
}

/// The session [`encode_session`] wrote.
pub fn decode_session(bytes: &[u8]) -> Result<StoredSession, TransferError> {
    let mut reader = bytes;
    let format = take_u8(&mut reader)?;
    if format != BUNDLE_FORMAT {
        return Err(session_error(format!(
            "bundle format {format} (this release reads {BUNDLE_FORMAT})"
        )));
    }
    let client_id_len = usize::from(take_u16(&mut reader)?);
    let client_id = std::str::from_utf8(take(&mut reader, client_id_len)?)
        .map_err(|_| session_error("the client identifier is not UTF-8"))?;
    let client_id = ByteString::from(client_id);
    let record_bytes = take_chunk(&mut reader)?;
    let record = record::decode_session(client_id, record_bytes).map_err(session_error)?;
    let mut queue = Vec::new();
    for _ in 0..take_u32(&mut reader)? {
        let seq = take_u64(&mut reader)?;
        let message = record::decode_message(take_chunk(&mut reader)?).map_err(session_error)?;
        queue.push(Queued { seq, message });
    }
    let mut in_flight = Vec::new();
    for _ in 0..take_u32(&mut reader)? {
        let packet_id = packet_id(take_u16(&mut reader)?)?;
        let entry = record::decode_in_flight(take_chunk(&mut reader)?).map_err(session_error)?;
        in_flight.push((packet_id, entry));
    }
    let mut incoming_qos2 = Vec::new();
    for _ in 0..take_u32(&mut reader)? {
        incoming_qos2.push(packet_id(take_u16(&mut reader)?)?);
    }
    if !reader.is_empty() {
        return Err(session_error(format!(
            "{} bytes follow the session",
            reader.len()
        )));
    }
    Ok(StoredSession {
        record,
        queue,
        in_flight,
        incoming_qos2,
    })
}

fn put_count(out: &mut Vec<u8>, count: usize) {
    // A session holds at most a bounded queue and 65,535 packet ids.
    out.put_u32(u32::try_from(count).unwrap_or(u32::MAX));
}

fn put_chunk(out: &mut Vec<u8>, chunk: &[u8]) {
    put_count(out, chunk.len());
    out.put_slice(chunk);
}

fn packet_id(value: u16) -> Result<PacketId, TransferError> {
    PacketId::new(value).ok_or_else(|| session_error("a packet identifier is 0"))
}

fn take<'a>(reader: &mut &'a [u8], len: usize) -> Result<&'a [u8], TransferError> {
    if reader.len() < len {
        return Err(session_error("the bundle is truncated"));
    }
    let (bytes, rest) = reader.split_at(len);
    *reader = rest;
    Ok(bytes)
}

fn take_chunk<'a>(reader: &mut &'a [u8]) -> Result<&'a [u8], TransferError> {
    let len = take_u32(reader)? as usize;
    take(reader, len)
}

fn take_u8(reader: &mut &[u8]) -> Result<u8, TransferError> {
    Ok(take(reader, 1)?.get_u8())
}

fn take_u16(reader: &mut &[u8]) -> Result<u16, TransferError> {
    Ok(take(reader, 2)?.get_u16())
}

fn take_u32(reader: &mut &[u8]) -> Result<u32, TransferError> {
    Ok(take(reader, 4)?.get_u32())
}

fn take_u64(reader: &mut &[u8]) -> Result<u64, TransferError> {
    Ok(take(reader, 8)?.get_u64())
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tern_codec::{Publish, QoS, SubscriptionOptions, TopicFilter};

    use super::*;
    use crate::{SessionExpiry, SessionLimits, Subscription, Timestamp};

    fn message(topic: &str, qos: QoS, payload: &'static [u8]) -> Message {
        let mut publish = Publish::new(topic, Bytes::from_static(payload));
        publish.qos = qos;
        Message::with_expiry(publish, Some(Timestamp::from_millis(1_900_000_000_000)))
    }

    #[test]
    fn a_message_round_trips() {
        let original = message("a/b", QoS::ExactlyOnce, b"payload");
        let bytes = encode_message(&original).unwrap();
        assert_eq!(decode_message(&bytes).unwrap(), original);
    }

    #[test]
    fn a_session_with_queue_and_in_flight_round_trips() {
        let limits = SessionLimits {
            max_queued_messages: 10,
            max_inflight_messages: 2,
        };
        let now = Timestamp::from_millis(1_800_000_000_000);
        let mut session = Session::new("client-1".into(), SessionExpiry::After(60), limits);
        session.subscribe(
            TopicFilter::new("a/+").unwrap(),
            Subscription {
                options: SubscriptionOptions {
                    qos: QoS::ExactlyOnce,
                    ..SubscriptionOptions::default()
                },
                identifier: None,
            },
        );
        for (index, qos) in [
            QoS::AtLeastOnce,
            QoS::ExactlyOnce,
            QoS::AtMostOnce,
            QoS::AtLeastOnce,
        ]
        .into_iter()
        .enumerate()
        {
            let _ = session.enqueue(message(&format!("a/{index}"), qos, b"x"));
        }
        // Two go in flight (the window is 2); two stay queued.
        assert!(session.next_delivery(now).is_some());
        assert!(session.next_delivery(now).is_some());
        assert!(session.receive_qos2(PacketId::new(7).unwrap()));
        let stored = stored_session(&session);
        assert_eq!(stored.queue.len(), 2);
        assert_eq!(stored.in_flight.len(), 2);

        let bytes = encode_session(&stored).unwrap();
        let decoded = decode_session(&bytes).unwrap();
        assert_eq!(decoded, stored);
        let record = encode_record(&stored.record).unwrap();
        assert_eq!(
            decode_record("client-1".into(), &record).unwrap(),
            stored.record
        );
        let restored = Session::restore(decoded, limits, now);
        assert_eq!(restored.subscriptions(), session.subscriptions());
        assert_eq!(restored.queue().len(), 2, "QoS 0 messages move too");
    }

    #[test]
    fn damaged_bundles_are_errors_not_panics() {
        let limits = SessionLimits {
            max_queued_messages: 4,
            max_inflight_messages: 4,
        };
        let mut session = Session::new("c".into(), SessionExpiry::Never, limits);
        let _ = session.enqueue(message("t", QoS::AtLeastOnce, b"abc"));
        let bytes = encode_session(&stored_session(&session)).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode_session(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut wrong_format = bytes.clone();
        wrong_format[0] = 9;
        let error = decode_session(&wrong_format).unwrap_err();
        assert!(error.to_string().contains("upgrade every node"), "{error}");
    }
}
