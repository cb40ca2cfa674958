//! The binary records of the sled store: compact, versioned, big-endian.
//!
//! Every record starts with a format byte (1), so a record layout can change
//! without a new schema version for the whole store.
//!
//! **Message record** (queued, retained, in flight, will):
//!
//! | bytes | field                                                     |
//! |-------|-----------------------------------------------------------|
//! | 1     | format = 1                                                |
//! | 1     | QoS of delivery (0, 1, 2)                                 |
//! | 1     | flags: bit 0 = has an expiry time                         |
//! | 8     | expiry time, ms since the Unix epoch (0 without expiry)   |
//! | rest  | the PUBLISH as an MQTT 5 packet, encoded at QoS 0         |
//!
//! The PUBLISH is encoded by tern-codec, whose MQTT 5 encoding is complete
//! and tested: topic, retain flag, properties and payload round-trip
//! exactly. It is written at QoS 0 because a stored message has no packet
//! identifier yet; the real QoS is in the header.
//!
//! **In-flight record**: format = 1, state (1 awaiting PUBACK, 2 awaiting
//! PUBREC, 3 awaiting PUBCOMP), then a message record for states 1 and 2.
//!
//! **Session record**:
//!
//! | bytes | field                                                      |
//! |-------|------------------------------------------------------------|
//! | 1     | format = 2 (1 is still read, see below)                    |
//! | 4     | session expiry interval, seconds                           |
//! | 1     | flags: bit 0 = disconnected, bit 1 = has a will            |
//! | 8     | disconnection time, ms (0 while connected)                 |
//! | 4     | number of subscriptions, then for each:                    |
//! |       | u16 length + filter, options byte, u32 identifier (0: none) |
//! |       | if a will: u32 delay, u32 length + message record          |
//!
//! The options byte is QoS (bits 0-1), no local (2), retain as published
//! (3) and retain handling (4-5), as in SUBSCRIBE. The client identifier is
//! in the key only.
//!
//! The will's message record has no expiry time in its header: a will's
//! Message Expiry Interval counts from its publication, so it stays in
//! the PUBLISH as a property. Format 1 (earlier builds) stored an absolute
//! time counted from CONNECT; it is read as the interval left at the
//! disconnection (0 for a session stored as connected: already expired).

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use bytes::{Buf, BufMut, BytesMut};
use tern_codec::{
    ByteString, Decoder, MAX_PACKET_SIZE, Packet, ProtocolVersion, Publish, QoS, RetainHandling,
    SubscriptionOptions, TopicFilter,
};

use crate::session::{InFlight, Subscription, Will};
use crate::store::SessionRecord;
use crate::{Message, SessionExpiry, StoreError, Timestamp};

const FORMAT: u8 = 1;
/// The session record's format: 2 since wills keep a relative expiry.
const SESSION_FORMAT: u8 = 2;
const HAS_EXPIRY: u8 = 0b01;
const DISCONNECTED: u8 = 0b01;
const HAS_WILL: u8 = 0b10;

/// Why a record could not be decoded.
pub(crate) type DecodeResult<T> = Result<T, String>;

pub(crate) fn encode_message(message: &Message, out: &mut Vec<u8>) -> Result<(), StoreError> {
    encode_publish(message.publish(), message.expires_at(), out)
}

/// A message record of `publish`, written as is (with its properties).
fn encode_publish(
    publish: &Publish,
    expires_at: Option<Timestamp>,
    out: &mut Vec<u8>,
) -> Result<(), StoreError> {
    out.put_u8(FORMAT);
    out.put_u8(publish.qos.as_u8());
    out.put_u8(if expires_at.is_some() { HAS_EXPIRY } else { 0 });
    out.put_u64(expires_at.map_or(0, Timestamp::as_millis));
    let mut publish = publish.clone();
    publish.qos = QoS::AtMostOnce;
    publish.packet_id = None;
    let mut packet = BytesMut::new();
    Packet::Publish(publish)
        .encode(ProtocolVersion::V5, &mut packet)
        .map_err(|error| {
            StoreError::InvalidWrite(format!("a message cannot be stored: {error}"))
        })?;
    out.extend_from_slice(&packet);
    Ok(())
}

/// Reads only the expiry time of a message record.
pub(crate) fn message_expiry(bytes: &[u8]) -> DecodeResult<Option<Timestamp>> {
    let mut reader = bytes;
    check_format(&mut reader, "message")?;
    QoS::from_bits(take_u8(&mut reader, "message QoS")?)
        .map_err(|error| format!("message QoS: {error}"))?;
    let flags = take_u8(&mut reader, "message flags")?;
    if flags & !HAS_EXPIRY != 0 {
        return Err(format!("message flags {flags:#04x} has unknown bits"));
    }
    let at = take_u64(&mut reader, "message expiry")?;
    Ok((flags & HAS_EXPIRY != 0).then_some(Timestamp::from_millis(at)))
}

pub(crate) fn decode_message(bytes: &[u8]) -> DecodeResult<Message> {
    let (publish, expires_at) = decode_publish(bytes)?;
    Ok(Message::with_expiry(publish, expires_at))
}

