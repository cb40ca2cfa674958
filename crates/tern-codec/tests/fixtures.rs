//! Packets captured from real clients and a real broker decode to the values
//! we expect and re-encode to the same bytes.
//!
//! The fixtures in `tests/fixtures/` were recorded by `scripts/capture-fixtures`:
//! Debian's `mosquitto_pub`/`mosquitto_sub` and the `paho-mqtt` Python client
//! talking to Mosquitto 2.0.11 through a recording proxy, in MQTT 3.1, 3.1.1
//! and 5.0. See `tests/fixtures/INDEX.md` for what each scenario contains.
//!
//! Every packet, the clients' and the broker's, must re-encode byte for byte.
//! Peers differ in details the specification leaves open (the order of
//! properties, whether a success reason code is written); the decoder records
//! those details (`WireOrder`, `WireForm`) so that re-encoding is exact.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use tern_codec::{
    Decoder, MAX_PACKET_SIZE, Packet, PacketType, ProtocolVersion, QoS, ReasonCode, RetainHandling,
};

#[derive(Debug, Deserialize)]
struct Fixture {
    protocol_version: u8,
    packets: Vec<Captured>,
}

#[derive(Debug, Deserialize)]
struct Captured {
    connection: u32,
    direction: Direction,
    #[serde(rename = "type")]
    packet_type: String,
    hex: String,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
enum Direction {
    ClientToBroker,
    BrokerToClient,
}

/// One decoded packet of a fixture, with where it came from.
struct Decoded {
    connection: u32,
    direction: Direction,
    wire: Bytes,
    packet: Packet,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn hex(text: &str) -> Bytes {
    assert!(text.len().is_multiple_of(2), "odd-length hex");
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex digit"))
        .collect::<Vec<u8>>()
        .into()
}

fn version_of(level: u8) -> ProtocolVersion {
    match level {
        3 => ProtocolVersion::V3_1,
        4 => ProtocolVersion::V3_1_1,
        5 => ProtocolVersion::V5,
        other => panic!("fixture with protocol level {other}"),
    }
}

fn load(name: &str) -> (ProtocolVersion, Vec<Decoded>) {
    let path = fixtures_dir().join(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let fixture: Fixture = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let version = version_of(fixture.protocol_version);
    // One decoder per connection and direction, as a broker and a client hold.
    let mut decoders: BTreeMap<(u32, Direction), Decoder> = BTreeMap::new();
    let decoded = fixture
        .packets
        .iter()
        .map(|captured| {
            let decoder = decoders
                .entry((captured.connection, captured.direction))
                .or_insert_with(|| Decoder::new(version, MAX_PACKET_SIZE));
            let wire = hex(&captured.hex);
            let mut buf = BytesMut::from(&wire[..]);
            let packet = decoder
                .decode(&mut buf)
                .unwrap_or_else(|e| {
                    panic!("{name}: {} {}: {e}", captured.packet_type, captured.hex)
                })
                .unwrap_or_else(|| panic!("{name}: {} is incomplete", captured.packet_type));
            assert!(
                buf.is_empty(),
                "{name}: bytes left after {}",
                captured.packet_type
            );
            assert_eq!(packet.packet_type().name(), captured.packet_type, "{name}");
            Decoded {
                connection: captured.connection,
                direction: captured.direction,
                wire,
                packet,
            }
        })
        .collect();
    (version, decoded)
}

fn all_fixture_names() -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(fixtures_dir())
        .expect("fixtures directory")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".json"))
        .collect();
    names.sort();
    names
}

