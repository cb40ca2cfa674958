use bytes::Bytes;
use tern_codec::Publish;

use super::*;

fn rich_message(qos: QoS, expires_at: Option<u64>) -> Message {
    let mut publish = Publish::new("sensors/1/temp", Bytes::from_static(b"\x00\x01payload"));
    publish.qos = qos;
    publish.retain = true;
    publish.properties_mut().payload_format_indicator = Some(false);
    publish.properties_mut().content_type = Some("application/octet-stream".into());
    publish.properties_mut().response_topic = Some("replies/1".into());
    publish.properties_mut().correlation_data = Some(Bytes::from_static(b"corr"));
    publish.properties_mut().subscription_identifiers = vec![3, 268_435_455];
    publish.properties_mut().user_properties =
        vec![("k".into(), "v".into()), ("k".into(), "w".into())];
    Message::with_expiry(publish, expires_at.map(Timestamp::from_millis))
}

/// A will with a Message Expiry Interval (relative) and other properties.
fn rich_will() -> Publish {
    let mut publish = rich_message(QoS::AtLeastOnce, None).publish().clone();
    publish.properties_mut().message_expiry_interval = Some(9);
    publish
}

fn encoded(message: &Message) -> Vec<u8> {
    let mut out = Vec::new();
    encode_message(message, &mut out).expect("encodable");
    out
}

#[test]
fn messages_round_trip() {
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        for expiry in [None, Some(0), Some(1_700_000_000_123)] {
            let message = rich_message(qos, expiry);
            let bytes = encoded(&message);
            assert_eq!(decode_message(&bytes), Ok(message.clone()));
            assert_eq!(message_expiry(&bytes), Ok(message.expires_at()));
        }
    }
}

#[test]
fn message_header_is_eleven_bytes() {
    let message = Message::with_expiry(Publish::new("t", "x"), None);
    // Header, then the packet: type byte, length, topic (2 + 1), no
    // properties (1 byte of zero length), payload.
    assert_eq!(encoded(&message).len(), 11 + 1 + 1 + 3 + 1 + 1);
}

#[test]
fn in_flight_entries_round_trip() {
    for entry in [
        InFlight::AwaitingPubAck(rich_message(QoS::AtLeastOnce, None)),
        InFlight::AwaitingPubRec(rich_message(QoS::ExactlyOnce, Some(5))),
        InFlight::AwaitingPubComp,
    ] {
        let bytes = encode_in_flight(&entry).expect("encodable");
        assert_eq!(decode_in_flight(&bytes), Ok(entry));
    }
}

fn rich_session() -> SessionRecord {
    let mut subscriptions = BTreeMap::new();
    subscriptions.insert(
        TopicFilter::new("$share/g/a/+/c").expect("valid"),
        Subscription {
            options: SubscriptionOptions {
                qos: QoS::ExactlyOnce,
                no_local: true,
                retain_as_published: true,
                retain_handling: RetainHandling::DoNotSend,
            },
            identifier: NonZeroU32::new(42),
        },
    );
    subscriptions.insert(
        TopicFilter::new("#").expect("valid"),
        Subscription {
            options: SubscriptionOptions::with_qos(QoS::AtMostOnce),
            identifier: None,
        },
    );
    SessionRecord {
        client_id: "client-1".into(),
        expiry: SessionExpiry::After(3600),
        disconnected_at: Some(Timestamp::from_millis(1_000)),
        subscriptions,
        will: Some(Box::new(Will::new(rich_will(), 30))),
    }
}

#[test]
fn sessions_round_trip() {
    let record = rich_session();
    let bytes = encode_session(&record).expect("encodable");
    assert_eq!(
        decode_session("client-1".into(), &bytes),
        Ok(record.clone())
    );
    assert_eq!(
        session_expiry(&bytes),
        Ok(Some(Timestamp::from_millis(3_601_000)))
    );

    let connected = SessionRecord {
        disconnected_at: None,
        will: None,
        expiry: SessionExpiry::Never,
        ..record
    };
    let bytes = encode_session(&connected).expect("encodable");
    assert_eq!(decode_session("client-1".into(), &bytes), Ok(connected));
    assert_eq!(session_expiry(&bytes), Ok(None));
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let session = encode_session(&rich_session()).expect("encodable");
    for len in 0..session.len() {
        assert!(
            decode_session("c".into(), &session[..len]).is_err(),
            "{len}"
        );
    }
    let in_flight = encode_in_flight(&InFlight::AwaitingPubRec(rich_message(
        QoS::ExactlyOnce,
        None,
    )))
    .expect("encodable");
    for len in 0..in_flight.len() {
        assert!(decode_in_flight(&in_flight[..len]).is_err(), "{len}");
    }
}

#[test]
fn unknown_formats_and_values_are_named() {
    let mut bytes = encoded(&rich_message(QoS::AtLeastOnce, None));
    bytes[0] = 9;
    let error = decode_message(&bytes).expect_err("format 9");
    assert!(error.contains("format 9"), "{error}");
    bytes[0] = FORMAT;
    bytes[1] = 3;
    assert!(decode_message(&bytes).is_err(), "QoS 3");
    assert!(decode_in_flight(&[FORMAT, 4]).is_err(), "state 4");
    assert!(options_from_byte(0b0011_0000).is_err(), "retain handling 3");
}

#[test]
fn flipped_bytes_never_panic() {
    let session = encode_session(&rich_session()).expect("encodable");
    for index in 0..session.len() {
        for flip in [0x01, 0x80, 0xFF] {
            let mut damaged = session.clone();
            damaged[index] ^= flip;
            let _ = decode_session("c".into(), &damaged);
        }
    }
}

#[test]
fn a_will_keeps_its_relative_expiry_interval() {
    let record = rich_session();
    let bytes = encode_session(&record).expect("encodable");
    let decoded = decode_session("client-1".into(), &bytes).expect("decodes");
    let will = decoded.will.expect("a will");
    assert_eq!(will.expiry_interval(), Some(9));
    assert_eq!(will.delay(), 30);
}

#[test]
fn format_1_wills_are_read_as_the_interval_left_at_disconnection() {
    // Format 1: the will's message record held an absolute expiry time.
    let will = Message::with_expiry(rich_will(), Some(Timestamp::from_millis(9_500)));
    let mut will_record = Vec::new();
    encode_message(&will, &mut will_record).expect("encodable");
    let mut bytes = vec![FORMAT];
    bytes.extend_from_slice(&60u32.to_be_bytes()); // session expiry
    bytes.push(DISCONNECTED | HAS_WILL);
    bytes.extend_from_slice(&1_000u64.to_be_bytes()); // disconnected at
    bytes.extend_from_slice(&0u32.to_be_bytes()); // no subscriptions
    bytes.extend_from_slice(&7u32.to_be_bytes()); // will delay
    bytes.extend_from_slice(&u32::try_from(will_record.len()).unwrap().to_be_bytes());
    bytes.extend_from_slice(&will_record);
    let decoded = decode_session("old".into(), &bytes).expect("format 1 is read");
    let will = decoded.will.expect("a will");
    assert_eq!(will.delay(), 7);
    assert_eq!(will.expiry_interval(), Some(9), "8.5 s left, rounded up");
}
