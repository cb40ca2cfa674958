//! Clients that break the rules are closed, and nobody else notices.

use std::time::Duration;

use anyhow::Result;
use tern_broker::BrokerConfig;
use tern_codec::{Packet, ProtocolVersion, QoS, ReasonCode};

use crate::common::{TestClient, publish, start_with};

/// A subscriber that must keep working while others misbehave.
async fn bystander(address: std::net::SocketAddr) -> Result<TestClient> {
    let mut client = TestClient::connect(address, ProtocolVersion::V5, "bystander").await?;
    client.subscribe("alive", QoS::AtMostOnce).await?;
    Ok(client)
}

async fn still_served(address: std::net::SocketAddr, watcher: &mut TestClient) -> Result<()> {
    let mut publisher = TestClient::connect(address, ProtocolVersion::V5, "prober").await?;
    publisher
        .publish(publish("alive", "yes", QoS::AtMostOnce, 0))
        .await?;
    assert_eq!(&watcher.recv_publish().await?.payload[..], b"yes");
    Ok(())
}

#[tokio::test]
async fn bad_clients_are_closed_alone() -> Result<()> {
    let config = BrokerConfig {
        max_packet_size: 1024,
        ..BrokerConfig::for_tests()
    };
    let (server, address) = start_with(config).await?;
    let mut watcher = bystander(address).await?;

    // Garbage.
    let mut garbage = TestClient::open(address, ProtocolVersion::V3_1_1).await?;
    garbage.send_bytes(b"GET / HTTP/1.1\r\n\r\n").await?;
    assert!(garbage.expect_closed().await?.is_empty());

    // A packet before CONNECT.
    let mut early = TestClient::open(address, ProtocolVersion::V3_1_1).await?;
    early.send(Packet::PingReq).await?;
    assert!(early.expect_closed().await?.is_empty());

    // A truncated CONNECT, then silence: closed by the CONNECT timeout
    // at the latest, but a half packet alone must not break anything.
    let mut truncated = TestClient::open(address, ProtocolVersion::V3_1_1).await?;
    truncated
        .send_bytes(&[0x10, 0x20, 0x00, 0x04, b'M'])
        .await?;
    drop(truncated);

    // An oversized packet from a connected MQTT 5 client: DISCONNECT 0x95.
    let mut large = TestClient::connect(address, ProtocolVersion::V5, "large").await?;
    let payload = "x".repeat(2000);
    large
        .send(Packet::Publish(publish(
            "alive",
            &payload,
            QoS::AtMostOnce,
            0,
        )))
        .await?;
    let packets = large.expect_closed().await?;
    let [Packet::Disconnect(disconnect)] = &packets[..] else {
        panic!("expected DISCONNECT, got {packets:?}");
    };
    assert_eq!(disconnect.reason_code, ReasonCode::PacketTooLarge);

    // A second CONNECT.
    let mut twice = TestClient::connect(address, ProtocolVersion::V3_1_1, "twice").await?;
    twice
        .send(Packet::Connect(Box::new(tern_codec::Connect::new(
            ProtocolVersion::V3_1_1,
            "twice",
            0,
        ))))
        .await?;
    assert!(twice.expect_closed().await?.is_empty());

    watcher.expect_silence(Duration::from_millis(100)).await?;
    still_served(address, &mut watcher).await?;
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn shutdown_tells_mqtt5_clients() -> Result<()> {
    let (server, address) = start_with(BrokerConfig::for_tests()).await?;
    let mut client = TestClient::connect(address, ProtocolVersion::V5, "c").await?;
    let mut old = TestClient::connect(address, ProtocolVersion::V3_1_1, "old").await?;
    let stopping = tokio::spawn(server.shutdown());
    let packets = client.expect_closed().await?;
    let [Packet::Disconnect(disconnect)] = &packets[..] else {
        panic!("expected DISCONNECT, got {packets:?}");
    };
    assert_eq!(disconnect.reason_code, ReasonCode::ServerShuttingDown);
    assert!(old.expect_closed().await?.is_empty());
    stopping.await??;
    Ok(())
}

#[tokio::test]
async fn a_client_that_does_not_read_blocks_nobody() -> Result<()> {
    let config = BrokerConfig {
        max_queued_messages: 100,
        ..BrokerConfig::for_tests()
    };
    let (server, address) = start_with(config).await?;
    // Subscribes, then never reads: its socket fills up.
    let mut stalled = TestClient::connect(address, ProtocolVersion::V5, "stalled").await?;
    stalled.subscribe("flood", QoS::AtMostOnce).await?;
    let mut reader = TestClient::connect(address, ProtocolVersion::V5, "reader").await?;
    reader.subscribe("flood", QoS::AtMostOnce).await?;
    let reading = tokio::spawn(async move {
        loop {
            let message = reader.recv_publish().await?;
            if message.payload.starts_with(b"last") {
                return anyhow::Ok(());
            }
        }
    });

    let mut publisher = TestClient::connect(address, ProtocolVersion::V5, "pub").await?;
    let padding = "x".repeat(16 * 1024);
    let started = std::time::Instant::now();
    for index in 1..=1000u16 {
        let payload = if index == 1000 {
            "last".to_owned()
        } else {
            padding.clone()
        };
        let ack = publisher
            .publish(publish("flood", &payload, QoS::AtLeastOnce, index))
            .await?;
        assert_eq!(ack.map(|a| a.reason_code), Some(ReasonCode::Success));
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the publisher was held back: {:?}",
        started.elapsed()
    );
    reading.await??;
    assert!(
        server.metrics().dropped_queue_full > 0,
        "the stalled queue overflowed"
    );

    let stopping = std::time::Instant::now();
    server.shutdown().await?;
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "shutdown waited {:?} for the stalled client",
        stopping.elapsed()
    );
    drop(stalled);
    Ok(())
}
