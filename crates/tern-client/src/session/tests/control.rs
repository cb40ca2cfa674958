//! Keep-alive, subscriptions, disconnection, the server's limits on what
//! the client may publish, and bad bytes from the server.

use tern_codec::{
    ConnAck, DecodeError, Disconnect, Packet, ProtocolVersion, Publish, QoS, ReasonCode, SubAck,
    SubscribeProperties, SubscriptionOptions, TopicError, TopicFilter, UnsubAck,
    UnsubscribeProperties,
};

use super::{accepted, connected, drain, event, message, options, pid, secs, send, violation};
use crate::{CommandError, Event, ProtocolError, RequestId};

fn filter(text: &str) -> TopicFilter {
    TopicFilter::new(text).unwrap()
}

#[test]
fn pings_when_idle_and_times_out_without_pingresp() {
    let (mut session, t0) = connected(options(ProtocolVersion::V3_1_1), accepted());
    // CONNECT was the last packet sent.
    assert_eq!(session.next_deadline(), Some(t0 + secs(60)));
    session
        .publish(message("a", QoS::AtMostOnce, None), t0 + secs(30))
        .unwrap();
    drain(&mut session);
    assert_eq!(session.next_deadline(), Some(t0 + secs(90)));
    session.tick(t0 + secs(89));
    assert_eq!(drain(&mut session), []);
    session.tick(t0 + secs(90));
    assert_eq!(drain(&mut session), [send(Packet::PingReq)]);
    session.handle_packet(Packet::PingResp, t0 + secs(91));
    assert_eq!(session.next_deadline(), Some(t0 + secs(150)));
    session.tick(t0 + secs(150));
    assert_eq!(drain(&mut session), [send(Packet::PingReq)]);
    // No PINGRESP: the default ping timeout is one interval.
    session.tick(t0 + secs(209));
    assert_eq!(drain(&mut session), []);
    session.tick(t0 + secs(210));
    assert_eq!(drain(&mut session), [event(Event::PingTimeout)]);
    assert!(session.is_closed());
}

#[test]
fn the_servers_keep_alive_overrides_the_clients() {
    let mut connack = accepted();
    connack.properties.server_keep_alive = Some(5);
    let (session, t0) = connected(options(ProtocolVersion::V5), connack);
    assert_eq!(session.keep_alive(), Some(secs(5)));
    assert_eq!(session.next_deadline(), Some(t0 + secs(5)));

    let mut connack = accepted();
    connack.properties.server_keep_alive = Some(0);
    let (session, _) = connected(options(ProtocolVersion::V5), connack);
    assert_eq!(session.keep_alive(), None);
    assert_eq!(session.next_deadline(), None);
}

#[test]
fn subscribe_and_unsubscribe_report_their_reason_codes() {
    let (mut session, t0) = connected(options(ProtocolVersion::V5), accepted());
    let filters = vec![
        (
            filter("a/#"),
            SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        ),
        (
            filter("b/+"),
            SubscriptionOptions::with_qos(QoS::ExactlyOnce),
        ),
    ];
    let request = session
        .subscribe(filters.clone(), SubscribeProperties::default(), t0)
        .unwrap();
    let subscribe = tern_codec::Subscribe {
        packet_id: pid(1),
        properties: SubscribeProperties::default(),
        filters,
    };
    assert_eq!(drain(&mut session), [send(Packet::Subscribe(subscribe))]);
    let reason_codes = vec![ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized];
    let suback = SubAck {
        packet_id: pid(1),
        properties: Default::default(),
        reason_codes: reason_codes.clone(),
    };
    session.handle_packet(Packet::SubAck(suback), t0);
    assert_eq!(
        drain(&mut session),
        [event(Event::Subscribed {
            request,
            reason_codes
        })]
    );

    let request = session
        .unsubscribe(vec![filter("a/#")], UnsubscribeProperties::default(), t0)
        .unwrap();
    assert_eq!(request, RequestId(2));
    drain(&mut session);
    let unsuback = UnsubAck {
        packet_id: pid(2),
        properties: Default::default(),
        reason_codes: vec![ReasonCode::Success, ReasonCode::Success],
    };
    session.handle_packet(Packet::UnsubAck(unsuback), t0);
    assert_eq!(
        drain(&mut session),
        violation(ProtocolError::ReasonCodeCount {
            requested: 1,
            received: 2
        })
    );
}

