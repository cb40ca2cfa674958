//! Retained messages: set, replace, clear, and what a subscription gets.

use std::time::Duration;

use anyhow::Result;
use tern_codec::{ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};

use crate::common::{TestClient, publish, start};

fn retained(topic: &str, payload: &str) -> tern_codec::Publish {
    let mut message = publish(topic, payload, QoS::AtLeastOnce, 1);
    message.retain = true;
    message
}

#[tokio::test]
async fn retained_messages_are_set_replaced_and_cleared() -> Result<()> {
    let (server, address) = start().await?;
    let mut publisher = TestClient::connect(address, ProtocolVersion::V3_1_1, "pub").await?;
    publisher.publish(retained("room/1", "old")).await?;
    publisher.publish(retained("room/1", "new")).await?;
    publisher.publish(retained("room/2", "two")).await?;

    let mut subscriber = TestClient::connect(address, ProtocolVersion::V3_1_1, "sub").await?;
    subscriber.subscribe("room/+", QoS::AtLeastOnce).await?;
    let mut payloads = Vec::new();
    for _ in 0..2 {
        let message = subscriber.recv_publish().await?;
        assert!(message.retain, "sent for a new subscription: RETAIN set");
        payloads.push(String::from_utf8(message.payload.to_vec())?);
        subscriber.acknowledge(&message).await?;
    }
    payloads.sort();
    assert_eq!(payloads, ["new", "two"]);

    // Forwarded to an existing subscription: RETAIN cleared.
    publisher.publish(retained("room/2", "live")).await?;
    let live = subscriber.recv_publish().await?;
    assert!(!live.retain);
    subscriber.acknowledge(&live).await?;

    // An empty payload clears the topic (and is forwarded as usual).
    publisher.publish(retained("room/1", "")).await?;
    let cleared = subscriber.recv_publish().await?;
    assert!(cleared.payload.is_empty());
    subscriber.acknowledge(&cleared).await?;
    let mut late = TestClient::connect(address, ProtocolVersion::V3_1_1, "late").await?;
    late.subscribe("room/1", QoS::AtLeastOnce).await?;
    late.expect_silence(Duration::from_millis(300)).await?;
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn retain_handling_and_retain_as_published() -> Result<()> {
    let (server, address) = start().await?;
    let mut publisher = TestClient::connect(address, ProtocolVersion::V5, "pub").await?;
    publisher.publish(retained("t", "kept")).await?;
    let mut client = TestClient::connect(address, ProtocolVersion::V5, "sub").await?;
    let options = |retain_handling| SubscriptionOptions {
        retain_handling,
        ..SubscriptionOptions::with_qos(QoS::AtMostOnce)
    };

    // 2: never.
    client
        .subscribe_with("t", options(RetainHandling::DoNotSend))
        .await?;
    client.expect_silence(Duration::from_millis(200)).await?;
    // 1: only for a new subscription; this one exists.
    client
        .subscribe_with("t", options(RetainHandling::SendIfNewSubscription))
        .await?;
    client.expect_silence(Duration::from_millis(200)).await?;
    // 1 on a new filter: sent.
    client
        .subscribe_with("+", options(RetainHandling::SendIfNewSubscription))
        .await?;
    assert_eq!(&client.recv_publish().await?.payload[..], b"kept");
    // 0: always.
    client
        .subscribe_with("t", options(RetainHandling::SendAtSubscribe))
        .await?;
    assert!(client.recv_publish().await?.retain);

    // Retain as published keeps RETAIN on forwarded messages.
    let mut keeper = TestClient::connect(address, ProtocolVersion::V5, "keeper").await?;
    let keep = SubscriptionOptions {
        retain_as_published: true,
        retain_handling: RetainHandling::DoNotSend,
        ..SubscriptionOptions::with_qos(QoS::AtMostOnce)
    };
    keeper.subscribe_with("t", keep).await?;
    publisher.publish(retained("t", "again")).await?;
    assert!(keeper.recv_publish().await?.retain);
    server.shutdown().await?;
    Ok(())
}
