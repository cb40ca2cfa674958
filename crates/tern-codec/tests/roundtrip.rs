//! Round-trip properties of the codec: every valid packet of every protocol
//! version encodes to exactly `Packet::encoded_len` bytes and decodes back to
//! the same value, whether the bytes arrive at once, split at any point, one
//! at a time, or behind other packets in the same buffer. Encoding any value,
//! valid or not, never panics, never writes on failure, and never produces
//! bytes that the decoder of the same version refuses.

mod strategies;

use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use strategies::{
    PACKET_TYPES, VERSIONS, any_versioned_packet, exists_in, packet, version, versioned,
};
use tern_codec::{
    ByteString, Decoder, MAX_PACKET_SIZE, Packet, PacketType, ProtocolVersion, Publish, QoS,
    ReasonCode, TopicFilter,
};

/// Cases per property. Each case also decodes the packet once per split
/// point, so this keeps the whole suite well under a minute in debug builds.
const CASES: u32 = 512;

fn encode(version: ProtocolVersion, packet: &Packet) -> Result<Bytes, TestCaseError> {
    let mut wire = BytesMut::new();
    packet
        .encode(version, &mut wire)
        .map_err(|error| TestCaseError::fail(format!("encode failed: {error}")))?;
    Ok(wire.freeze())
}

/// Encodes `packet` for `version` and checks everything a receiver relies on.
fn check_round_trip(version: ProtocolVersion, packet: &Packet) -> Result<(), TestCaseError> {
    let wire = encode(version, packet)?;
    prop_assert_eq!(packet.encoded_len(version), Ok(wire.len()));

    // Whole, and nothing more is consumed or produced.
    let mut decoder = Decoder::new(version, MAX_PACKET_SIZE);
    let mut buf = BytesMut::from(&wire[..]);
    let decoded = decoder.decode(&mut buf);
    prop_assert_eq!(&decoded, &Ok(Some(packet.clone())));
    prop_assert!(buf.is_empty(), "{} bytes left over", buf.len());
    prop_assert_eq!(decoder.decode(&mut buf), Ok(None));
    // And the decoded value encodes to the same bytes again.
    if let Ok(Some(decoded)) = decoded {
        prop_assert_eq!(encode(version, &decoded)?, wire.clone());
    }

    // A limit of exactly the packet's size accepts it; one byte less refuses it.
    let size = u32::try_from(wire.len()).expect("test packets are small");
    let mut buf = BytesMut::from(&wire[..]);
    prop_assert_eq!(
        Decoder::new(version, size).decode(&mut buf),
        Ok(Some(packet.clone()))
    );
    let mut buf = BytesMut::from(&wire[..]);
    prop_assert_eq!(
        Decoder::new(version, size - 1).decode(&mut buf),
        Err(tern_codec::DecodeError::PacketTooLarge {
            size,
            max: size - 1
        })
    );

    // Split in two at every point: the prefix is "need more" and stays put.
    for split in 0..wire.len() {
        let mut decoder = Decoder::new(version, MAX_PACKET_SIZE);
        let mut buf = BytesMut::from(&wire[..split]);
        prop_assert_eq!(decoder.decode(&mut buf), Ok(None), "split at {}", split);
        prop_assert_eq!(buf.len(), split);
        buf.extend_from_slice(&wire[split..]);
        prop_assert_eq!(decoder.decode(&mut buf), Ok(Some(packet.clone())));
        prop_assert!(buf.is_empty());
    }

    // One byte at a time through a single decoder.
    let mut decoder = Decoder::new(version, MAX_PACKET_SIZE);
    let mut buf = BytesMut::new();
    for (index, byte) in wire.iter().enumerate() {
        buf.extend_from_slice(&[*byte]);
        let decoded = decoder.decode(&mut buf);
        if index + 1 < wire.len() {
            prop_assert_eq!(decoded, Ok(None), "after {} bytes", index + 1);
        } else {
            prop_assert_eq!(decoded, Ok(Some(packet.clone())));
        }
    }
    prop_assert!(buf.is_empty());
    Ok(())
}

/// A packet's type, to check that `versioned` generates what it promises.
fn check_typed_round_trip(
    packet_type: PacketType,
    version: ProtocolVersion,
    packet: &Packet,
) -> Result<(), TestCaseError> {
    prop_assert_eq!(packet.packet_type(), packet_type);
    check_round_trip(version, packet)
}

