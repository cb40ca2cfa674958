//! SUBSCRIBE and UNSUBSCRIBE: what the router is told, the SUBACK, and
//! which retained messages follow it.

use tern_codec::{
    Packet, ProtocolVersion, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    SubscribeProperties, SubscriptionOptions, UnsubAck, Unsubscribe,
};
use tern_session::Subscription;

use super::*;

fn subscribe(entries: &[(&str, QoS, RetainHandling)], identifier: Option<u32>) -> Packet {
    let filters = entries
        .iter()
        .map(|&(filter, qos, retain_handling)| {
            let options = SubscriptionOptions {
                retain_handling,
                ..SubscriptionOptions::with_qos(qos)
            };
            (TopicFilter::new(filter).expect("valid filter"), options)
        })
        .collect();
    Packet::Subscribe(Subscribe {
        packet_id: id(1),
        properties: SubscribeProperties {
            subscription_identifier: identifier,
            ..SubscribeProperties::default()
        },
        filters,
    })
}

fn retained_filters(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::SendRetained { filter, .. } => Some(filter.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn subscribe_updates_router_and_session_then_acknowledges() {
    let mut harness = Harness::with_settings(|settings| settings.max_qos = QoS::AtLeastOnce);
    harness.connect_with(connect(ProtocolVersion::V5, "c"), None);
    let actions = harness.packet(subscribe(
        &[
            ("a/+", QoS::ExactlyOnce, RetainHandling::SendAtSubscribe),
            ("b/#", QoS::AtMostOnce, RetainHandling::SendAtSubscribe),
        ],
        Some(9),
    ));
    let identifier = std::num::NonZeroU32::new(9);
    let granted = Subscription {
        options: SubscriptionOptions::with_qos(QoS::AtLeastOnce),
        identifier,
    };
    assert_eq!(
        actions[0],
        Action::Subscribe {
            filter: TopicFilter::new("a/+").unwrap(),
            subscription: granted,
        }
    );
    assert_eq!(
        actions[2],
        Action::Send(Packet::SubAck(SubAck {
            packet_id: id(1),
            properties: Default::default(),
            reason_codes: vec![ReasonCode::GrantedQoS1, ReasonCode::GRANTED_QOS_0],
        }))
    );
    assert_eq!(retained_filters(&actions[3..]), ["a/+", "b/#"]);
    assert_eq!(harness.session().subscriptions().len(), 2);
}

#[test]
fn retain_handling_decides_which_retained_messages_follow() {
    let mut harness = Harness::connected(ProtocolVersion::V5);
    let if_new = [("a", QoS::AtMostOnce, RetainHandling::SendIfNewSubscription)];
    assert_eq!(
        retained_filters(&harness.packet(subscribe(&if_new, None))),
        ["a"]
    );
    assert!(
        retained_filters(&harness.packet(subscribe(&if_new, None))).is_empty(),
        "the subscription existed"
    );
    let never = [("b", QoS::AtMostOnce, RetainHandling::DoNotSend)];
    assert!(retained_filters(&harness.packet(subscribe(&never, None))).is_empty());
    let always = [("a", QoS::AtMostOnce, RetainHandling::SendAtSubscribe)];
    assert_eq!(
        retained_filters(&harness.packet(subscribe(&always, None))),
        ["a"]
    );
    let shared = [(
        "$share/g/a",
        QoS::AtMostOnce,
        RetainHandling::SendAtSubscribe,
    )];
    assert!(
        retained_filters(&harness.packet(subscribe(&shared, None))).is_empty(),
        "shared subscriptions get no retained messages"
    );
}

#[test]
fn unsubscribe_reports_which_filters_existed() {
    let mut harness = Harness::connected(ProtocolVersion::V5);
    harness.packet(subscribe(
        &[("a", QoS::AtMostOnce, RetainHandling::DoNotSend)],
        None,
    ));
    let actions = harness.packet(Packet::Unsubscribe(Unsubscribe {
        packet_id: id(2),
        properties: Default::default(),
        filters: vec![
            TopicFilter::new("a").unwrap(),
            TopicFilter::new("b").unwrap(),
        ],
    }));
    assert_eq!(
        actions,
        [
            Action::Unsubscribe(TopicFilter::new("a").unwrap()),
            Action::Send(Packet::UnsubAck(UnsubAck {
                packet_id: id(2),
                properties: Default::default(),
                reason_codes: vec![ReasonCode::Success, ReasonCode::NoSubscriptionExisted],
            })),
        ]
    );
    assert!(harness.session().subscriptions().is_empty());
}
