//! Parked connections (`park_idle_after_ms`): an idle plain TCP connection
//! gives up its task and waits in the broker's parking lot. These tests
//! make connections park after 50 ms, wait until the broker says they are
//! parked, and check that each thing that must wake one does, at once:
//! bytes from the client, a message for it, a takeover, its keep-alive
//! running out, the client vanishing, the server shutting down. Every
//! wait is bounded (`common::WAIT`): a missed wake-up fails, never hangs.

mod common;

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use common::{TestClient, WAIT, publish, start_with};
use tern_broker::{BrokerConfig, Server};
use tern_codec::{
    Ack, Connect, LastWill, Packet, ProtocolVersion, QoS, ReasonCode, WillProperties,
};

fn parking_config() -> BrokerConfig {
    BrokerConfig {
        park_idle_after_ms: 50,
        ..BrokerConfig::for_tests()
    }
}

/// Waits until exactly `count` connections are parked.
async fn parked(server: &Server, count: u64) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        let now = server.metrics().connections_parked;
        if now == count {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{now} connections parked after {WAIT:?}, expected {count}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A watcher of `wills/#`, and a client `name` (MQTT 3.1.1, keep alive
/// `keep_alive` s) whose will goes to `wills/NAME`.
async fn watcher_and_mortal(
    address: std::net::SocketAddr,
    name: &str,
    keep_alive: u16,
) -> Result<(TestClient, TestClient)> {
    let mut watcher = TestClient::connect(address, ProtocolVersion::V3_1_1, "watcher").await?;
    watcher.subscribe("wills/#", QoS::AtLeastOnce).await?;
    let mut connect = Connect::new(ProtocolVersion::V3_1_1, name, keep_alive);
    connect.will = Some(LastWill {
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
        topic: format!("wills/{name}").into(),
        payload: "gone".into(),
    });
    let (mortal, _) = TestClient::connect_with(address, connect).await?;
    Ok((watcher, mortal))
}

/// Receives the will of `name`, then leaves.
async fn expect_will(mut watcher: TestClient, name: &str) -> Result<()> {
    let will = watcher.recv_publish().await?;
    assert_eq!(&*will.topic, format!("wills/{name}"));
    watcher.acknowledge(&will).await?;
    watcher.disconnect().await
}

#[tokio::test]
async fn a_parked_subscriber_gets_each_message_at_once() -> Result<()> {
    let (server, address) = start_with(parking_config()).await?;
    let mut subscriber = TestClient::connect(address, ProtocolVersion::V3_1_1, "sub").await?;
    subscriber.subscribe("t/#", QoS::AtLeastOnce).await?;
    let mut publisher = TestClient::connect(address, ProtocolVersion::V3_1_1, "pub").await?;
    for n in 1..=5u16 {
        // Both idle, both parked: the PUBLISH wakes the publisher's
        // connection, the message queued for the subscriber wakes its.
        parked(&server, 2).await?;
        publisher
            .publish(publish("t/x", &format!("m{n}"), QoS::AtLeastOnce, n))
            .await?;
        let received = subscriber.recv_publish().await?;
        assert_eq!(&received.payload[..], format!("m{n}").as_bytes());
        subscriber.acknowledge(&received).await?;
    }
    subscriber.disconnect().await?;
    publisher.disconnect().await?;
    server.shutdown().await?;
    Ok(())
}

/// The protocol's state parks with the connection: a QoS 2 exchange in
/// both directions, each half on either side of a park.
#[tokio::test]
async fn a_qos2_exchange_survives_a_park_in_the_middle() -> Result<()> {
    let (server, address) = start_with(parking_config()).await?;
    let mut subscriber = TestClient::connect(address, ProtocolVersion::V5, "sub").await?;
    subscriber.subscribe("q/#", QoS::ExactlyOnce).await?;
    let mut publisher = TestClient::connect(address, ProtocolVersion::V5, "pub").await?;
    publisher
        .send(Packet::Publish(publish("q/1", "once", QoS::ExactlyOnce, 7)))
        .await?;
    match publisher.recv().await? {
        Some(Packet::PubRec(ack)) => assert_eq!(ack.packet_id, common::id(7)),
        other => bail!("expected PUBREC, got {other:?}"),
    }
    let received = subscriber.recv_publish().await?;
    let outbound_id = received.packet_id.expect("QoS 2 has an id");
    subscriber
        .send(Packet::PubRec(Ack::new(outbound_id)))
        .await?;
    match subscriber.recv().await? {
        Some(Packet::PubRel(ack)) => assert_eq!(ack.packet_id, outbound_id),
        other => bail!("expected PUBREL, got {other:?}"),
    }
    // Both exchanges half done; both connections park.
    parked(&server, 2).await?;
    publisher
        .send(Packet::PubRel(Ack::new(common::id(7))))
        .await?;
    match publisher.recv().await? {
        Some(Packet::PubComp(ack)) => assert_eq!(ack.packet_id, common::id(7)),
        other => bail!("expected PUBCOMP, got {other:?}"),
    }
    subscriber
        .send(Packet::PubComp(Ack::new(outbound_id)))
        .await?;
    // Exactly once: nothing more comes, parked or not.
    subscriber
        .expect_silence(Duration::from_millis(300))
        .await?;
    subscriber.disconnect().await?;
    publisher.disconnect().await?;
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_parked_client_is_answered_and_closed_when_its_keep_alive_runs_out() -> Result<()> {
    let (server, address) = start_with(parking_config()).await?;
    let (watcher, mut sleepy) = watcher_and_mortal(address, "sleepy", 1).await?;
    parked(&server, 2).await?;
    sleepy.send(Packet::PingReq).await?;
    match sleepy.recv().await? {
        Some(Packet::PingResp) => {}
        other => bail!("expected PINGRESP, got {other:?}"),
    }
    // Silent from now: closed after 1.5 × 1 s (the lot looks every
    // second), and its will published.
    let silent_since = Instant::now();
    parked(&server, 2).await?;
    sleepy.expect_closed().await?;
    let closed_after = silent_since.elapsed();
    assert!(
        closed_after >= Duration::from_millis(1400),
        "closed {closed_after:?} after the last packet, before 1.5 × the keep-alive"
    );
    expect_will(watcher, "sleepy").await?;
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_parked_client_that_vanishes_leaves_its_will_at_once() -> Result<()> {
    let (server, address) = start_with(parking_config()).await?;
    let (watcher, fragile) = watcher_and_mortal(address, "fragile", 600).await?;
    parked(&server, 2).await?;
    drop(fragile);
    // Keep alive 600 s: only the closed socket can have woken it.
    expect_will(watcher, "fragile").await?;
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_parked_session_is_taken_over_at_once() -> Result<()> {
    let (server, address) = start_with(parking_config()).await?;
    let mut connect = Connect::new(ProtocolVersion::V5, "device", 600);
    connect.clean_start = false;
    connect.properties.session_expiry_interval = Some(60);
    let (mut first, _) = TestClient::connect_with(address, connect.clone()).await?;
    parked(&server, 1).await?;
    // The takeover waits for the parked connection to let go (up to 15 s
    // if nothing woke it); the CONNACK must come within `WAIT`.
    let started = Instant::now();
    let (second, connack) = TestClient::connect_with(address, connect).await?;
    assert!(connack.reason_code.is_success());
    assert!(connack.session_present);
    assert!(started.elapsed() < WAIT);
    match first.expect_closed().await?.as_slice() {
        [Packet::Disconnect(disconnect)] => {
            assert_eq!(disconnect.reason_code, ReasonCode::SessionTakenOver);
        }
        other => bail!("expected DISCONNECT 0x8E, got {other:?}"),
    }
    second.disconnect().await?;
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn shutdown_wakes_parked_clients_to_say_goodbye() -> Result<()> {
    let (server, address) = start_with(parking_config()).await?;
    let mut clients = Vec::new();
    for n in 0..3 {
        clients.push(TestClient::connect(address, ProtocolVersion::V5, &format!("c{n}")).await?);
    }
    parked(&server, 3).await?;
    tokio::time::timeout(WAIT, server.shutdown()).await??;
    for mut client in clients {
        match client.expect_closed().await?.as_slice() {
            [Packet::Disconnect(disconnect)] => {
                assert_eq!(disconnect.reason_code, ReasonCode::ServerShuttingDown);
            }
            other => bail!("expected DISCONNECT 0x8B, got {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn nothing_parks_when_parking_is_off() -> Result<()> {
    let config = BrokerConfig {
        park_idle_after_ms: 0,
        ..BrokerConfig::for_tests()
    };
    let (server, address) = start_with(config).await?;
    let mut client = TestClient::connect(address, ProtocolVersion::V3_1_1, "busy").await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.metrics().connections_parked, 0);
    client.send(Packet::PingReq).await?;
    assert!(matches!(client.recv().await?, Some(Packet::PingResp)));
    client.disconnect().await?;
    server.shutdown().await?;
    Ok(())
}

/// A client that does nothing after its CONNACK parks within about 100 ms
/// whatever `park_idle_after_ms` says (a storm of reconnecting devices
/// would otherwise hold a task each for that long); one that has sent
/// something since waits the whole time.
#[tokio::test]
async fn a_client_quiet_since_its_connack_parks_soon() -> Result<()> {
    let config = BrokerConfig {
        park_idle_after_ms: 60_000,
        ..BrokerConfig::for_tests()
    };
    let (server, address) = start_with(config).await?;
    let mut active = TestClient::connect(address, ProtocolVersion::V3_1_1, "active").await?;
    active.subscribe("t", QoS::AtLeastOnce).await?;
    let connected = Instant::now();
    let mut quiet = TestClient::connect(address, ProtocolVersion::V3_1_1, "quiet").await?;
    parked(&server, 1).await?;
    assert!(
        connected.elapsed() < Duration::from_secs(2),
        "parked after {:?}",
        connected.elapsed()
    );
    // The active one is not parked: it answers without a resume, and the
    // count stays at the quiet one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.metrics().connections_parked, 1);
    quiet.send(Packet::PingReq).await?;
    assert!(matches!(quiet.recv().await?, Some(Packet::PingResp)));
    // Resumed, it is no longer quiet since its CONNACK: the lot's time.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.metrics().connections_parked, 0);
    active.disconnect().await?;
    quiet.disconnect().await?;
    server.shutdown().await?;
    Ok(())
}

/// A message to many parked subscribers resumes them all; the lot resumes
/// them in batches (yielding between), and none is left behind.
#[tokio::test]
async fn a_message_to_many_parked_subscribers_reaches_every_one() -> Result<()> {
    const SUBSCRIBERS: u64 = 300;
    let (server, address) = start_with(parking_config()).await?;
    let mut subscribers = Vec::new();
    for n in 0..SUBSCRIBERS {
        let mut subscriber =
            TestClient::connect(address, ProtocolVersion::V3_1_1, &format!("s{n}")).await?;
        subscriber.subscribe("fleet/cmd", QoS::AtLeastOnce).await?;
        subscribers.push(subscriber);
    }
    parked(&server, SUBSCRIBERS).await?;
    let mut publisher = TestClient::connect(address, ProtocolVersion::V3_1_1, "ops").await?;
    publisher
        .publish(publish("fleet/cmd", "reboot", QoS::AtLeastOnce, 1))
        .await?;
    for subscriber in &mut subscribers {
        let received = subscriber.recv_publish().await?;
        assert_eq!(&received.payload[..], b"reboot");
        subscriber.acknowledge(&received).await?;
    }
    for subscriber in subscribers {
        subscriber.disconnect().await?;
    }
    publisher.disconnect().await?;
    server.shutdown().await?;
    Ok(())
}

/// A client's rate limit parks and resumes with it.
#[tokio::test]
async fn a_parked_client_keeps_its_rate_limit() -> Result<()> {
    let config = BrokerConfig {
        max_message_rate: 2,
        ..parking_config()
    };
    let (server, address) = start_with(config).await?;
    let mut client = TestClient::connect(address, ProtocolVersion::V3_1_1, "limited").await?;
    parked(&server, 1).await?;
    // Two pass at once (a second's worth of burst), the four after
    // them at 2 per second: about 2 s for all six.
    let started = Instant::now();
    for n in 1..=6u16 {
        client
            .publish(publish("rated", "x", QoS::AtLeastOnce, n))
            .await?;
    }
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500),
        "six messages at 2 per second took {took:?}: the limit was lost"
    );
    client.disconnect().await?;
    server.shutdown().await?;
    Ok(())
}
