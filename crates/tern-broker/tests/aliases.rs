//! Outbound topic aliases on the wire: an MQTT 5 client that announces a
//! Topic Alias Maximum gets the topic once, then only the alias.

mod common;

use anyhow::Result;
use common::{TestClient, publish, start_with};
use tern_broker::BrokerConfig;
use tern_codec::{Connect, ProtocolVersion, QoS};

#[tokio::test]
async fn repeated_topics_are_sent_as_aliases() -> Result<()> {
    let config = BrokerConfig {
        max_topic_alias_outbound: 4,
        ..BrokerConfig::for_tests()
    };
    let (server, address) = start_with(config).await?;
    let mut connect = Connect::new(ProtocolVersion::V5, "aliased", 0);
    connect.properties.topic_alias_maximum = Some(2);
    let (mut subscriber, connack) = TestClient::connect_with(address, connect).await?;
    assert!(connack.reason_code.is_success());
    subscriber.subscribe("alias/+", QoS::AtLeastOnce).await?;
    let mut publisher = TestClient::connect(address, ProtocolVersion::V3_1_1, "pub").await?;

    let mut received = Vec::new();
    for (index, topic) in ["alias/a", "alias/a", "alias/b", "alias/a"]
        .iter()
        .enumerate()
    {
        let packet_id = u16::try_from(index + 1)?;
        publisher
            .publish(publish(topic, "x", QoS::AtLeastOnce, packet_id))
            .await?;
        let message = subscriber.recv_publish().await?;
        subscriber.acknowledge(&message).await?;
        received.push((message.topic.to_string(), message.properties().topic_alias));
    }
    let expected = [
        ("alias/a", Some(1)),
        ("", Some(1)),
        ("alias/b", Some(2)),
        ("", Some(1)),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(topic, alias)| ((*topic).to_owned(), *alias))
        .collect();
    assert_eq!(received, expected);
    publisher.disconnect().await?;
    subscriber.disconnect().await?;
    server.shutdown().await?;
    Ok(())
}
