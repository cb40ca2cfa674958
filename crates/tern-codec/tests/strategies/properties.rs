//! Strategies for the MQTT 5 property sets: every optional property is
//! absent or present, and every repeatable one occurs zero to a few times.

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use tern_codec::wire::MAX_VARIABLE_INTEGER;
use tern_codec::{
    AckProperties, AuthProperties, ConnAckProperties, ConnectProperties, DisconnectProperties,
    PublishProperties, QoS, UserProperties, WillProperties,
};

use super::{binary, text, topic_name};

/// A subscription identifier from every varint length class.
pub(super) fn subscription_id() -> impl Strategy<Value = u32> {
    prop_oneof![
        1..=127u32,
        128..=16_383u32,
        16_384..=2_097_151u32,
        2_097_152..=MAX_VARIABLE_INTEGER,
    ]
}

pub(super) fn users() -> impl Strategy<Value = UserProperties> {
    vec((text(6), text(6)), 0..=3)
}

pub(super) fn connect_properties() -> impl Strategy<Value = ConnectProperties> {
    (
        option::of(any::<u32>()),
        option::of(text(8)),
        option::of(binary(8)),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(1..=u16::MAX),
        option::of(any::<u16>()),
        users(),
        option::of(1..=u32::MAX),
    )
        .prop_map(
            |(sei, method, data, problem, response, receive, alias, user, max)| ConnectProperties {
                session_expiry_interval: sei,
                authentication_method: method,
                authentication_data: data,
                request_problem_information: problem,
                request_response_information: response,
                receive_maximum: receive,
                topic_alias_maximum: alias,
                user_properties: user,
                maximum_packet_size: max,
                ..Default::default()
            },
        )
}

pub(super) fn will_properties() -> impl Strategy<Value = WillProperties> {
    (
        option::of(any::<bool>()),
        option::of(any::<u32>()),
        option::of(text(8)),
        option::of(topic_name()),
        option::of(binary(8)),
        option::of(any::<u32>()),
        users(),
    )
        .prop_map(
            |(format, expiry, content, response, correlation, delay, user)| WillProperties {
                payload_format_indicator: format,
                message_expiry_interval: expiry,
                content_type: content,
                response_topic: response,
                correlation_data: correlation,
                will_delay_interval: delay,
                user_properties: user,
                ..Default::default()
            },
        )
}

pub(super) fn connack_properties() -> impl Strategy<Value = ConnAckProperties> {
    let first = (
        option::of(any::<u32>()),
        option::of(text(8)),
        option::of(any::<u16>()),
        option::of(text(8)),
        option::of(binary(8)),
        option::of(text(8)),
        option::of(text(8)),
        option::of(text(8)),
    );
    let second = (
        option::of(1..=u16::MAX),
        option::of(any::<u16>()),
        option::of(select(&[QoS::AtMostOnce, QoS::AtLeastOnce][..])),
        option::of(any::<bool>()),
        users(),
        option::of(1..=u32::MAX),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
        option::of(any::<bool>()),
    );
    (first, second).prop_map(
        |(
            (sei, assigned, keep_alive, method, data, response, reference, reason),
            (receive, alias, max_qos, retain, user, max_size, wildcard, sub_ids, shared),
        )| ConnAckProperties {
            session_expiry_interval: sei,
            assigned_client_identifier: assigned,
            server_keep_alive: keep_alive,
            authentication_method: method,
            authentication_data: data,
            response_information: response,
            server_reference: reference,
            reason_string: reason,
            receive_maximum: receive,
            topic_alias_maximum: alias,
            maximum_qos: max_qos,
            retain_available: retain,
            user_properties: user,
            maximum_packet_size: max_size,
            wildcard_subscription_available: wildcard,
            subscription_identifiers_available: sub_ids,
            shared_subscription_available: shared,
            ..Default::default()
        },
    )
}

pub(super) fn publish_properties() -> impl Strategy<Value = PublishProperties> {
    (
        option::of(any::<bool>()),
        option::of(any::<u32>()),
        option::of(text(8)),
        option::of(topic_name()),
        option::of(binary(8)),
        vec(subscription_id(), 0..=4),
        option::of(1..=u16::MAX),
        users(),
    )
        .prop_map(
            |(format, expiry, content, response, correlation, sub_ids, alias, user)| {
                PublishProperties {
                    payload_format_indicator: format,
                    message_expiry_interval: expiry,
                    content_type: content,
                    response_topic: response,
                    correlation_data: correlation,
                    subscription_identifiers: sub_ids,
                    topic_alias: alias,
                    user_properties: user,
                    ..Default::default()
                }
            },
        )
}

pub(super) fn ack_properties() -> impl Strategy<Value = AckProperties> {
    (option::of(text(8)), users()).prop_map(|(reason, user)| AckProperties {
        reason_string: reason,
        user_properties: user,
        ..Default::default()
    })
}

pub(super) fn disconnect_properties() -> impl Strategy<Value = DisconnectProperties> {
    (
        option::of(any::<u32>()),
        option::of(text(8)),
        option::of(text(8)),
        users(),
    )
        .prop_map(|(sei, reference, reason, user)| DisconnectProperties {
            session_expiry_interval: sei,
            server_reference: reference,
            reason_string: reason,
            user_properties: user,
            ..Default::default()
        })
}

pub(super) fn auth_properties() -> impl Strategy<Value = AuthProperties> {
    (
        option::of(text(8)),
        option::of(binary(8)),
        option::of(text(8)),
        users(),
    )
        .prop_map(|(method, data, reason, user)| AuthProperties {
            authentication_method: method,
            authentication_data: data,
            reason_string: reason,
            user_properties: user,
            ..Default::default()
        })
}