/// The PUBLISH of a message record, properties kept, and its expiry time.
fn decode_publish(bytes: &[u8]) -> DecodeResult<(Publish, Option<Timestamp>)> {
    let mut reader = bytes;
    check_format(&mut reader, "message")?;
    let qos = QoS::from_bits(take_u8(&mut reader, "message QoS")?)
        .map_err(|error| format!("message QoS: {error}"))?;
    let flags = take_u8(&mut reader, "message flags")?;
    if flags & !HAS_EXPIRY != 0 {
        return Err(format!("message flags {flags:#04x} has unknown bits"));
    }
    let at = take_u64(&mut reader, "message expiry")?;
    let mut packet = BytesMut::from(reader);
    let decoded = Decoder::new(ProtocolVersion::V5, MAX_PACKET_SIZE)
        .decode(&mut packet)
        .map_err(|error| format!("stored PUBLISH: {error}"))?;
    let Some(Packet::Publish(mut publish)) = decoded else {
        return Err("the stored packet is not a whole PUBLISH".into());
    };
    if !packet.is_empty() {
        return Err(format!("{} bytes follow the stored PUBLISH", packet.len()));
    }
    publish.qos = qos;
    let expires_at = (flags & HAS_EXPIRY != 0).then_some(Timestamp::from_millis(at));
    Ok((publish, expires_at))
}

pub(crate) fn encode_in_flight(entry: &InFlight) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(128);
    out.put_u8(FORMAT);
    match entry {
        InFlight::AwaitingPubAck(message) => {
            out.put_u8(1);
            encode_message(message, &mut out)?;
        }
        InFlight::AwaitingPubRec(message) => {
            out.put_u8(2);
            encode_message(message, &mut out)?;
        }
        InFlight::AwaitingPubComp => out.put_u8(3),
    }
    Ok(out)
}

pub(crate) fn decode_in_flight(bytes: &[u8]) -> DecodeResult<InFlight> {
    let mut reader = bytes;
    check_format(&mut reader, "in-flight")?;
    match take_u8(&mut reader, "in-flight state")? {
        1 => Ok(InFlight::AwaitingPubAck(decode_message(reader)?)),
        2 => Ok(InFlight::AwaitingPubRec(decode_message(reader)?)),
        3 if reader.is_empty() => Ok(InFlight::AwaitingPubComp),
        state => Err(format!(
            "in-flight state {state} is not 1, 2 or 3 (or has trailing bytes)"
        )),
    }
}

pub(crate) fn encode_session(record: &SessionRecord) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::with_capacity(64);
    out.put_u8(SESSION_FORMAT);
    out.put_u32(record.expiry.interval());
    let mut flags = 0;
    if record.disconnected_at.is_some() {
        flags |= DISCONNECTED;
    }
    if record.will.is_some() {
        flags |= HAS_WILL;
    }
    out.put_u8(flags);
    out.put_u64(record.disconnected_at.map_or(0, Timestamp::as_millis));
    let count = u32::try_from(record.subscriptions.len())
        .map_err(|_| StoreError::InvalidWrite("more than 2^32 subscriptions".into()))?;
    out.put_u32(count);
    for (filter, subscription) in &record.subscriptions {
        let text = filter.as_str().as_bytes();
        let len = u16::try_from(text.len())
            .map_err(|_| StoreError::InvalidWrite("a topic filter over 65,535 bytes".into()))?;
        out.put_u16(len);
        out.extend_from_slice(text);
        out.put_u8(options_byte(subscription.options));
        out.put_u32(subscription.identifier.map_or(0, NonZeroU32::get));
    }
    if let Some(will) = &record.will {
        out.put_u32(will.delay());
        let mut message = Vec::with_capacity(64);
        encode_publish(will.publish(), None, &mut message)?;
        let len = u32::try_from(message.len())
            .map_err(|_| StoreError::InvalidWrite("a will message over 4 GiB".into()))?;
        out.put_u32(len);
        out.extend_from_slice(&message);
    }
    Ok(out)
}

/// Reads only the expiry time of a session record.
pub(crate) fn session_expiry(bytes: &[u8]) -> DecodeResult<Option<Timestamp>> {
    let mut reader = bytes;
    session_format(&mut reader)?;
    let expiry = SessionExpiry::from_interval(take_u32(&mut reader, "session expiry")?);
    let flags = take_u8(&mut reader, "session flags")?;
    let at = take_u64(&mut reader, "disconnection time")?;
    Ok((flags & DISCONNECTED != 0)
        .then(|| expiry.expires_at(Timestamp::from_millis(at)))
        .flatten())
}

