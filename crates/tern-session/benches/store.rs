//! Persisted enqueue + dequeue of QoS 1 messages with 64-byte payloads,
//! through the sled store, per durability setting.
//!
//! One message is two writes, as in the broker: `Enqueue` when it arrives
//! (then PUBACK to the publisher) and `Dequeue` when it is handed over.
//! `sequential` waits for each write before the next (one client);
//! `concurrent_64` has 64 writes outstanding at once (64 clients), which is
//! what group commit is for. Run with
//! `CARGO_TARGET_DIR=/work/target-session cargo bench -p tern-session --bench store`.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tern_codec::{Publish, QoS};
use tern_session::{
    Durability, Message, Op, Pending, SessionExpiry, SessionRecord, SessionStore, SledConfig,
    SledStore,
};

const CLIENT: &str = "bench-client";
const PAYLOAD: [u8; 64] = [0x42; 64];

fn message() -> Message {
    let mut publish = Publish::new("bench/topic", &PAYLOAD[..]);
    publish.qos = QoS::AtLeastOnce;
    Message::with_expiry(publish, None)
}

fn open(dir: &tempfile::TempDir, durability: Durability) -> SledStore {
    let config = SledConfig {
        durability,
        ..SledConfig::default()
    };
    let store = SledStore::open(dir.path().join("data"), config).expect("open");
    let record = SessionRecord {
        client_id: CLIENT.into(),
        expiry: SessionExpiry::Never,
        disconnected_at: None,
        subscriptions: BTreeMap::new(),
        will: None,
    };
    store
        .write(vec![Op::PutSession(Box::new(record))])
        .wait()
        .expect("session");
    store
}

fn enqueue(seq: u64) -> Vec<Op> {
    vec![Op::Enqueue {
        client_id: CLIENT.into(),
        seq,
        message: message(),
    }]
}

fn dequeue(seq: u64) -> Vec<Op> {
    vec![Op::Dequeue {
        client_id: CLIENT.into(),
        seq,
    }]
}

fn wait_all(pending: Vec<Pending<()>>) {
    for write in pending {
        write.wait().expect("write");
    }
}

fn store_benchmarks(c: &mut Criterion) {
    let settings = [
        ("flush", Durability::Flush),
        (
            "periodic_10ms",
            Durability::Periodic(Duration::from_millis(10)),
        ),
        ("none", Durability::None),
    ];
    let mut group = c.benchmark_group("enqueue_dequeue_qos1_64b");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for (name, durability) in settings {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, durability);
        let mut seq = 0u64;
        group.throughput(Throughput::Elements(1));
        group.bench_function(format!("{name}/sequential"), |b| {
            b.iter(|| {
                store.write(enqueue(seq)).wait().expect("enqueue");
                store.write(dequeue(seq)).wait().expect("dequeue");
                seq += 1;
            })
        });
        group.throughput(Throughput::Elements(64));
        group.bench_function(format!("{name}/concurrent_64"), |b| {
            b.iter(|| {
                let first = seq;
                seq += 64;
                wait_all((first..seq).map(|s| store.write(enqueue(s))).collect());
                wait_all((first..seq).map(|s| store.write(dequeue(s))).collect());
            })
        });
        black_box(store.verify().expect("consistent after the benchmark"));
        let stats = store.commit_stats();
        eprintln!(
            "{name}: {} writes in {} groups and {} syncs",
            stats.writes, stats.groups, stats.syncs
        );
        store.close().expect("close");
    }
    group.finish();
}

criterion_group!(benches, store_benchmarks);
criterion_main!(benches);
