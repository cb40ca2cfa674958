//! A delayed will, published by housekeeping after its Will Delay
//! Interval, counts its Message Expiry Interval from publication (MQTT 5
//! §3.1.3.2.4), not from CONNECT.

mod common;

use std::time::Duration;

use anyhow::Result;
use common::{TestClient, start};
use tern_codec::{Connect, LastWill, ProtocolVersion, QoS, WillProperties};

#[tokio::test]
async fn a_delayed_will_expires_counting_from_its_publication() -> Result<()> {
    let (server, address) = start().await?;
    let mut watcher = TestClient::connect(address, ProtocolVersion::V5, "watcher").await?;
    watcher.subscribe("status/#", QoS::AtLeastOnce).await?;

    // Will Delay 1 s, Message Expiry 2 s, connection lost 2 s after
    // CONNECT: published about 3 s after CONNECT. Counted from CONNECT,
    // it would have expired before its publication and been dropped.
    let mut connect = Connect::new(ProtocolVersion::V5, "mortal", 0);
    connect.properties.session_expiry_interval = Some(60);
    connect.will = Some(LastWill {
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties {
            will_delay_interval: Some(1),
            message_expiry_interval: Some(2),
            ..WillProperties::default()
        },
        topic: "status/mortal".into(),
        payload: "offline".into(),
    });
    let (mortal, connack) = TestClient::connect_with(address, connect).await?;
    assert!(connack.reason_code.is_success());
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(mortal); // no DISCONNECT: the will is owed

    let will = watcher.recv_publish().await?;
    assert_eq!(&*will.topic, "status/mortal");
    assert_eq!(&will.payload[..], b"offline");
    let left = will.properties().message_expiry_interval;
    assert!(
        matches!(left, Some(1..=2)),
        "expiry left at delivery: {left:?}"
    );
    watcher.acknowledge(&will).await?;
    watcher.disconnect().await?;
    server.shutdown().await?;
    Ok(())
}
