//! Idle polling (`idle_poll_us`): the runtime's workers keep polling for a
//! short while after each read, and must stop once the broker is quiet.
//! This test binary holds one test, so that the process's CPU time is the
//! broker's: a poller that never went back to sleep would burn whole
//! cores here.

mod common;

use std::time::Duration;

use anyhow::{Context, Result};
use common::{TestClient, publish, start_with};
use tern_broker::BrokerConfig;
use tern_codec::{Packet, ProtocolVersion, QoS};

/// CPU time (user and system) the process has used, in clock ticks.
fn cpu_ticks() -> Result<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("no command name in /proc/self/stat")?
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 of the whole line.
    let user: u64 = fields[11].parse()?;
    let system: u64 = fields[12].parse()?;
    Ok(user + system)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_broker_stops_polling() -> Result<()> {
    let config = BrokerConfig {
        // The largest window: the easiest to leave running by mistake.
        idle_poll_us: tern_broker::MAX_IDLE_POLL_US,
        ..BrokerConfig::for_tests()
    };
    let (server, address) = start_with(config).await?;
    let mut client = TestClient::connect(address, ProtocolVersion::V3_1_1, "busy").await?;
    client.subscribe("t", QoS::AtMostOnce).await?;
    for _ in 0..200 {
        client
            .send(Packet::Publish(publish("t", "x", QoS::AtMostOnce, 0)))
            .await?;
        client.recv_publish().await?;
    }
    // Past the drowsy period: the pollers look every 100 ms from now on.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = cpu_ticks()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_ticks()? - before;
    // Clock ticks are 10 ms: a poller left spinning would use about 100
    // per worker in this second; a sleeping broker uses 0 or 1.
    assert!(
        used <= 10,
        "the quiet broker used {used} clock ticks of CPU in one second"
    );
    client.disconnect().await?;
    server.shutdown().await?;
    Ok(())
}
