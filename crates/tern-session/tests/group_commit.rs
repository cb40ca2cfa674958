//! Group commit: concurrent writes share batches and syncs, and each
//! durability setting syncs when it says it does.

use std::collections::BTreeMap;
use std::time::Duration;

use tern_codec::{Publish, QoS};
use tern_session::{
    Durability, Message, Op, Pending, SessionExpiry, SessionRecord, SessionStore, SledConfig,
    SledStore,
};

fn open(dir: &tempfile::TempDir, durability: Durability) -> SledStore {
    let config = SledConfig {
        durability,
        ..SledConfig::default()
    };
    let store = SledStore::open(dir.path().join("data"), config).expect("open");
    let record = SessionRecord {
        client_id: "c".into(),
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

fn enqueue(store: &SledStore, seq: u64) -> Pending<()> {
    let mut publish = Publish::new("t", vec![7u8; 64]);
    publish.qos = QoS::AtLeastOnce;
    store.write(vec![Op::Enqueue {
        client_id: "c".into(),
        seq,
        message: Message::with_expiry(publish, None),
    }])
}

#[test]
fn outstanding_writes_share_syncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, Durability::Flush);
    let before = store.commit_stats();
    let pending: Vec<_> = (0..512).map(|seq| enqueue(&store, seq)).collect();
    for write in pending {
        write.wait().expect("durable");
    }
    let stats = store.commit_stats();
    let (writes, syncs) = (stats.writes - before.writes, stats.syncs - before.syncs);
    assert_eq!(writes, 512);
    assert!(
        syncs * 4 <= writes,
        "{syncs} syncs for {writes} writes: no grouping"
    );
    assert!(stats.groups - before.groups <= writes);
    assert_eq!(store.verify().expect("consistent").queued_messages, 512);
}

#[test]
fn writers_on_many_threads_share_syncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, Durability::Flush);
    let before = store.commit_stats();
    std::thread::scope(|scope| {
        for thread in 0..8u64 {
            let store = &store;
            scope.spawn(move || {
                for seq in 0..50 {
                    enqueue(store, thread * 1000 + seq).wait().expect("durable");
                }
            });
        }
    });
    let stats = store.commit_stats();
    let (writes, syncs) = (stats.writes - before.writes, stats.syncs - before.syncs);
    assert_eq!(writes, 400);
    // Every write waited for a sync; with 8 writers most syncs cover several.
    assert!(syncs < writes, "{syncs} syncs for {writes} writes");
}

#[test]
fn a_lone_writer_with_flush_durability_syncs_every_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, Durability::Flush);
    let before = store.commit_stats();
    for seq in 0..20 {
        enqueue(&store, seq).wait().expect("durable");
    }
    assert_eq!(store.commit_stats().syncs - before.syncs, 20);
}

#[test]
fn relaxed_durability_syncs_only_when_asked_or_on_schedule() {
    for durability in [
        Durability::None,
        Durability::Periodic(Duration::from_secs(3600)),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, durability);
        for seq in 0..50 {
            enqueue(&store, seq).wait().expect("applied");
        }
        // Complete means applied: reads see the write.
        let stored = store.load_session("c").expect("load").expect("stored");
        assert_eq!(stored.queue.len(), 50);
        assert_eq!(store.commit_stats().syncs, 0, "{durability:?}");
        store.flush().wait().expect("flush");
        assert_eq!(store.commit_stats().syncs, 1, "{durability:?}");
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, Durability::Periodic(Duration::from_millis(20)));
    enqueue(&store, 0).wait().expect("applied");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.commit_stats().syncs == 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(store.commit_stats().syncs >= 1, "the background sync ran");
}

#[test]
fn close_flushes_and_a_reopen_sees_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, Durability::Flush);
    enqueue(&store, 1).wait().expect("durable");
    store.close().expect("close flushes and stops cleanly");
    let store = open(&dir, Durability::Flush);
    assert_eq!(store.verify().expect("consistent").queued_messages, 1);
}

#[test]
fn opening_waits_for_a_lock_being_released() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, Durability::Flush);
    enqueue(&store, 1).wait().expect("durable");
    let closer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        store.close().expect("close");
    });
    // Still open for 300 ms: this open waits for the lock, not fails.
    let store = open(&dir, Durability::Flush);
    closer.join().expect("closer");
    assert_eq!(store.verify().expect("consistent").queued_messages, 1);
}

#[test]
fn writes_never_block_and_ready_waits_for_the_backlog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = SledConfig {
        durability: Durability::None,
        queue_depth: 1,
        ..SledConfig::default()
    };
    let store = SledStore::open(dir.path().join("data"), config).expect("open");
    let record = SessionRecord {
        client_id: "c".into(),
        expiry: SessionExpiry::Never,
        disconnected_at: None,
        subscriptions: BTreeMap::new(),
        will: None,
    };
    let session = store.write(vec![Op::PutSession(Box::new(record))]);
    // Far more writes than the depth: each submission returns at once
    // (it used to block the caller from the 1st waiting job).
    let pending: Vec<_> = (0..2_000).map(|seq| enqueue(&store, seq)).collect();
    store.ready().wait().expect("the committer catches up");
    session.wait().expect("stored");
    for write in pending {
        write.wait().expect("applied");
    }
    assert_eq!(store.verify().expect("consistent").queued_messages, 2_000);
    store.close().expect("closed");
}
