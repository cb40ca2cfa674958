//! Interoperability: a real MQTT client that nobody here wrote (rumqttc)
//! publishes and subscribes through the broker, in MQTT 3.1.1 and 5.0.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::{WAIT, start};

#[tokio::test]
async fn rumqttc_v311_qos1_round_trip() -> Result<()> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};

    let (server, address) = start().await?;
    let mut options = MqttOptions::new("rumqttc-311", "127.0.0.1", address.port());
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client.subscribe("interop/#", QoS::AtLeastOnce).await?;
    client
        .publish("interop/v311", QoS::AtLeastOnce, false, "hello 3.1.1")
        .await?;

    let (mut received, mut acknowledged) = (None, false);
    tokio::time::timeout(WAIT, async {
        while received.is_none() || !acknowledged {
            match eventloop.poll().await? {
                Event::Incoming(Packet::Publish(publish)) => received = Some(publish),
                Event::Incoming(Packet::PubAck(_)) => acknowledged = true,
                _ => {}
            }
        }
        anyhow::Ok(())
    })
    .await
    .context("no round trip within 5 s")??;
    let publish = received.context("a message")?;
    assert_eq!(publish.topic, "interop/v311");
    assert_eq!(&publish.payload[..], b"hello 3.1.1");
    assert_eq!(publish.qos, QoS::AtLeastOnce);

    client.disconnect().await?;
    tokio::time::timeout(WAIT, async {
        loop {
            if let Event::Outgoing(Outgoing::Disconnect) = eventloop.poll().await? {
                return anyhow::Ok(());
            }
        }
    })
    .await??;
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn rumqttc_v5_qos1_round_trip() -> Result<()> {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::mqttbytes::v5::Packet;
    use rumqttc::v5::{AsyncClient, Event, MqttOptions};

    let (server, address) = start().await?;
    let mut options = MqttOptions::new("rumqttc-5", "127.0.0.1", address.port());
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 10);
    client.subscribe("interop/#", QoS::AtLeastOnce).await?;
    client
        .publish("interop/v5", QoS::AtLeastOnce, false, "hello 5")
        .await?;

    let (mut received, mut acknowledged) = (None, false);
    tokio::time::timeout(WAIT, async {
        while received.is_none() || !acknowledged {
            match eventloop.poll().await? {
                Event::Incoming(Packet::Publish(publish)) => received = Some(publish),
                Event::Incoming(Packet::PubAck(_)) => acknowledged = true,
                _ => {}
            }
        }
        anyhow::Ok(())
    })
    .await
    .context("no round trip within 5 s")??;
    let publish = received.context("a message")?;
    assert_eq!(&publish.topic[..], b"interop/v5");
    assert_eq!(&publish.payload[..], b"hello 5");
    assert_eq!(publish.qos, QoS::AtLeastOnce);

    client.disconnect().await?;
    let _ = tokio::time::timeout(Duration::from_secs(1), eventloop.poll()).await;
    server.shutdown().await?;
    Ok(())
}