pub(crate) fn decode_session(client_id: ByteString, bytes: &[u8]) -> DecodeResult<SessionRecord> {
    let mut reader = bytes;
    let format = session_format(&mut reader)?;
    let expiry = SessionExpiry::from_interval(take_u32(&mut reader, "session expiry")?);
    let flags = take_u8(&mut reader, "session flags")?;
    let at = take_u64(&mut reader, "disconnection time")?;
    let count = take_u32(&mut reader, "subscription count")?;
    let mut subscriptions = BTreeMap::new();
    for _ in 0..count {
        let len = usize::from(take_u16(&mut reader, "filter length")?);
        let text = take_bytes(&mut reader, len, "filter")?;
        let text = std::str::from_utf8(text).map_err(|_| "a filter is not UTF-8".to_string())?;
        let filter = TopicFilter::new(text).map_err(|error| format!("filter {text:?}: {error}"))?;
        let options = options_from_byte(take_u8(&mut reader, "subscription options")?)?;
        let identifier = NonZeroU32::new(take_u32(&mut reader, "subscription identifier")?);
        subscriptions.insert(
            filter,
            Subscription {
                options,
                identifier,
            },
        );
    }
    let will = if flags & HAS_WILL != 0 {
        let delay = take_u32(&mut reader, "will delay")?;
        let len = take_u32(&mut reader, "will length")? as usize;
        let (mut publish, expires_at) =
            decode_publish(take_bytes(&mut reader, len, "will message")?)?;
        if let Some(expires_at) = expires_at {
            if format >= SESSION_FORMAT {
                return Err("a will message with an absolute expiry time".into());
            }
            let from = if flags & DISCONNECTED != 0 {
                Timestamp::from_millis(at).min(expires_at)
            } else {
                expires_at
            };
            let left = expires_at
                .saturating_duration_since(from)
                .as_millis()
                .div_ceil(1000);
            publish.properties_mut().message_expiry_interval =
                Some(u32::try_from(left).unwrap_or(u32::MAX));
        }
        Some(Will::new(publish, delay))
    } else {
        None
    };
    if !reader.is_empty() {
        return Err(format!("{} bytes follow the session record", reader.len()));
    }
    Ok(SessionRecord {
        client_id,
        expiry,
        disconnected_at: (flags & DISCONNECTED != 0).then_some(Timestamp::from_millis(at)),
        subscriptions,
        will: will.map(Box::new),
    })
}

fn options_byte(options: SubscriptionOptions) -> u8 {
    options.qos.as_u8()
        | u8::from(options.no_local) << 2
        | u8::from(options.retain_as_published) << 3
        | (options.retain_handling as u8) << 4
}

fn options_from_byte(byte: u8) -> DecodeResult<SubscriptionOptions> {
    let retain_handling = match (byte >> 4) & 0b11 {
        0 => RetainHandling::SendAtSubscribe,
        1 => RetainHandling::SendIfNewSubscription,
        2 => RetainHandling::DoNotSend,
        _ => {
            return Err(format!(
                "subscription options {byte:#04x}: retain handling 3"
            ));
        }
    };
    if byte & 0b1100_0000 != 0 {
        return Err(format!(
            "subscription options {byte:#04x}: reserved bits set"
        ));
    }
    Ok(SubscriptionOptions {
        qos: QoS::from_bits(byte & 0b11).map_err(|error| format!("subscription QoS: {error}"))?,
        no_local: byte & 0b0100 != 0,
        retain_as_published: byte & 0b1000 != 0,
        retain_handling,
    })
}

/// Reads the session record's format byte: 1 or 2.
fn session_format(reader: &mut &[u8]) -> DecodeResult<u8> {
    match take_u8(reader, "session")? {
        format @ (FORMAT | SESSION_FORMAT) => Ok(format),
        other => Err(format!(
            "session record format {other}; this build reads formats {FORMAT} and {SESSION_FORMAT}"
        )),
    }
}

fn check_format(reader: &mut &[u8], what: &str) -> DecodeResult<()> {
    match take_u8(reader, what)? {
        FORMAT => Ok(()),
        other => Err(format!(
            "{what} record format {other}; this build reads format {FORMAT}"
        )),
    }
}

fn short(what: &str) -> String {
    format!("the record ends inside the {what}")
}

fn take_u8(reader: &mut &[u8], what: &str) -> DecodeResult<u8> {
    if reader.remaining() < 1 {
        return Err(short(what));
    }
    Ok(reader.get_u8())
}

fn take_u16(reader: &mut &[u8], what: &str) -> DecodeResult<u16> {
    if reader.remaining() < 2 {
        return Err(short(what));
    }
    Ok(reader.get_u16())
}

fn take_u32(reader: &mut &[u8], what: &str) -> DecodeResult<u32> {
    if reader.remaining() < 4 {
        return Err(short(what));
    }
    Ok(reader.get_u32())
}

fn take_u64(reader: &mut &[u8], what: &str) -> DecodeResult<u64> {
    if reader.remaining() < 8 {
        return Err(short(what));
    }
    Ok(reader.get_u64())
}

fn take_bytes<'a>(reader: &mut &'a [u8], len: usize, what: &str) -> DecodeResult<&'a [u8]> {
    if reader.len() < len {
        return Err(short(what));
    }
    let (bytes, rest) = reader.split_at(len);
    *reader = rest;
    Ok(bytes)
}

#[cfg(test)]
#[path = "record_tests.rs"]
mod tests;
