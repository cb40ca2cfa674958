//! CONNECT and CONNACK in MQTT 3.1, 3.1.1 and 5.0, and keep alive.

use std::time::Duration;

use anyhow::Result;
use tern_broker::BrokerConfig;
use tern_codec::{Connect, Packet, ProtocolVersion, ReasonCode};

use crate::common::{TestClient, start, start_with};

#[tokio::test]
async fn every_version_connects() -> Result<()> {
    let (server, address) = start().await?;
    for version in [
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ] {
        let connect = Connect::new(version, format!("client-{}", version.level()), 30);
        let (client, connack) = TestClient::connect_with(address, connect).await?;
        assert_eq!(connack.reason_code, ReasonCode::Success, "{version}");
        assert!(!connack.session_present);
        if version.is_v5() {
            assert_eq!(connack.properties.receive_maximum, Some(20));
        }
        client.disconnect().await?;
    }
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn an_unsupported_version_gets_return_code_1() -> Result<()> {
    let (server, address) = start().await?;
    let mut client = TestClient::open(address, ProtocolVersion::V3_1_1).await?;
    // CONNECT, protocol "MQTT" level 2.
    client
        .send_bytes(&[0x10, 0x0C, 0, 4, b'M', b'Q', b'T', b'T', 2, 2, 0, 0, 0, 0])
        .await?;
    let packets = client.expect_closed().await?;
    let [Packet::ConnAck(connack)] = &packets[..] else {
        panic!("expected one CONNACK, got {packets:?}");
    };
    assert_eq!(connack.reason_code, ReasonCode::UnsupportedProtocolVersion);
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn an_empty_client_id_is_assigned_one_in_mqtt5() -> Result<()> {
    let (server, address) = start().await?;
    let (client, connack) =
        TestClient::connect_with(address, Connect::new(ProtocolVersion::V5, "", 0)).await?;
    let assigned = connack.properties.assigned_client_identifier.clone();
    assert!(assigned.is_some_and(|id| id.starts_with("tern-")));
    client.disconnect().await?;

    let mut persistent = Connect::new(ProtocolVersion::V3_1_1, "", 0);
    persistent.clean_start = false;
    let (_client, connack) = TestClient::connect_with(address, persistent).await?;
    assert_eq!(connack.reason_code, ReasonCode::ClientIdentifierNotValid);
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_one_and_a_half_keep_alives() -> Result<()> {
    let (server, address) = start_with(BrokerConfig::for_tests()).await?;
    let connect = Connect::new(ProtocolVersion::V5, "sleepy", 1);
    let (mut client, _) = TestClient::connect_with(address, connect).await?;
    let started = tokio::time::Instant::now();
    let packets = client.expect_closed().await?;
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(1_400) && waited < Duration::from_secs(3),
        "closed after {waited:?}"
    );
    let [Packet::Disconnect(disconnect)] = &packets[..] else {
        panic!("expected DISCONNECT, got {packets:?}");
    };
    assert_eq!(disconnect.reason_code, ReasonCode::KeepAliveTimeout);
    server.shutdown().await?;
    Ok(())
}
