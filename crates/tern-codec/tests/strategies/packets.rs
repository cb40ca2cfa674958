//! Strategies for each packet type, valid for the version they are given.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use tern_codec::{
    Ack, Auth, ByteString, ConnAck, Connect, Disconnect, LastWill, PacketType, ProtocolVersion,
    Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe, SubscribeProperties,
    SubscriptionOptions, TopicFilter, UnsubAck, Unsubscribe, UnsubscribeProperties,
};

use super::properties::{
    ack_properties, auth_properties, connack_properties, connect_properties, disconnect_properties,
    publish_properties, subscription_id, users, will_properties,
};
use super::{
    V3_CONNACK_CODES, V3_SUBACK_CODES, binary, packet_id, qos, reason_allowed_in, text,
    topic_filter, topic_name, v5_or_default,
};

fn last_will(version: ProtocolVersion) -> impl Strategy<Value = LastWill> {
    (
        qos(),
        any::<bool>(),
        v5_or_default(version, will_properties()),
        topic_name(),
        binary(16),
    )
        .prop_map(|(qos, retain, properties, topic, payload)| LastWill {
            qos,
            retain,
            properties,
            topic,
            payload,
        })
}

/// A CONNECT announcing `version`. Before MQTT 5 a password needs a user name.
pub(super) fn connect(version: ProtocolVersion) -> impl Strategy<Value = Connect> {
    let credentials = if version.is_v5() {
        (option::of(text(8)), option::of(binary(8))).boxed()
    } else {
        prop_oneof![
            Just((None, None)),
            text(8).prop_map(|user| (Some(user), None)),
            (text(8), binary(8)).prop_map(|(user, pass)| (Some(user), Some(pass))),
        ]
        .boxed()
    };
    (
        any::<bool>(),
        any::<u16>(),
        v5_or_default(version, connect_properties()),
        text(12),
        option::of(last_will(version)),
        credentials,
    )
        .prop_map(
            move |(clean_start, keep_alive, properties, client_id, will, (username, password))| {
                Connect {
                    protocol: version,
                    clean_start,
                    keep_alive,
                    properties,
                    client_id,
                    will,
                    username,
                    password,
                }
            },
        )
}

/// A CONNACK: session present only on success, and never in MQTT 3.1.
pub(super) fn connack(version: ProtocolVersion) -> impl Strategy<Value = ConnAck> {
    let reason = if version.is_v5() {
        reason_allowed_in(PacketType::ConnAck).boxed()
    } else {
        select(&V3_CONNACK_CODES[..]).boxed()
    };
    (
        reason,
        any::<bool>(),
        v5_or_default(version, connack_properties()),
    )
        .prop_map(move |(reason_code, present, properties)| ConnAck {
            session_present: present
                && reason_code == ReasonCode::Success
                && version != ProtocolVersion::V3_1,
            reason_code,
            properties,
        })
}

/// A PUBLISH; in MQTT 5 one in five has an empty topic and a topic alias.
pub(super) fn publish(version: ProtocolVersion) -> impl Strategy<Value = Publish> {
    let topic = if version.is_v5() {
        prop_oneof![4 => topic_name(), 1 => Just(ByteString::new())].boxed()
    } else {
        topic_name().boxed()
    };
    (
        (qos(), any::<bool>(), any::<bool>(), packet_id()),
        topic,
        v5_or_default(version, publish_properties()),
        1..=u16::MAX,
        prop_oneof![3 => binary(32), 1 => binary(300)],
    )
        .prop_map(
            |((qos, dup, retain, id), topic, mut properties, alias, payload)| {
                if topic.is_empty() && properties.topic_alias.is_none() {
                    properties.topic_alias = Some(alias);
                }
                let acknowledged = qos != QoS::AtMostOnce;
                let mut publish = Publish::new(topic, payload);
                publish.dup = dup && acknowledged;
                publish.qos = qos;
                publish.retain = retain;
                publish.packet_id = acknowledged.then_some(id);
                publish.set_properties(properties);
                publish
            },
        )
}

