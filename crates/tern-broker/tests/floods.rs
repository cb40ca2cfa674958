//! Connection floods: a flood of connections closes only the offending
//! connections and the broker keeps serving everyone else. Idle sockets
//! are closed after `connect_timeout`; beyond `max_connections`, new
//! connections are closed at once while existing ones keep working.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use common::{TestClient, WAIT, publish, start_with};
use tern_broker::BrokerConfig;
use tern_codec::{ProtocolVersion, QoS};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Idle connections opened by the flood; the test process holds both ends
/// of each, so about 4,000 descriptors.
const FLOOD: usize = 2_000;
/// Connections opened at once by the flood.
const FLOOD_BATCH: usize = 200;

/// Opens `count` TCP connections that never send anything, as fast as the
/// listener takes them, and returns them (dropping them closes them).
async fn flood(address: SocketAddr, count: usize) -> Result<Vec<TcpStream>> {
    let mut streams = Vec::with_capacity(count);
    while streams.len() < count {
        let batch = FLOOD_BATCH.min(count - streams.len());
        let connects = (0..batch).map(|_| TcpStream::connect(address));
        let opened = tokio::time::timeout(WAIT, futures::future::join_all(connects))
            .await
            .context("a flood batch did not connect within 5 s")?;
        for stream in opened {
            streams.push(stream.context("a flood connection failed")?);
        }
    }
    Ok(streams)
}

/// Reads from `stream` until the broker closes it; fails if it does not
/// within `within` or sends anything.
async fn expect_closed_by_broker(stream: &mut TcpStream, within: Duration) -> Result<()> {
    let mut buffer = [0u8; 64];
    match tokio::time::timeout(within, stream.read(&mut buffer)).await {
        Err(_) => bail!("the broker did not close the connection within {within:?}"),
        Ok(Ok(0)) => Ok(()),
        Ok(Ok(read)) => bail!("expected a close, got {read} bytes"),
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
        Ok(Err(error)) => Err(error.into()),
    }
}

/// Publishes QoS 1 messages numbered from 0, each awaiting its PUBACK,
/// until `stop` is set (and at least `min` were sent); then "end".
async fn publish_numbered(
    mut publisher: TestClient,
    stop: Arc<AtomicBool>,
    min: u32,
) -> Result<u32> {
    let mut sent: u32 = 0;
    while sent < min || !stop.load(Ordering::Acquire) {
        let packet_id = u16::try_from(sent % 60_000 + 1)?;
        let ack = publisher
            .publish(publish(
                "flood/qos1",
                &sent.to_string(),
                QoS::AtLeastOnce,
                packet_id,
            ))
            .await?
            .context("QoS 1 has a PUBACK")?;
        ensure!(ack.reason_code.is_success(), "PUBACK {:?}", ack.reason_code);
        sent += 1;
        ensure!(sent < 100_000, "the flood never finished");
    }
    publisher
        .publish(publish("flood/qos1", "end", QoS::AtLeastOnce, 60_001))
        .await?;
    publisher.disconnect().await?;
    Ok(sent)
}

/// Receives and acknowledges messages until "end"; returns their numbers.
async fn receive_numbered(mut subscriber: TestClient) -> Result<Vec<u32>> {
    let mut numbers = Vec::new();
    loop {
        let message = subscriber.recv_publish().await?;
        subscriber.acknowledge(&message).await?;
        let text = std::str::from_utf8(&message.payload)?;
        if text == "end" {
            return Ok(numbers);
        }
        numbers.push(text.parse()?);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_idle_connections_loses_no_qos1_message() -> Result<()> {
    let started = Instant::now();
    let config = BrokerConfig {
        connect_timeout: 30,
        ..BrokerConfig::for_tests()
    };
    let (server, address) = start_with(config).await?;
    let mut subscriber = TestClient::connect(address, ProtocolVersion::V5, "sub").await?;
    subscriber.subscribe("flood/qos1", QoS::AtLeastOnce).await?;
    let publisher = TestClient::connect(address, ProtocolVersion::V5, "pub").await?;

    let stop = Arc::new(AtomicBool::new(false));
    let receiving = tokio::spawn(receive_numbered(subscriber));
    let publishing = tokio::spawn(publish_numbered(publisher, Arc::clone(&stop), 50));
    let flooded = flood(address, FLOOD).await;
    stop.store(true, Ordering::Release);
    let idle = flooded?;
    assert_eq!(idle.len(), FLOOD);

    let sent = publishing.await??;
    eprintln!("{sent} QoS 1 messages published during a flood of {FLOOD} connections");
    let received = receiving.await??;
    let expected: Vec<u32> = (0..sent).collect();
    assert_eq!(received, expected, "every QoS 1 message, once, in order");
    assert_eq!(server.metrics().connections_refused, 0);
    drop(idle);
    server.shutdown().await?;
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn connections_beyond_max_connections_are_closed_and_others_keep_working() -> Result<()> {
    let config = BrokerConfig {
        max_connections: 3,
        ..BrokerConfig::for_tests()
    };
    let (server, address) = start_with(config).await?;
    let mut subscriber = TestClient::connect(address, ProtocolVersion::V5, "sub").await?;
    subscriber.subscribe("limited", QoS::AtLeastOnce).await?;
    let mut publisher = TestClient::connect(address, ProtocolVersion::V3_1_1, "pub").await?;
    let idle = TcpStream::connect(address).await?;

    // The fourth connection is closed before anything is read from it.
    let mut extra = TcpStream::connect(address).await?;
    expect_closed_by_broker(&mut extra, WAIT).await?;
    assert_eq!(server.metrics().connections_refused, 1);

    // Those already connected are served as before.
    publisher
        .publish(publish("limited", "still here", QoS::AtLeastOnce, 1))
        .await?;
    let message = subscriber.recv_publish().await?;
    assert_eq!(&message.payload[..], b"still here");
    subscriber.acknowledge(&message).await?;

    // A connection that ends frees its place.
    drop(idle);
    let deadline = Instant::now() + WAIT;
    loop {
        match TestClient::connect(address, ProtocolVersion::V5, "late").await {
            Ok(late) => {
                late.disconnect().await?;
                break;
            }
            // Its task has not yet noticed the close: try again shortly.
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => return Err(error.context("no place was freed")),
        }
    }
    publisher.disconnect().await?;
    subscriber.disconnect().await?;
    server.shutdown().await?;
    Ok(())
}

#[tokio::test]
async fn a_socket_that_never_sends_connect_is_closed_after_connect_timeout() -> Result<()> {
    let config = BrokerConfig {
        connect_timeout: 1,
        ..BrokerConfig::for_tests()
    };
    let (server, address) = start_with(config).await?;
    let opened = Instant::now();
    let mut silent = TcpStream::connect(address).await?;
    expect_closed_by_broker(&mut silent, Duration::from_secs(4)).await?;
    let waited = opened.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}"
    );
    server.shutdown().await?;
    Ok(())
}