#[test]
fn every_captured_packet_decodes_and_re_encodes() {
    let names = all_fixture_names();
    assert!(
        names.len() >= 30,
        "expected the captured fixtures, found {}",
        names.len()
    );
    let mut seen: BTreeSet<(u8, &'static str)> = BTreeSet::new();
    let mut checked = 0;
    for name in &names {
        let (version, packets) = load(name);
        for decoded in packets {
            let packet_version = match &decoded.packet {
                Packet::Connect(connect) => connect.protocol,
                _ => version,
            };
            seen.insert((packet_version.level(), decoded.packet.packet_type().name()));
            let mut again = BytesMut::new();
            decoded.packet.encode(packet_version, &mut again).unwrap();
            assert_eq!(decoded.packet.encoded_len(packet_version), Ok(again.len()));
            assert_eq!(
                again[..],
                decoded.wire[..],
                "{name}: {:?} packet re-encoded differently",
                decoded.direction
            );
            checked += 1;
        }
    }
    println!("{checked} captured packets re-encoded byte for byte");

    // The captures cover every packet type in every version (AUTH only
    // exists in MQTT 5, and no client we capture from sends it).
    for level in [3, 4, 5] {
        for packet_type in PacketType::ALL
            .into_iter()
            .filter(|&p| p != PacketType::Auth)
        {
            assert!(
                seen.contains(&(level, packet_type.name())),
                "no captured {packet_type} at protocol level {level}"
            );
        }
    }
}

/// The packets one side of one connection sent, in order.
fn sent(packets: &[Decoded], connection: u32, direction: Direction) -> Vec<&Packet> {
    packets
        .iter()
        .filter(|d| d.connection == connection && d.direction == direction)
        .map(|d| &d.packet)
        .collect()
}

fn only<'a>(packets: &[&'a Packet], packet_type: PacketType) -> Vec<&'a Packet> {
    packets
        .iter()
        .copied()
        .filter(|p| p.packet_type() == packet_type)
        .collect()
}

macro_rules! expect_variant {
    ($packet:expr, $variant:ident) => {
        match $packet {
            Packet::$variant(inner) => inner,
            other => panic!("expected {}, got {other:?}", stringify!($variant)),
        }
    };
}

#[test]
fn connect_with_will_and_credentials_in_every_version() {
    for (name, version) in [
        ("mosquitto-v31-will-auth.json", ProtocolVersion::V3_1),
        ("mosquitto-v311-will-auth.json", ProtocolVersion::V3_1_1),
        ("mosquitto-v5-will-auth.json", ProtocolVersion::V5),
    ] {
        let (_, packets) = load(name);
        let connects: Vec<_> = packets
            .iter()
            .filter_map(|d| match &d.packet {
                Packet::Connect(c) if c.client_id == "tern-will" => Some(c),
                _ => None,
            })
            .collect();
        let connect = connects
            .first()
            .unwrap_or_else(|| panic!("{name}: no CONNECT of tern-will"));
        assert_eq!(connect.protocol, version, "{name}");
        assert_eq!(connect.keep_alive, 30, "{name}");
        assert_eq!(connect.username.as_deref(), Some("tern-user"), "{name}");
        assert_eq!(
            connect.password.as_deref(),
            Some(&b"tern-pass"[..]),
            "{name}"
        );
        let will = connect.will.as_ref().expect("will");
        assert_eq!(&will.topic[..], "tern/will", "{name}");
        assert_eq!(will.qos, QoS::AtLeastOnce, "{name}");
        assert!(will.retain, "{name}");
        if version.is_v5() {
            assert_eq!(connect.properties.session_expiry_interval, Some(5));
            assert_eq!(will.properties.will_delay_interval, Some(1));
            assert_eq!(will.properties.message_expiry_interval, Some(300));
            assert_eq!(will.properties.payload_format_indicator, Some(true));
            assert!(will.properties.content_type.is_some());
            assert!(will.properties.response_topic.is_some());
            assert!(will.properties.correlation_data.is_some());
            assert!(!will.properties.user_properties.is_empty());
        }
    }
}