#[test]
fn unsuback_has_no_reason_codes_before_v5() {
    let (mut session, t0) = connected(options(ProtocolVersion::V3_1_1), accepted());
    let request = session
        .unsubscribe(
            vec![filter("a"), filter("b")],
            UnsubscribeProperties::default(),
            t0,
        )
        .unwrap();
    drain(&mut session);
    let unsuback = UnsubAck {
        packet_id: pid(1),
        properties: Default::default(),
        reason_codes: Vec::new(),
    };
    session.handle_packet(Packet::UnsubAck(unsuback), t0);
    assert_eq!(
        drain(&mut session),
        [event(Event::Unsubscribed {
            request,
            reason_codes: Vec::new()
        })]
    );
    assert_eq!(
        session.subscribe(Vec::new(), SubscribeProperties::default(), t0),
        Err(CommandError::NoTopicFilters)
    );
}

#[test]
fn disconnect_sends_disconnect_and_closes() {
    let (mut session, t0) = connected(options(ProtocolVersion::V5), accepted());
    let disconnect = Disconnect::new(ReasonCode::DisconnectWithWillMessage);
    session.disconnect(disconnect.clone(), t0).unwrap();
    assert_eq!(
        drain(&mut session),
        [send(Packet::Disconnect(Box::new(disconnect)))]
    );
    assert!(session.is_closed());
    assert_eq!(session.next_deadline(), None);
    assert_eq!(
        session.disconnect(Disconnect::default(), t0),
        Err(CommandError::Closed)
    );
    session.handle_packet(Packet::PingResp, t0);
    assert_eq!(drain(&mut session), []);
}

#[test]
fn a_disconnect_from_the_server_closes_the_session() {
    let (mut session, t0) = connected(options(ProtocolVersion::V5), accepted());
    let disconnect = Box::new(Disconnect::new(ReasonCode::SessionTakenOver));
    session.handle_packet(Packet::Disconnect(disconnect.clone()), t0);
    assert_eq!(
        drain(&mut session),
        [event(Event::Disconnected(disconnect))]
    );
    assert!(session.is_closed());
}

#[test]
fn publishes_must_fit_the_servers_limits() {
    let mut connack = ConnAck::new(ReasonCode::Success, false);
    connack.properties.maximum_qos = Some(QoS::AtLeastOnce);
    connack.properties.retain_available = Some(false);
    connack.properties.topic_alias_maximum = Some(5);
    let (mut session, t0) = connected(options(ProtocolVersion::V5), connack);
    assert_eq!(
        session.publish(message("a", QoS::ExactlyOnce, None), t0),
        Err(CommandError::QosNotSupported {
            requested: QoS::ExactlyOnce,
            maximum: QoS::AtLeastOnce
        })
    );
    let mut retained = Publish::new("a", "x");
    retained.retain = true;
    assert_eq!(
        session.publish(retained, t0),
        Err(CommandError::RetainNotSupported)
    );
    assert_eq!(
        session.publish(Publish::new("a/+", "x"), t0),
        Err(CommandError::InvalidTopic(TopicError::WildcardInName))
    );

    let aliased = |topic: &str, alias| {
        let mut publish = Publish::new(topic.to_owned(), "x");
        publish.properties_mut().topic_alias = Some(alias);
        publish
    };
    let invalid = |alias| CommandError::TopicAliasInvalid { alias, maximum: 5 };
    assert_eq!(session.publish(aliased("", 1), t0), Err(invalid(1)));
    assert_eq!(session.publish(aliased("a", 6), t0), Err(invalid(6)));
    assert!(session.publish(aliased("a", 1), t0).is_ok());
    assert!(session.publish(aliased("", 1), t0).is_ok());
    assert_eq!(drain(&mut session).len(), 2);
}

#[test]
fn bad_bytes_close_the_session_with_the_matching_reason() {
    let (mut session, t0) = connected(options(ProtocolVersion::V5), accepted());
    session.handle_decode_error(DecodeError::Truncated, t0);
    let error = ProtocolError::Decode(DecodeError::Truncated);
    assert_eq!(error.reason_code(), ReasonCode::MalformedPacket);
    assert_eq!(drain(&mut session), violation(error));

    // Before MQTT 5 there is no DISCONNECT to say why.
    let (mut session, t0) = connected(options(ProtocolVersion::V3_1_1), accepted());
    session.handle_decode_error(DecodeError::Truncated, t0);
    assert_eq!(
        drain(&mut session),
        [event(Event::ProtocolViolation(error))]
    );
}