macro_rules! round_trip_tests {
    ($( $name:ident => $packet_type:ident, )*) => {
        proptest! {
            #![proptest_config(ProptestConfig::with_cases(CASES))]
            $(
                #[test]
                fn $name((version, packet) in versioned(PacketType::$packet_type)) {
                    check_typed_round_trip(PacketType::$packet_type, version, &packet)?;
                }
            )*
        }
    };
}

round_trip_tests! {
    connect_round_trips => Connect,
    connack_round_trips => ConnAck,
    publish_round_trips => Publish,
    puback_round_trips => PubAck,
    pubrec_round_trips => PubRec,
    pubrel_round_trips => PubRel,
    pubcomp_round_trips => PubComp,
    subscribe_round_trips => Subscribe,
    suback_round_trips => SubAck,
    unsubscribe_round_trips => Unsubscribe,
    unsuback_round_trips => UnsubAck,
    pingreq_round_trips => PingReq,
    pingresp_round_trips => PingResp,
    disconnect_round_trips => Disconnect,
    auth_round_trips => Auth,
}

/// A value the encoder should refuse, or accept, but never panic on: a
/// valid packet with one field pushed out of its range.
fn perturb(packet: Packet, choice: u8, number: u32) -> Packet {
    let huge = || ByteString::from("x".repeat(70_000));
    match (packet, choice % 8) {
        (Packet::Publish(mut publish), 0) => {
            // QoS and packet identifier out of step.
            publish.packet_id = publish.packet_id.xor(NonZeroU16::new(7));
            Packet::Publish(publish)
        }
        (Packet::Publish(mut publish), 1) => {
            publish.topic = ByteString::new();
            publish.properties_mut().topic_alias = None;
            Packet::Publish(publish)
        }
        (Packet::Publish(mut publish), 2) => {
            publish
                .properties_mut()
                .subscription_identifiers
                .push(number);
            publish.properties_mut().topic_alias = Some(0);
            Packet::Publish(publish)
        }
        (Packet::Publish(mut publish), 3) => {
            publish.topic = huge();
            Packet::Publish(publish)
        }
        (Packet::Subscribe(mut subscribe), 0) => {
            subscribe.filters.clear();
            Packet::Subscribe(subscribe)
        }
        (Packet::Subscribe(mut subscribe), 1) => {
            subscribe.properties.subscription_identifier = Some(number);
            Packet::Subscribe(subscribe)
        }
        (Packet::Unsubscribe(mut unsubscribe), 0) => {
            unsubscribe.filters.clear();
            Packet::Unsubscribe(unsubscribe)
        }
        (Packet::Connect(mut connect), 0) => {
            connect.username = None;
            connect.password = Some(Bytes::from_static(b"secret"));
            Packet::Connect(connect)
        }
        (Packet::Connect(mut connect), 1) => {
            connect.properties.receive_maximum = Some(0);
            connect.properties.maximum_packet_size = Some(number);
            Packet::Connect(connect)
        }
        (Packet::Connect(mut connect), 2) => {
            connect.client_id = huge();
            Packet::Connect(connect)
        }
        (Packet::ConnAck(mut connack), 0) => {
            connack.properties.maximum_qos = Some(QoS::ExactlyOnce);
            Packet::ConnAck(connack)
        }
        (Packet::ConnAck(mut connack), 1) => {
            connack.reason_code = reason_from(number);
            connack.session_present = true;
            Packet::ConnAck(connack)
        }
        (Packet::PubAck(mut ack), 0) | (Packet::PubRel(mut ack), 0) => {
            ack.reason_code = reason_from(number);
            Packet::PubRel(ack)
        }
        (Packet::SubAck(mut suback), 0) => {
            suback.reason_codes.push(reason_from(number));
            Packet::SubAck(suback)
        }
        (Packet::UnsubAck(mut unsuback), 0) => {
            unsuback.reason_codes.push(reason_from(number));
            Packet::UnsubAck(unsuback)
        }
        (Packet::Disconnect(mut disconnect), 0) => {
            disconnect.reason_code = reason_from(number);
            Packet::Disconnect(disconnect)
        }
        (Packet::Auth(mut auth), 0) => {
            auth.reason_code = reason_from(number);
            Packet::Auth(auth)
        }
        (packet, _) => packet,
    }
}