#[test]
fn publish_with_every_message_property() {
    let (_, packets) = load("mosquitto-v5-pub-qos2-props.json");
    for (connection, direction) in [
        (1, Direction::ClientToBroker),
        (0, Direction::BrokerToClient),
    ] {
        let sent = sent(&packets, connection, direction);
        let publish = expect_variant!(only(&sent, PacketType::Publish)[0], Publish);
        assert_eq!(&publish.topic[..], "tern/props");
        assert_eq!(publish.qos, QoS::ExactlyOnce);
        assert_eq!(publish.packet_id.map(|id| id.get()), Some(1));
        assert_eq!(&publish.payload[..], br#"{"hello":"props"}"#);
        let properties = publish.properties();
        assert_eq!(properties.payload_format_indicator, Some(true));
        assert_eq!(
            properties.message_expiry_interval.map(|s| s > 3590),
            Some(true)
        );
        assert_eq!(properties.content_type.as_deref(), Some("application/json"));
        assert_eq!(
            properties.response_topic.as_deref(),
            Some("tern/props/response")
        );
        assert_eq!(
            properties.correlation_data.as_deref(),
            Some(&b"corr-1234"[..])
        );
        let user: Vec<(&str, &str)> = properties
            .user_properties
            .iter()
            .map(|(k, v)| (&k[..], &v[..]))
            .collect();
        assert_eq!(user, [("k", "v"), ("k", "v2")]);
    }
}

#[test]
fn qos2_handshake_in_both_directions() {
    for name in [
        "mosquitto-v31-pub-qos2.json",
        "mosquitto-v311-pub-qos2.json",
        "mosquitto-v5-pub-qos2.json",
    ] {
        let (_, packets) = load(name);
        let kinds = |connection, direction| -> Vec<&'static str> {
            sent(&packets, connection, direction)
                .iter()
                .map(|p| p.packet_type().name())
                .collect()
        };
        // The publisher's side and the subscriber's side of the handshake.
        assert_eq!(
            kinds(1, Direction::ClientToBroker),
            ["CONNECT", "PUBLISH", "PUBREL", "DISCONNECT"],
            "{name}"
        );
        assert_eq!(
            kinds(1, Direction::BrokerToClient),
            ["CONNACK", "PUBREC", "PUBCOMP"],
            "{name}"
        );
        assert_eq!(
            kinds(0, Direction::BrokerToClient),
            ["CONNACK", "SUBACK", "PUBLISH", "PUBREL"],
            "{name}"
        );
        let delivered = sent(&packets, 0, Direction::BrokerToClient);
        let publish = expect_variant!(only(&delivered, PacketType::Publish)[0], Publish);
        assert_eq!(&publish.payload[..], b"hello at qos 2", "{name}");
        assert_eq!(publish.qos, QoS::ExactlyOnce, "{name}");
    }
}

#[test]
fn subscribe_options_and_subscription_identifiers() {
    let (_, packets) = load("mosquitto-v5-sub-options.json");
    let client = sent(&packets, 1, Direction::ClientToBroker);
    let subscribe = expect_variant!(only(&client, PacketType::Subscribe)[0], Subscribe);
    assert_eq!(subscribe.properties.subscription_identifier, Some(42));
    let filters: Vec<&str> = subscribe.filters.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(filters, ["tern/opt/a", "tern/other/+/b", "tern/more/#"]);
    for (_, options) in &subscribe.filters {
        assert_eq!(options.qos, QoS::ExactlyOnce);
        assert!(options.retain_as_published);
    }
    let broker = sent(&packets, 1, Direction::BrokerToClient);
    let publish = expect_variant!(only(&broker, PacketType::Publish)[0], Publish);
    assert!(publish.retain);
    assert_eq!(publish.properties().subscription_identifiers, [42]);

    let (_, packets) = load("paho-v5-props.json");
    let client = sent(&packets, 0, Direction::ClientToBroker);
    let subscribe = expect_variant!(only(&client, PacketType::Subscribe)[0], Subscribe);
    assert_eq!(subscribe.properties.subscription_identifier, Some(7));
    let options: Vec<_> = subscribe.filters.iter().map(|(_, o)| o).collect();
    assert_eq!(options.len(), 3);
    assert!(options.iter().any(|o| o.no_local));
    assert!(options.iter().any(|o| o.retain_as_published));
    assert!(
        options
            .iter()
            .any(|o| o.retain_handling != RetainHandling::SendAtSubscribe)
    );
}

