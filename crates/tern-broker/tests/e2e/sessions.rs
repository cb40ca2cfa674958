//! Sessions across connections: wills, takeover, persistent sessions, and
//! a broker restart between publish and receive.

use std::time::Duration;

use anyhow::Result;
use tern_broker::BrokerConfig;
use tern_codec::{Connect, LastWill, Packet, ProtocolVersion, QoS, ReasonCode};

use crate::common::{TestClient, publish, start, start_with};

fn with_will(version: ProtocolVersion, client_id: &str) -> Connect {
    let mut connect = Connect::new(version, client_id, 0);
    connect.will = Some(LastWill {
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: Default::default(),
        topic: format!("status/{client_id}").into(),
        payload: "offline".into(),
    });
    connect
}

/// A persistent session: clean start off, long session expiry.
fn persistent(version: ProtocolVersion, client_id: &str) -> Connect {
    let mut connect = Connect::new(version, client_id, 0);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(3600);
    connect
}

#[tokio::test]
async fn the_will_is_published_on_abrupt_close_only() -> Result<()> {
    let (server, address) = start().await?;
    let mut watcher = TestClient::connect(address, ProtocolVersion::V5, "watcher").await?;
    watcher.subscribe("status/#", QoS::AtLeastOnce).await?;

    let (polite, _) =
        TestClient::connect_with(address, with_will(ProtocolVersion::V3_1_1, "polite")).await?;
    polite.disconnect().await?;
    watcher.expect_silence(Duration::from_millis(300)).await?;

    let (abrupt, _) =
        TestClient::connect_with(address, with_will(ProtocolVersion::V3_1_1, "abrupt")).await?;
    drop(abrupt);
    let will = watcher.recv_publish().await?;
    assert_eq!(&*will.topic, "status/abrupt");
    assert_eq!(&will.payload[..], b"offline");
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_second_connection_takes_the_session_over() -> Result<()> {
    let (server, address) = start().await?;
    let mut watcher = TestClient::connect(address, ProtocolVersion::V5, "watcher").await?;
    watcher.subscribe("status/#", QoS::AtLeastOnce).await?;
    let (mut first, _) = TestClient::connect_with(address, persistent_with_will("twin")).await?;
    first.subscribe("inbox/twin", QoS::AtLeastOnce).await?;

    let (mut second, connack) =
        TestClient::connect_with(address, persistent(ProtocolVersion::V5, "twin")).await?;
    assert!(connack.session_present);
    let packets = first.expect_closed().await?;
    let [Packet::Disconnect(disconnect)] = &packets[..] else {
        panic!("expected DISCONNECT, got {packets:?}");
    };
    assert_eq!(disconnect.reason_code, ReasonCode::SessionTakenOver);
    assert_eq!(&*watcher.recv_publish().await?.topic, "status/twin");

    // The subscription came along with the session.
    let mut sender = TestClient::connect(address, ProtocolVersion::V5, "sender").await?;
    sender
        .publish(publish("inbox/twin", "hi", QoS::AtLeastOnce, 1))
        .await?;
    assert_eq!(&second.recv_publish().await?.payload[..], b"hi");
    server.shutdown().await?;
    Ok(())
}

fn persistent_with_will(client_id: &str) -> Connect {
    let mut connect = persistent(ProtocolVersion::V5, client_id);
    connect.will = with_will(ProtocolVersion::V5, client_id).will;
    connect
}

#[tokio::test]
async fn a_persistent_session_receives_what_was_queued_while_offline() -> Result<()> {
    let (server, address) = start().await?;
    let (mut client, _) =
        TestClient::connect_with(address, persistent(ProtocolVersion::V3_1_1, "offline")).await?;
    client.subscribe("news", QoS::AtLeastOnce).await?;
    client.disconnect().await?;

    let mut publisher = TestClient::connect(address, ProtocolVersion::V5, "pub").await?;
    for index in 0..3 {
        let ack = publisher
            .publish(publish(
                "news",
                &index.to_string(),
                QoS::AtLeastOnce,
                index + 1,
            ))
            .await?;
        assert_eq!(ack.map(|a| a.reason_code), Some(ReasonCode::Success));
    }

    let (mut client, connack) =
        TestClient::connect_with(address, persistent(ProtocolVersion::V3_1_1, "offline")).await?;
    assert!(connack.session_present);
    for index in 0..3 {
        let message = client.recv_publish().await?;
        assert_eq!(message.payload, index.to_string().as_bytes());
        // The first one is not acknowledged: it comes again with DUP.
        if index > 0 {
            client.acknowledge(&message).await?;
        }
    }
    drop(client);
    let (mut client, _) =
        TestClient::connect_with(address, persistent(ProtocolVersion::V3_1_1, "offline")).await?;
    let again = client.recv_publish().await?;
    assert!(again.dup);
    assert_eq!(&again.payload[..], b"0");
    client.acknowledge(&again).await?;
    client.expect_silence(Duration::from_millis(200)).await?;
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_restart_between_publish_and_receive_loses_nothing() -> Result<()> {
    let directory = tempfile::tempdir()?;
    let config = BrokerConfig {
        data_dir: Some(directory.path().join("data")),
        ..BrokerConfig::for_tests()
    };
    let (server, address) = start_with(config.clone()).await?;
    let (mut client, _) =
        TestClient::connect_with(address, persistent(ProtocolVersion::V5, "durable")).await?;
    client.subscribe("orders/#", QoS::ExactlyOnce).await?;
    client.disconnect().await?;
    let mut publisher = TestClient::connect(address, ProtocolVersion::V5, "shop").await?;
    publisher
        .publish(publish("orders/1", "one", QoS::AtLeastOnce, 1))
        .await?;
    publisher
        .publish(publish("orders/2", "two", QoS::ExactlyOnce, 2))
        .await?;
    let mut retained = publish("orders/last", "two", QoS::AtLeastOnce, 3);
    retained.retain = true;
    publisher.publish(retained).await?;
    drop(publisher);
    server.shutdown().await?;

    let (server, address) = start_with(config).await?;
    let (mut client, connack) =
        TestClient::connect_with(address, persistent(ProtocolVersion::V5, "durable")).await?;
    assert!(connack.session_present, "the session survived the restart");
    let mut messages = Vec::new();
    for _ in 0..3 {
        messages.push(client.recv_publish().await?);
    }
    let payloads: Vec<&[u8]> = messages.iter().map(|m| &m.payload[..]).collect();
    assert_eq!(payloads, [&b"one"[..], b"two", b"two"]);
    assert_eq!(messages[1].qos, QoS::ExactlyOnce);
    for message in &messages {
        client.acknowledge(message).await?;
    }
    let mut late = TestClient::connect(address, ProtocolVersion::V5, "late").await?;
    late.subscribe("orders/last", QoS::AtMostOnce).await?;
    assert!(
        late.recv_publish().await?.retain,
        "the retained message too"
    );
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_delayed_will_waits_and_a_quick_return_cancels_it() -> Result<()> {
    let (server, address) = start().await?;
    let mut watcher = TestClient::connect(address, ProtocolVersion::V5, "watcher").await?;
    watcher.subscribe("status/#", QoS::AtLeastOnce).await?;
    let delayed = |client_id: &str| {
        let mut connect = persistent_with_will(client_id);
        if let Some(will) = &mut connect.will {
            will.properties.will_delay_interval = Some(1);
        }
        connect
    };

    // Gone for good: the will comes after about a second.
    let (gone, _) = TestClient::connect_with(address, delayed("gone")).await?;
    let lost_at = tokio::time::Instant::now();
    drop(gone);
    // Back within the delay: no will.
    let (back, _) = TestClient::connect_with(address, delayed("back")).await?;
    drop(back);
    let (back, connack) = TestClient::connect_with(address, delayed("back")).await?;
    assert!(connack.session_present);

    let will = watcher.recv_publish().await?;
    assert_eq!(&*will.topic, "status/gone");
    assert!(
        lost_at.elapsed() >= Duration::from_millis(900),
        "not before the delay"
    );
    watcher.expect_silence(Duration::from_millis(1_500)).await?;
    drop(back);
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn an_expired_session_is_gone() -> Result<()> {
    let (server, address) = start().await?;
    let mut brief = persistent(ProtocolVersion::V5, "brief");
    brief.properties.session_expiry_interval = Some(1);
    let (client, _) = TestClient::connect_with(address, brief.clone()).await?;
    client.disconnect().await?;
    assert_eq!(server.session_count(), 1);
    let disconnected = tokio::time::Instant::now();
    while server.session_count() > 0 {
        assert!(
            disconnected.elapsed() < Duration::from_secs(4),
            "housekeeping did not remove the session"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        disconnected.elapsed() >= Duration::from_millis(800),
        "not before it expired"
    );
    let (_client, connack) = TestClient::connect_with(address, brief).await?;
    assert!(!connack.session_present);
    server.shutdown().await?;
    Ok(())
}