fn reason_from(number: u32) -> ReasonCode {
    let codes = strategies::all_reason_codes();
    codes[number as usize % codes.len()]
}

/// Encodes `packet` for `version` after bytes already in the buffer.
fn check_encode_is_total(version: ProtocolVersion, packet: &Packet) -> Result<(), TestCaseError> {
    const EARLIER: &[u8] = b"earlier";
    let mut wire = BytesMut::from(EARLIER);
    let result = packet.encode(version, &mut wire);
    let expected_len = packet.encoded_len(version);
    match result {
        Err(error) => {
            prop_assert_eq!(&wire[..], EARLIER, "a failed encode wrote bytes");
            prop_assert_eq!(expected_len, Err(error));
        }
        Ok(()) => {
            prop_assert_eq!(&wire[..EARLIER.len()], EARLIER);
            let _ = wire.split_to(EARLIER.len());
            prop_assert_eq!(expected_len, Ok(wire.len()));
            // What the encoder writes, the decoder of that version accepts.
            let mut decoder = Decoder::new(version, MAX_PACKET_SIZE);
            let decoded = decoder.decode(&mut wire);
            prop_assert!(
                matches!(decoded, Ok(Some(_))),
                "{version}: {packet:?} encoded to bytes its decoder refuses: {decoded:?}"
            );
            prop_assert!(wire.is_empty());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    /// Several packets back to back come out in order, and then "need more".
    #[test]
    fn concatenated_packets_decode_in_order(
        (version, packets) in version().prop_flat_map(|v| (Just(v), vec(packet(v), 1..8)))
    ) {
        let mut buf = BytesMut::new();
        for packet in &packets {
            buf.extend_from_slice(&encode(version, packet)?);
        }
        // A trailing fragment of another packet must stay in the buffer.
        buf.extend_from_slice(&[0x30]);
        let mut decoder = Decoder::new(version, MAX_PACKET_SIZE);
        for packet in &packets {
            prop_assert_eq!(decoder.decode(&mut buf), Ok(Some(packet.clone())));
        }
        prop_assert_eq!(decoder.decode(&mut buf), Ok(None));
        prop_assert_eq!(&buf[..], &[0x30][..]);
    }

    /// Encoding any value in any version, whether or not the packet fits that
    /// version, either fails cleanly or writes what `encoded_len` promised.
    #[test]
    fn encoding_never_panics(
        (_, packet) in any_versioned_packet(),
        choice in any::<u8>(),
        number in prop_oneof![Just(0u32), Just(268_435_456), any::<u32>()],
    ) {
        let packet = perturb(packet, choice, number);
        for version in VERSIONS {
            check_encode_is_total(version, &packet)?;
        }
    }
}

#[test]
fn every_packet_type_is_generated_in_every_version_where_it_exists() {
    let existing = VERSIONS
        .iter()
        .flat_map(|version| PACKET_TYPES.map(|packet_type| (*version, packet_type)))
        .filter(|(version, packet_type)| exists_in(*packet_type, *version))
        .count();
    assert_eq!(
        existing,
        3 * 15 - 2,
        "AUTH is missing from 3.1 and 3.1.1 only"
    );
}

/// Remaining lengths at each boundary of the variable byte integer, with the
/// split test limited to the fixed header (the bodies are large).
#[test]
fn remaining_length_boundaries_round_trip() {
    for body_len in [127usize, 128, 16_383, 16_384, 2_097_151, 2_097_152] {
        for version in VERSIONS {
            // Topic "t" (3 bytes), packet id (2), properties (1 in MQTT 5).
            let overhead = 3 + 2 + usize::from(version.is_v5());
            let mut publish = Publish::new("t", vec![0xA5; body_len - overhead]);
            publish.qos = QoS::AtLeastOnce;
            publish.packet_id = NonZeroU16::new(1);
            let packet = Packet::Publish(publish);
            let mut wire = BytesMut::new();
            packet.encode(version, &mut wire).unwrap();
            let header_len = wire.len() - body_len;
            assert_eq!(packet.encoded_len(version), Ok(wire.len()));
            for split in 0..=header_len + 1 {
                let mut decoder = Decoder::new(version, MAX_PACKET_SIZE);
                let mut buf = BytesMut::from(&wire[..split]);
                assert_eq!(decoder.decode(&mut buf), Ok(None));
                buf.extend_from_slice(&wire[split..]);
                assert_eq!(decoder.decode(&mut buf).unwrap().as_ref(), Some(&packet));
                assert!(buf.is_empty());
            }
        }
    }
}

/// Long strings and binary fields at the 65,535-byte limit of their prefix.
#[test]
fn fields_of_the_largest_size_round_trip() {
    let long_topic = ByteString::from("t".repeat(usize::from(u16::MAX)));
    let filter = TopicFilter::new("f/".repeat(32_767) + "#").unwrap();
    assert_eq!(filter.as_str().len(), usize::from(u16::MAX));
    for version in VERSIONS {
        let mut publish = Publish::new(long_topic.clone(), Bytes::new());
        publish.properties_mut().correlation_data = version
            .is_v5()
            .then(|| Bytes::from(vec![7; usize::from(u16::MAX)]));
        let subscribe = Packet::Subscribe(tern_codec::Subscribe {
            packet_id: NonZeroU16::MIN,
            properties: Default::default(),
            filters: vec![(filter.clone(), Default::default())],
        });
        for packet in [Packet::Publish(publish), subscribe] {
            let mut wire = BytesMut::new();
            packet.encode(version, &mut wire).unwrap();
            let mut decoder = Decoder::new(version, MAX_PACKET_SIZE);
            assert_eq!(decoder.decode(&mut wire), Ok(Some(packet)));
        }
    }
}

/// Values the encoder writes although the decoder of the same version
/// refuses the bytes: each breaks a rule the specification states as a MUST
/// for the sender. Either fix (refuse them when encoding, as `encode`'s
/// documentation promises, or accept them when decoding) makes this pass.
#[test]
fn what_the_encoder_writes_its_decoder_accepts() {
    use tern_codec::{Connect, LastWill, Subscribe, SubscriptionOptions};
    let publish = |edit: fn(&mut Publish)| {
        let mut publish = Publish::new("a", "x");
        edit(&mut publish);
        Packet::Publish(publish)
    };
    let mut connect = Connect::new(ProtocolVersion::V3_1_1, "c", 10);
    connect.will = Some(LastWill {
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
        topic: "w/#".into(),
        payload: Bytes::new(),
    });
    let cases = [
        // [MQTT-3.3.1-2] DUP on QoS 0.
        ("DUP on QoS 0", publish(|p| p.dup = true)),
        // [MQTT-3.3.2-2] wildcard in a topic name.
        ("wildcard in topic", publish(|p| p.topic = "a/+".into())),
        // [MQTT-1.5.4-2] U+0000 in a string.
        ("U+0000 in topic", publish(|p| p.topic = "a\0".into())),
        (
            "U+0000 in content type",
            publish(|p| p.properties_mut().content_type = Some("c\0".into())),
        ),
        (
            "wildcard in response topic",
            publish(|p| p.properties_mut().response_topic = Some("r/#".into())),
        ),
        // [MQTT-3.8.3-4] no local on a shared subscription.
        (
            "no local on a shared filter",
            Packet::Subscribe(Subscribe {
                packet_id: NonZeroU16::MIN,
                properties: Default::default(),
                filters: vec![(
                    TopicFilter::new("$share/g/a").unwrap(),
                    SubscriptionOptions {
                        no_local: true,
                        ..Default::default()
                    },
                )],
            }),
        ),
        // A will topic is a topic name, so it has no wildcards.
        ("wildcard in will topic", Packet::Connect(Box::new(connect))),
    ];
    let mut failures = Vec::new();
    for (name, packet) in cases {
        let version = match &packet {
            Packet::Connect(connect) => connect.protocol,
            _ => ProtocolVersion::V5,
        };
        let mut wire = BytesMut::new();
        if packet.encode(version, &mut wire).is_err() {
            continue;
        }
        let bytes = format!("{:02X?}", &wire[..]);
        let decoded = Decoder::new(version, MAX_PACKET_SIZE).decode(&mut wire);
        if !matches!(decoded, Ok(Some(_))) {
            failures.push(format!("{name}: {bytes} -> {decoded:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