#[test]
fn topic_alias_replaces_the_topic_name() {
    let (_, packets) = load("mosquitto-v5-topic-alias.json");
    let client = sent(&packets, 1, Direction::ClientToBroker);
    let publishes = only(&client, PacketType::Publish);
    let first = expect_variant!(publishes[0], Publish);
    let second = expect_variant!(publishes[1], Publish);
    assert_eq!(first.properties().topic_alias, Some(1));
    assert!(!first.topic.is_empty());
    assert_eq!(second.properties().topic_alias, Some(1));
    assert!(second.topic.is_empty());
}

#[test]
fn refusals_and_failure_codes() {
    let connack = |name: &str| -> (bool, ReasonCode) {
        let (_, packets) = load(name);
        let broker = sent(&packets, 0, Direction::BrokerToClient);
        let connack = expect_variant!(only(&broker, PacketType::ConnAck)[0], ConnAck);
        (connack.session_present, connack.reason_code)
    };
    assert_eq!(
        connack("mosquitto-v311-connack-refused.json"),
        (false, ReasonCode::NotAuthorized)
    );
    assert_eq!(
        connack("mosquitto-v5-connack-refused.json"),
        (false, ReasonCode::NotAuthorized)
    );
    assert_eq!(
        connack("mosquitto-v5-connack-bad-auth-method.json"),
        (false, ReasonCode::BadAuthenticationMethod)
    );

    for (name, denied) in [
        (
            "mosquitto-v311-suback-denied.json",
            ReasonCode::UnspecifiedError,
        ),
        ("mosquitto-v5-suback-denied.json", ReasonCode::NotAuthorized),
    ] {
        let (_, packets) = load(name);
        let broker = sent(&packets, 0, Direction::BrokerToClient);
        let suback = expect_variant!(only(&broker, PacketType::SubAck)[0], SubAck);
        assert_eq!(
            suback.reason_codes,
            [ReasonCode::GrantedQoS1, denied],
            "{name}"
        );
    }

    let (_, packets) = load("paho-v5-broker-limits.json");
    let broker = sent(&packets, 0, Direction::BrokerToClient);
    let connack = expect_variant!(only(&broker, PacketType::ConnAck)[0], ConnAck);
    assert_eq!(connack.properties.maximum_qos, Some(QoS::AtLeastOnce));
    assert_eq!(connack.properties.retain_available, Some(false));
    assert_eq!(connack.properties.server_keep_alive, Some(30));
    assert_eq!(connack.properties.maximum_packet_size, Some(2048));
    let disconnect = expect_variant!(only(&broker, PacketType::Disconnect)[0], Disconnect);
    assert_eq!(disconnect.reason_code, ReasonCode::RetainNotSupported);
}

#[test]
fn persistent_sessions_report_session_present() {
    for (name, second_present) in [
        ("mosquitto-v31-persistent-session.json", false),
        ("mosquitto-v311-persistent-session.json", true),
        ("mosquitto-v5-persistent-session.json", true),
    ] {
        let (_, packets) = load(name);
        let present: Vec<bool> = packets
            .iter()
            .filter_map(|d| match &d.packet {
                Packet::ConnAck(c) => Some(c.session_present),
                _ => None,
            })
            .collect();
        assert_eq!(present, [false, second_present], "{name}");
        let connect = expect_variant!(&packets[0].packet, Connect);
        assert!(!connect.clean_start, "{name}");
    }
}

#[test]
fn disconnect_reasons_and_large_payloads() {
    let (_, packets) = load("paho-v5-disconnect-with-will.json");
    let client = sent(&packets, 1, Direction::ClientToBroker);
    let disconnect = expect_variant!(only(&client, PacketType::Disconnect)[0], Disconnect);
    assert_eq!(
        disconnect.reason_code,
        ReasonCode::DisconnectWithWillMessage
    );

    let (_, packets) = load("mosquitto-v5-pub-large.json");
    let delivered = sent(&packets, 0, Direction::BrokerToClient);
    let sizes: Vec<usize> = only(&delivered, PacketType::Publish)
        .iter()
        .map(|p| expect_variant!(p, Publish).payload.len())
        .collect();
    assert_eq!(sizes, [200, 20000]);
}
