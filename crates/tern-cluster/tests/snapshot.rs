//! Snapshots: built every `snapshot_every` entries, persisted, loaded at restart
//! (observer reset), and installed on a node that joins after the log was purged.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use tern_cluster::{ClusterConfig, Command};

const LIMIT: Duration = Duration::from_secs(90);

fn snapshot_often(c: &mut ClusterConfig) {
    c.snapshot_every = 10;
    c.snapshot_keep_logs = 0;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarts_from_its_snapshot_and_the_log_after_it() {
    bounded(LIMIT, async {
        let tmp = tempfile::tempdir().unwrap();
        let mut nodes = cluster_with(tmp.path(), 3, snapshot_often).await;
        for i in 0..25 {
            let message = Bytes::from(format!("m{i}"));
            nodes[1]
                .node
                .propose(vec![Command::SetRetained {
                    topic: format!("t/{i}"),
                    message,
                }])
                .await
                .unwrap();
        }
        nodes[2].node.read_barrier().await.unwrap();
        eventually("a snapshot on node 3", Duration::from_secs(10), || {
            nodes[2].node.status().snapshot_index >= 20
        })
        .await;
        let before = nodes[2].node.with_state(|s| s.clone());
        let snapshot_index = nodes[2].node.status().snapshot_index;
        assert!(
            before.last_applied_index() > snapshot_index,
            "some entries follow the snapshot"
        );

        let config = nodes.pop().unwrap().stop().await;
        let restarted = restart(config).await;
        let resets = restarted.recorder.resets();
        assert_eq!(resets.len(), 1, "one reset, with the loaded snapshot");
        assert_eq!(resets[0].last_applied_index(), snapshot_index);
        assert!(resets[0].retained().len() >= 10);
        // openraft re-applies the committed entries after the snapshot.
        eventually("replay after the snapshot", Duration::from_secs(10), || {
            restarted.node.with_state(|s| s.retained().len()) == 25
        })
        .await;
        restarted
            .node
            .wait_ready(Duration::from_secs(10))
            .await
            .unwrap();
        restarted.node.read_barrier().await.unwrap();
        assert_eq!(
            restarted.node.with_state(|s| s.retained().clone()),
            before.retained().clone()
        );
        restarted.node.shutdown().await.unwrap();
        for n in nodes {
            n.node.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_joining_after_the_log_was_purged_receives_the_snapshot() {
    bounded(LIMIT, async {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = cluster_with(tmp.path(), 3, snapshot_often).await;
        let filters: Vec<String> = (0..40).map(|i| format!("f/{i}")).collect();
        for f in &filters {
            nodes[0]
                .node
                .propose(vec![Command::AddRoutes {
                    node: 2,
                    filters: vec![f.clone()],
                }])
                .await
                .unwrap();
        }
        nodes[0].node.read_barrier().await.unwrap();
        eventually("the leader purges its log", Duration::from_secs(10), || {
            nodes[0].node.status().snapshot_index >= 30
        })
        .await;

        let mut c = config(4, tmp.path());
        snapshot_often(&mut c);
        c.join = vec![nodes[0].addr()];
        let fourth = start(c).await;
        fourth
            .node
            .wait_ready(Duration::from_secs(15))
            .await
            .unwrap();
        fourth.node.read_barrier().await.unwrap();
        let routes: Vec<String> = fourth
            .node
            .with_state(|s| s.routes_of(2).map(String::from).collect());
        let mut expected = filters.clone();
        expected.sort();
        assert_eq!(routes, expected);
        let resets = fourth.recorder.resets();
        assert!(
            resets.len() >= 2,
            "the empty start and the installed snapshot"
        );
        assert!(
            resets.last().unwrap().routes_of(2).count() >= 30,
            "the snapshot carried the routes"
        );
        fourth.node.shutdown().await.unwrap();
        for n in nodes {
            n.node.shutdown().await.unwrap();
        }
    })
    .await;
}