/// The body of a PUBACK, PUBREC, PUBREL or PUBCOMP (`packet`).
pub(super) fn ack(version: ProtocolVersion, packet: PacketType) -> impl Strategy<Value = Ack> {
    let reason = if version.is_v5() {
        reason_allowed_in(packet).boxed()
    } else {
        Just(ReasonCode::Success).boxed()
    };
    (
        packet_id(),
        reason,
        v5_or_default(version, ack_properties()),
    )
        .prop_map(|(packet_id, reason_code, properties)| Ack {
            reason_code,
            properties,
            ..Ack::new(packet_id)
        })
}

fn subscription(
    version: ProtocolVersion,
) -> impl Strategy<Value = (TopicFilter, SubscriptionOptions)> {
    let handling = select(
        &[
            RetainHandling::SendAtSubscribe,
            RetainHandling::SendIfNewSubscription,
            RetainHandling::DoNotSend,
        ][..],
    );
    (
        topic_filter(),
        qos(),
        any::<bool>(),
        any::<bool>(),
        handling,
    )
        .prop_map(
            move |(filter, qos, no_local, retain_as_published, retain_handling)| {
                let options = if version.is_v5() {
                    SubscriptionOptions {
                        qos,
                        no_local: no_local && !filter.is_shared(),
                        retain_as_published,
                        retain_handling,
                    }
                } else {
                    SubscriptionOptions::with_qos(qos)
                };
                (filter, options)
            },
        )
}

/// A SUBSCRIBE with one to four filters.
pub(super) fn subscribe(version: ProtocolVersion) -> impl Strategy<Value = Subscribe> {
    let properties =
        (option::of(subscription_id()), users()).prop_map(|(id, user)| SubscribeProperties {
            subscription_identifier: id,
            user_properties: user,
            ..Default::default()
        });
    (
        packet_id(),
        v5_or_default(version, properties),
        vec(subscription(version), 1..=4),
    )
        .prop_map(|(packet_id, properties, filters)| Subscribe {
            packet_id,
            properties,
            filters,
        })
}

/// A SUBACK with one to four codes; before MQTT 5 only granted QoS or 0x80.
pub(super) fn suback(version: ProtocolVersion) -> impl Strategy<Value = SubAck> {
    let code = if version.is_v5() {
        reason_allowed_in(PacketType::SubAck).boxed()
    } else {
        select(&V3_SUBACK_CODES[..]).boxed()
    };
    (
        packet_id(),
        v5_or_default(version, ack_properties()),
        vec(code, 1..=4),
    )
        .prop_map(|(packet_id, properties, reason_codes)| SubAck {
            packet_id,
            properties,
            reason_codes,
        })
}

/// An UNSUBSCRIBE with one to four filters.
pub(super) fn unsubscribe(version: ProtocolVersion) -> impl Strategy<Value = Unsubscribe> {
    let properties = users().prop_map(|user| UnsubscribeProperties {
        user_properties: user,
        ..Default::default()
    });
    (
        packet_id(),
        v5_or_default(version, properties),
        vec(topic_filter(), 1..=4),
    )
        .prop_map(|(packet_id, properties, filters)| Unsubscribe {
            packet_id,
            properties,
            filters,
        })
}

/// An UNSUBACK: one to four reason codes in MQTT 5, none before.
pub(super) fn unsuback(version: ProtocolVersion) -> impl Strategy<Value = UnsubAck> {
    let codes = if version.is_v5() {
        vec(reason_allowed_in(PacketType::UnsubAck), 1..=4).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (packet_id(), v5_or_default(version, ack_properties()), codes).prop_map(
        |(packet_id, properties, reason_codes)| UnsubAck {
            packet_id,
            properties,
            reason_codes,
        },
    )
}

/// A DISCONNECT: before MQTT 5 always the default.
pub(super) fn disconnect(version: ProtocolVersion) -> impl Strategy<Value = Disconnect> {
    if !version.is_v5() {
        return Just(Disconnect::default()).boxed();
    }
    (
        reason_allowed_in(PacketType::Disconnect),
        disconnect_properties(),
    )
        .prop_map(|(reason_code, properties)| Disconnect {
            reason_code,
            properties,
            ..Disconnect::default()
        })
        .boxed()
}

/// An AUTH (MQTT 5 only).
pub(super) fn auth() -> impl Strategy<Value = Auth> {
    (reason_allowed_in(PacketType::Auth), auth_properties()).prop_map(
        |(reason_code, properties)| Auth {
            reason_code,
            properties,
            ..Auth::default()
        },
    )
}
