//! Publish and subscribe at every QoS, wildcards, and the MQTT 5 options.

use std::time::Duration;

use anyhow::Result;
use tern_codec::{
    Packet, ProtocolVersion, PublishProperties, QoS, ReasonCode, SubscribeProperties,
    SubscriptionOptions, TopicFilter,
};

use crate::common::{TestClient, id, publish, start};

#[tokio::test]
async fn every_qos_in_both_directions() -> Result<()> {
    let (server, address) = start().await?;
    let mut subscriber = TestClient::connect(address, ProtocolVersion::V3_1_1, "sub").await?;
    let suback = subscriber.subscribe("qos/#", QoS::ExactlyOnce).await?;
    assert_eq!(suback.reason_codes, [ReasonCode::GrantedQoS2]);
    let mut publisher = TestClient::connect(address, ProtocolVersion::V5, "pub").await?;

    for (index, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let topic = format!("qos/{}", qos.as_u8());
        let ack = publisher
            .publish(publish(&topic, "hello", qos, index as u16 + 1))
            .await?;
        if let Some(ack) = ack {
            assert_eq!(ack.reason_code, ReasonCode::Success);
        }
        let received = subscriber.recv_publish().await?;
        assert_eq!((&*received.topic, received.qos), (&*topic, qos));
        assert_eq!(&received.payload[..], b"hello");
        assert!(!received.retain && !received.dup);
        subscriber.acknowledge(&received).await?;
    }

    // Delivered at the lower of the published and the subscribed QoS.
    subscriber.subscribe("low/#", QoS::AtMostOnce).await?;
    publisher
        .publish(publish("low/1", "x", QoS::ExactlyOnce, 9))
        .await?;
    assert_eq!(subscriber.recv_publish().await?.qos, QoS::AtMostOnce);
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn qos2_duplicates_from_the_publisher_are_delivered_once() -> Result<()> {
    let (server, address) = start().await?;
    let mut subscriber = TestClient::connect(address, ProtocolVersion::V5, "sub").await?;
    subscriber.subscribe("once", QoS::ExactlyOnce).await?;
    let mut publisher = TestClient::connect(address, ProtocolVersion::V5, "pub").await?;
    let message = publish("once", "x", QoS::ExactlyOnce, 5);
    publisher.send(Packet::Publish(message.clone())).await?;
    let mut again = message;
    again.dup = true;
    publisher.send(Packet::Publish(again)).await?;
    for _ in 0..2 {
        assert!(matches!(publisher.recv().await?, Some(Packet::PubRec(_))));
    }
    let received = subscriber.recv_publish().await?;
    subscriber.acknowledge(&received).await?;
    subscriber
        .expect_silence(Duration::from_millis(300))
        .await?;
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn wildcards_and_dollar_topics() -> Result<()> {
    let (server, address) = start().await?;
    let mut plus = TestClient::connect(address, ProtocolVersion::V5, "plus").await?;
    plus.subscribe("sport/+/score", QoS::AtMostOnce).await?;
    let mut hash = TestClient::connect(address, ProtocolVersion::V5, "hash").await?;
    hash.subscribe("#", QoS::AtMostOnce).await?;
    let mut publisher = TestClient::connect(address, ProtocolVersion::V5, "pub").await?;

    for topic in ["sport/tennis/score", "sport/golf/rank", "$internal/x"] {
        publisher
            .publish(publish(topic, "1", QoS::AtMostOnce, 0))
            .await?;
    }
    assert_eq!(&*plus.recv_publish().await?.topic, "sport/tennis/score");
    assert_eq!(&*hash.recv_publish().await?.topic, "sport/tennis/score");
    assert_eq!(&*hash.recv_publish().await?.topic, "sport/golf/rank");
    // "#" does not match topics starting with '$'.
    hash.expect_silence(Duration::from_millis(200)).await?;
    plus.expect_silence(Duration::from_millis(10)).await?;

    // Nobody may publish to $SYS.
    let ack = publisher
        .publish(publish("$SYS/broker/uptime", "0", QoS::AtLeastOnce, 3))
        .await?;
    assert_eq!(ack.map(|a| a.reason_code), Some(ReasonCode::NotAuthorized));
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn mqtt5_options_and_properties() -> Result<()> {
    let (server, address) = start().await?;
    let mut client = TestClient::connect(address, ProtocolVersion::V5, "v5").await?;
    // Two matching subscriptions with identifiers, one of them no-local.
    for (filter, identifier, no_local) in [("a/+", 7, false), ("a/#", 8, true)] {
        client
            .send(Packet::Subscribe(tern_codec::Subscribe {
                packet_id: id(identifier as u16),
                properties: SubscribeProperties {
                    subscription_identifier: Some(identifier),
                    ..SubscribeProperties::default()
                },
                filters: vec![(
                    TopicFilter::new(filter)?,
                    SubscriptionOptions {
                        no_local,
                        ..SubscriptionOptions::with_qos(QoS::AtLeastOnce)
                    },
                )],
            }))
            .await?;
        assert!(matches!(client.recv().await?, Some(Packet::SubAck(_))));
    }
    let mut other = TestClient::connect(address, ProtocolVersion::V5, "other").await?;
    let mut message = publish("a/b", "payload", QoS::AtLeastOnce, 1);
    message.set_properties(PublishProperties {
        message_expiry_interval: Some(60),
        content_type: Some("text/plain".into()),
        response_topic: Some("replies".into()),
        correlation_data: Some("c-1".into()),
        user_properties: vec![("k".into(), "v".into())],
        ..PublishProperties::default()
    });
    other.publish(message).await?;
    let received = client.recv_publish().await?;
    let properties = received.properties();
    let mut identifiers = properties.subscription_identifiers.clone();
    identifiers.sort_unstable();
    assert_eq!(identifiers, [7, 8]);
    assert_eq!(properties.content_type.as_deref(), Some("text/plain"));
    assert_eq!(properties.response_topic.as_deref(), Some("replies"));
    assert_eq!(properties.correlation_data.as_deref(), Some(&b"c-1"[..]));
    assert_eq!(properties.user_properties.len(), 1);
    let expiry = properties.message_expiry_interval.expect("expiry left");
    assert!((59..=60).contains(&expiry), "{expiry}");
    client.acknowledge(&received).await?;

    // Its own message reaches it through "a/+" only.
    client
        .send(Packet::Publish(publish("a/c", "mine", QoS::AtLeastOnce, 2)))
        .await?;
    // Its PUBACK and its own copy, in either order.
    let mut own = None;
    for _ in 0..2 {
        match client.recv().await? {
            Some(Packet::Publish(message)) => own = Some(message),
            Some(Packet::PubAck(_)) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let own = own.expect("its own message");
    assert_eq!(own.properties().subscription_identifiers, [7]);
    client.acknowledge(&own).await?;
    client.expect_silence(Duration::from_millis(200)).await?;
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn shared_subscriptions_deliver_to_one_member() -> Result<()> {
    let (server, address) = start().await?;
    let mut members = Vec::new();
    for name in ["w1", "w2"] {
        let mut member = TestClient::connect(address, ProtocolVersion::V5, name).await?;
        member
            .subscribe("$share/workers/jobs", QoS::AtMostOnce)
            .await?;
        members.push(member);
    }
    let mut publisher = TestClient::connect(address, ProtocolVersion::V5, "boss").await?;
    for index in 0..4 {
        publisher
            .publish(publish("jobs", &index.to_string(), QoS::AtMostOnce, 0))
            .await?;
    }
    let mut received = 0;
    for member in &mut members {
        for _ in 0..2 {
            member.recv_publish().await?;
            received += 1;
        }
        member.expect_silence(Duration::from_millis(100)).await?;
    }
    assert_eq!(received, 4, "round robin: two each");
    server.shutdown().await?;
    Ok(())
}
