//! The `$SYS` topics and the broker's counters.

use std::time::Duration;

use anyhow::Result;
use tern_broker::BrokerConfig;
use tern_codec::{Connect, ProtocolVersion, QoS};

use crate::common::{TestClient, publish, start, start_with};

#[tokio::test]
async fn sys_topics_are_published_as_retained_messages() -> Result<()> {
    let config = BrokerConfig {
        sys_interval: 1,
        ..BrokerConfig::for_tests()
    };
    let (server, address) = start_with(config).await?;
    // Let the first publication happen, so that what follows is retained.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut client = TestClient::connect(address, ProtocolVersion::V3_1_1, "ops").await?;
    client.subscribe("$SYS/broker/#", QoS::AtMostOnce).await?;
    let mut topics = Vec::new();
    for _ in 0..10 {
        let message = client.recv_publish().await?;
        assert!(message.retain);
        if &*message.topic == "$SYS/broker/version" {
            assert!(message.payload.starts_with(b"tern version "));
        }
        topics.push(message.topic.to_string());
    }
    topics.sort();
    for expected in [
        "$SYS/broker/bytes/received",
        "$SYS/broker/bytes/sent",
        "$SYS/broker/clients/connected",
        "$SYS/broker/messages/received",
        "$SYS/broker/messages/sent",
        "$SYS/broker/retained messages/count",
        "$SYS/broker/subscriptions/count",
        "$SYS/broker/uptime",
        "$SYS/broker/version",
    ] {
        assert!(
            topics.iter().any(|t| t == expected),
            "{expected} in {topics:?}"
        );
    }
    // "#" alone does not see them.
    let mut everything = TestClient::connect(address, ProtocolVersion::V5, "all").await?;
    everything.subscribe("#", QoS::AtMostOnce).await?;
    everything
        .expect_silence(Duration::from_millis(1_200))
        .await?;
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn messages_over_a_client_maximum_are_dropped_and_counted() -> Result<()> {
    let (server, address) = start().await?;
    let mut connect = Connect::new(ProtocolVersion::V5, "small", 0);
    connect.properties.maximum_packet_size = Some(64);
    let (mut small, _) = TestClient::connect_with(address, connect).await?;
    small.subscribe("data", QoS::AtLeastOnce).await?;
    let mut publisher = TestClient::connect(address, ProtocolVersion::V5, "pub").await?;
    publisher
        .publish(publish("data", &"x".repeat(100), QoS::AtLeastOnce, 1))
        .await?;
    publisher
        .publish(publish("data", "fits", QoS::AtLeastOnce, 2))
        .await?;
    let received = small.recv_publish().await?;
    assert_eq!(&received.payload[..], b"fits");
    let metrics = server.metrics();
    assert_eq!(metrics.dropped_too_large, 1);
    assert!(metrics.messages_received >= 2);
    assert_eq!(metrics.clients_connected, 2);
    server.shutdown().await?;
    Ok(())
}
