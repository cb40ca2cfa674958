//! A three-node cluster in one process: formation, forwarding, observers, read
//! barriers, failover and restart.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use tern_cluster::{Change, ClusterError, Command, CommandResult, Role};

const LIMIT: Duration = Duration::from_secs(60);

fn add(node: u64, filter: &str) -> Command {
    Command::AddRoutes {
        node,
        filters: vec![filter.to_string()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_cluster_and_a_follower_proposes() {
    bounded(LIMIT, async {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = cluster(tmp.path(), 3, 3).await;
        let status = nodes[0].node.status();
        assert_eq!(
            status.voters.keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(status.learners.is_empty());
        assert_eq!(status.voters[&2].cluster_addr, nodes[1].addr());
        assert_eq!(
            nodes[2].node.node_info(1).unwrap().mqtt_addr,
            "127.0.0.1:18831"
        );

        let leader = leader_of(&nodes).unwrap();
        let follower = nodes.iter().find(|n| n.id() != leader).unwrap();
        assert_ne!(follower.node.status().role, Role::Leader);
        let results = follower
            .node
            .propose(vec![
                add(2, "a/+"),
                Command::ClaimClient {
                    client_id: "c1".into(),
                    node: 2,
                },
                Command::ClaimClient {
                    client_id: "c1".into(),
                    node: 3,
                },
                Command::ReleaseClient {
                    client_id: "c1".into(),
                    node: 2,
                },
            ])
            .await
            .unwrap();
        assert_eq!(
            results,
            vec![
                CommandResult::Done,
                CommandResult::Claimed { previous: None },
                CommandResult::Claimed { previous: Some(2) },
                CommandResult::Done,
            ]
        );
        for n in &nodes {
            n.node.read_barrier().await.unwrap();
            n.node.with_state(|s| {
                assert_eq!(s.routes_of(2).collect::<Vec<_>>(), vec!["a/+"]);
                assert_eq!(s.owner_of("c1"), Some(3), "the stale release was ignored");
            });
        }

        let cluster = nodes[1].node.cluster_status().await;
        assert_eq!(cluster.members.len(), 3);
        for member in &cluster.members {
            let status = member.status.as_ref().expect("every member answers");
            assert_eq!(status.id, member.id);
            assert!(member.voter);
        }
        let json = serde_json::to_string(&cluster).unwrap();
        assert!(json.contains("\"role\":\"leader\""), "{json}");

        for n in nodes {
            n.node.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_observer_sees_the_same_changes_in_the_same_order() {
    bounded(LIMIT, async {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = cluster(tmp.path(), 3, 3).await;
        // Concurrent writers on every node, so the log interleaves them.
        let mut writers = Vec::new();
        for n in &nodes {
            for i in 0..20 {
                let node = n.node.clone();
                let id = n.id();
                writers.push(tokio::spawn(async move {
                    node.submit(add(id, &format!("t/{i}"))).await.unwrap();
                    node.submit(Command::SetRetained {
                        topic: format!("r/{id}"),
                        message: Bytes::from(format!("{i}")),
                    })
                    .await
                    .unwrap();
                }));
            }
        }
        for w in writers {
            w.await.unwrap();
        }
        nodes[0]
            .node
            .propose(vec![Command::SetRoutes {
                node: 1,
                filters: vec!["only".into()],
            }])
            .await
            .unwrap();
        for n in &nodes {
            n.node.read_barrier().await.unwrap();
        }
        let reference = nodes[0].recorder.changes();
        assert!(
            reference
                .iter()
                .any(|c| matches!(c, Change::Members { voters, .. } if voters.len() == 3))
        );
        assert!(
            reference
                .iter()
                .any(|c| matches!(c, Change::RoutesRemoved { node: 1, .. }))
        );
        let routes_added = reference
            .iter()
            .filter(|c| matches!(c, Change::RoutesAdded { .. }))
            .count();
        assert_eq!(routes_added, 61, "60 adds and the SetRoutes");
        for n in &nodes[1..] {
            assert_eq!(
                n.recorder.changes(),
                reference,
                "node {} saw a different history",
                n.id()
            );
        }
        for n in nodes {
            n.node.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_barrier_makes_a_write_on_one_node_visible_on_another() {
    bounded(LIMIT, async {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = cluster(tmp.path(), 3, 3).await;
        for i in 0..30u32 {
            let (writer, reader) = (&nodes[(i % 3) as usize], &nodes[((i + 2) % 3) as usize]);
            let message = Bytes::from(format!("value {i}"));
            writer
                .node
                .submit(Command::SetRetained {
                    topic: "x".into(),
                    message: message.clone(),
                })
                .await
                .unwrap();
            reader.node.read_barrier().await.unwrap();
            let seen = reader.node.with_state(|s| s.retained().get("x").cloned());
            assert_eq!(
                seen,
                Some(message),
                "write {i} on node {} not visible on node {}",
                writer.id(),
                reader.id()
            );
        }
        for n in nodes {
            n.node.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_leader_is_elected_when_the_leader_stops() {
    bounded(LIMIT, async {
        let tmp = tempfile::tempdir().unwrap();
        let mut nodes = cluster(tmp.path(), 3, 3).await;
        nodes[1].node.propose(vec![add(1, "before")]).await.unwrap();
        let old = leader_of(&nodes).unwrap();
        let position = nodes.iter().position(|n| n.id() == old).unwrap();
        nodes.remove(position).stop().await;

        eventually("a new leader", Duration::from_secs(10), || {
            nodes
                .iter()
                .any(|n| n.node.status().leader.is_some_and(|l| l != old))
        })
        .await;
        for n in &nodes {
            let results = n.node.propose(vec![add(n.id(), "after")]).await.unwrap();
            assert_eq!(results, vec![CommandResult::Done]);
        }
        for n in &nodes {
            n.node.read_barrier().await.unwrap();
            let routes = n.node.with_state(|s| s.routes().clone());
            assert!(routes[&1].contains("before"));
            for m in &nodes {
                assert!(routes[&m.id()].contains("after"));
            }
        }
        for n in nodes {
            n.node.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_recovers_its_state_and_catches_up() {
    bounded(LIMIT, async {
        let tmp = tempfile::tempdir().unwrap();
        let mut nodes = cluster(tmp.path(), 3, 3).await;
        nodes[0].node.propose(vec![add(3, "kept")]).await.unwrap();
        nodes[2].node.read_barrier().await.unwrap();
        let stopped = nodes.pop().unwrap();
        let config = stopped.stop().await;

        // Written while node 3 is down: it must catch up after the restart.
        nodes[0].node.propose(vec![add(3, "missed")]).await.unwrap();

        let restarted = restart(config).await;
        // Its own log is re-applied at start, before it hears from the leader.
        eventually("local replay", Duration::from_secs(10), || {
            restarted
                .node
                .with_state(|s| s.routes_of(3).any(|f| f == "kept"))
        })
        .await;
        restarted
            .node
            .wait_ready(Duration::from_secs(10))
            .await
            .unwrap();
        restarted.node.read_barrier().await.unwrap();
        let routes: BTreeSet<String> = restarted
            .node
            .with_state(|s| s.routes_of(3).map(String::from).collect());
        assert_eq!(
            routes,
            BTreeSet::from(["kept".to_string(), "missed".to_string()])
        );
        assert_eq!(
            restarted.node.status().voters.len(),
            3,
            "still a voter without re-joining"
        );
        restarted.node.propose(vec![add(3, "again")]).await.unwrap();

        restarted.node.shutdown().await.unwrap();
        for n in nodes {
            n.node.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_cannot_reach_its_seeds_stays_up_and_not_ready() {
    bounded(LIMIT, async {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = config(7, tmp.path());
        c.join = vec![unused_addr().to_string(), "no-such-host.invalid:1".into()];
        c.request_timeout = Duration::from_millis(500);
        let lonely = start(c).await;
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(!lonely.node.is_ready());
        let status = lonely.node.status();
        let problem = status.problem.expect("the reason is reported");
        assert!(problem.contains("join seed"), "{problem}");
        match lonely.node.propose(vec![add(7, "x")]).await {
            Err(e @ ClusterError::Timeout { .. }) => assert!(e.is_retryable()),
            other => panic!("expected a timeout, got {other:?}"),
        }
        lonely.node.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_on_a_new_address_updates_the_membership() {
    bounded(LIMIT, async {
        let tmp = tempfile::tempdir().unwrap();
        let mut nodes = cluster(tmp.path(), 3, 3).await;
        let old_addr = nodes[2].addr();
        let mut config = nodes.pop().unwrap().stop().await;
        config.cluster_listen = "127.0.0.1:0".parse().unwrap(); // no seeds: its peers are its seeds
        let moved = restart(config).await;
        assert_ne!(moved.addr(), old_addr);
        moved
            .node
            .wait_ready(Duration::from_secs(15))
            .await
            .unwrap();
        eventually(
            "the leader knows the new address",
            Duration::from_secs(5),
            || {
                nodes[0]
                    .node
                    .node_info(3)
                    .is_some_and(|info| info.cluster_addr == moved.addr())
            },
        )
        .await;
        nodes[0]
            .node
            .propose(vec![add(1, "reaches the moved node")])
            .await
            .unwrap();
        moved.node.read_barrier().await.unwrap();
        assert!(
            moved
                .node
                .with_state(|s| s.routes_of(1).any(|f| f == "reaches the moved node"))
        );
        moved.node.shutdown().await.unwrap();
        for n in nodes {
            n.node.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_in_use_is_refused() {
    bounded(LIMIT, async {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = config(1, tmp.path());
        c.bootstrap = true;
        let first = start(c.clone()).await;
        match tern_cluster::RaftNode::start(
            c,
            std::sync::Arc::new(tern_cluster::NoObserver),
            tonic_routes(),
        )
        .await
        {
            Err(e @ ClusterError::DataDirLocked(_)) => {
                assert!(e.to_string().contains("locked by another process"), "{e}");
            }
            Err(other) => panic!("expected DataDirLocked, got {other}"),
            Ok(_) => panic!("two nodes opened one data directory"),
        }
        first.node.shutdown().await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submits_in_flight_survive_a_leader_failover() {
    bounded(LIMIT, async {
        let tmp = tempfile::tempdir().unwrap();
        let mut nodes = cluster(tmp.path(), 3, 3).await;
        let leader = leader_of(&nodes).unwrap();
        let position = nodes.iter().position(|n| n.id() == leader).unwrap();
        let old_leader = nodes.remove(position);
        let writer = nodes[0].node.clone();
        let id = nodes[0].id();
        // A steady stream of submits from a follower while the leader goes away.
        let stream = tokio::spawn(async move {
            let mut pending = Vec::new();
            for i in 0..200 {
                pending.push(writer.submit(add(id, &format!("s/{i}"))));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            futures::future::join_all(pending).await
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        old_leader.stop().await;
        let results = stream.await.unwrap();
        assert!(
            results.iter().all(|r| matches!(r, Ok(CommandResult::Done))),
            "{results:?}"
        );
        for n in &nodes {
            n.node.read_barrier().await.unwrap();
            assert_eq!(n.node.with_state(|s| s.routes_of(id).count()), 200);
            assert_ne!(n.node.status().leader, Some(leader));
        }
        for n in nodes {
            n.node.shutdown().await.unwrap();
        }
    })
    .await;
}
