//! Decode and encode costs of the packets on the broker's hot path: PUBLISH
//! with 64-byte and 4 KiB payloads, and a full CONNECT.
//!
//! Each iteration decodes (or encodes) 1,000 packets back to back in one
//! buffer, as a busy connection does; criterion's `elem/s` is packets per
//! second and the time divided by 1,000 is the cost of one packet.
//!
//! Each iteration decodes (or encodes) 1,000 packets back to back in one
//! buffer, as a busy connection does; criterion's `elem/s` is packets per
//! second, and the time divided by 1,000 is the cost of one packet.
//!
//! Run with `cargo bench -p tern-codec --bench codec`. Figures are recorded
//! in docs/performance.md.

use std::hint::black_box;
use std::num::NonZeroU16;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tern_codec::{Connect, Decoder, LastWill, Packet, ProtocolVersion, Publish, QoS};

fn publish(payload_len: usize) -> Packet {
    let mut publish = Publish::new(
        "devices/4711/telemetry",
        Bytes::from(vec![0xA5; payload_len]),
    );
    publish.qos = QoS::AtLeastOnce;
    publish.packet_id = NonZeroU16::new(42);
    Packet::Publish(publish)
}

fn connect() -> Packet {
    let mut connect = Connect::new(ProtocolVersion::V5, "sensor-4711-eu-west", 60);
    connect.clean_start = false;
    connect.username = Some("device-4711".into());
    connect.password = Some(Bytes::from_static(b"s3cr3t-token-with-some-length"));
    connect.properties.session_expiry_interval = Some(3600);
    connect.properties.receive_maximum = Some(100);
    connect.properties.maximum_packet_size = Some(1 << 20);
    connect.properties.topic_alias_maximum = Some(16);
    connect.properties.user_properties = vec![("region".into(), "eu-west".into())];
    let mut will = LastWill {
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Default::default(),
        topic: "devices/4711/status".into(),
        payload: Bytes::from_static(b"offline"),
    };
    will.properties.will_delay_interval = Some(10);
    will.properties.content_type = Some("text/plain".into());
    connect.will = Some(will);
    Packet::Connect(Box::new(connect))
}

/// Packets per iteration: a connection's receive buffer usually holds many
/// packets, and decoding them one after the other from one buffer is what
/// the broker does.
const STREAM: usize = 1000;

fn bench_packet(c: &mut Criterion, name: &str, packet: &Packet, version: ProtocolVersion) {
    let mut stream = BytesMut::new();
    for _ in 0..STREAM {
        packet
            .encode(version, &mut stream)
            .expect("benchmark packet encodes");
    }
    let stream = stream.freeze();

    let mut group = c.benchmark_group(name);
    // Throughput in packets: criterion's "elem/s" is packets per second.
    group.throughput(Throughput::Elements(STREAM as u64));
    group.bench_function("decode", |b| {
        let mut decoder = Decoder::new(version, u32::MAX);
        b.iter_batched_ref(
            || BytesMut::from(&stream[..]),
            |buf| {
                while let Some(packet) = decoder.decode(buf).expect("valid packet") {
                    black_box(packet);
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("encode", |b| {
        let mut out = BytesMut::with_capacity(stream.len());
        b.iter(|| {
            out.clear();
            for _ in 0..STREAM {
                black_box(packet)
                    .encode(version, &mut out)
                    .expect("valid packet");
            }
            black_box(&out);
        })
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        let tag = if version.is_v5() { "v5" } else { "v311" };
        bench_packet(c, &format!("publish_qos1_64B_{tag}"), &publish(64), version);
        bench_packet(
            c,
            &format!("publish_qos1_4KiB_{tag}"),
            &publish(4096),
            version,
        );
    }
    bench_packet(c, "connect_full_v5", &connect(), ProtocolVersion::V5);
}

criterion_group!(benches, codec);
criterion_main!(benches);
