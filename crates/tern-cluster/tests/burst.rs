//! Throughput of `submit`: a burst of 10,000 concurrent submits on a three-node
//! loopback cluster is coalesced into few entries and commits quickly.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tern_cluster::{Command, CommandResult};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_10k_submits_is_batched_and_commits_quickly() {
    bounded(Duration::from_secs(120), async {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = cluster(tmp.path(), 3, 3).await;
        let leader = leader_of(&nodes).unwrap();
        for n in &nodes {
            let label = if n.id() == leader { "leader" } else { "follower" };
            let first_index = n.node.status().last_log_index;
            let started = Instant::now();
            let submits: Vec<_> = (0..10_000)
                .map(|i| n.node.submit(Command::AddRoutes { node: n.id(), filters: vec![format!("burst/{i}")] }))
                .collect();
            let results = futures::future::join_all(submits).await;
            let elapsed = started.elapsed();
            assert!(results.iter().all(|r| matches!(r, Ok(CommandResult::Done))));
            let entries = n.node.status().last_log_index - first_index;
            println!(
                "10,000 submits on node {} ({label}): committed in {:.1} ms, {entries} Raft entries, {:.0} commands/s",
                n.id(),
                elapsed.as_secs_f64() * 1e3,
                10_000.0 / elapsed.as_secs_f64()
            );
            assert!(elapsed < Duration::from_secs(20), "took {elapsed:?}");
            assert!(entries < 1_000, "10,000 submits used {entries} entries: not batched");
        }
        for n in &nodes {
            if let Err(e) = n.node.read_barrier().await {
                for m in &nodes {
                    eprintln!("{:?}", m.node.status());
                }
                panic!("read barrier on node {}: {e}", n.id());
            }
            assert_eq!(n.node.with_state(|s| s.routes().values().map(|f| f.len()).sum::<usize>()), 30_000);
        }
        for n in nodes {
            n.node.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_retained_messages_are_split_across_entries() {
    bounded(Duration::from_secs(60), async {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = cluster(tmp.path(), 3, 3).await;
        let first_index = nodes[1].node.status().last_log_index;
        let submits: Vec<_> = (0..20u8)
            .map(|i| {
                let message = bytes::Bytes::from(vec![i; 100 * 1024]);
                nodes[1].node.submit(Command::SetRetained {
                    topic: format!("big/{i}"),
                    message,
                })
            })
            .collect();
        for result in futures::future::join_all(submits).await {
            assert_eq!(result.unwrap(), CommandResult::Done);
        }
        let entries = nodes[1].node.status().last_log_index - first_index;
        assert!(
            (5..=20).contains(&entries),
            "2 MB of messages in {entries} entries"
        );
        for n in &nodes {
            n.node.read_barrier().await.unwrap();
            n.node.with_state(|s| {
                assert_eq!(s.retained().len(), 20);
                assert!(s.retained().values().all(|m| m.len() == 100 * 1024));
            });
        }
        for n in nodes {
            n.node.shutdown().await.unwrap();
        }
    })
    .await;
}
