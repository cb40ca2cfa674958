//! Membership: learners beyond the voter count, removal, leadership transfer and
//! refused joins.

mod common;

use std::time::Duration;

use common::*;
use tern_cluster::{Change, ClusterError, Command, NodeInfo, Role};

const LIMIT: Duration = Duration::from_secs(90);

fn add(node: u64, filter: &str) -> Command {
    Command::AddRoutes {
        node,
        filters: vec![filter.to_string()],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fourth_node_joins_as_a_learner_and_receives_the_state() {
    bounded(LIMIT, async {
        let tmp = tempfile::tempdir().unwrap();
        let mut nodes = cluster(tmp.path(), 3, 3).await;
        nodes[0]
            .node
            .propose(vec![add(1, "early/#")])
            .await
            .unwrap();

        let mut c = config(4, tmp.path());
        c.join = vec![nodes[2].addr()]; // a follower seed forwards to the leader
        let fourth = start(c).await;
        fourth
            .node
            .wait_ready(Duration::from_secs(15))
            .await
            .unwrap();
        let status = fourth.node.status();
        assert_eq!(status.role, Role::Learner);
        assert_eq!(
            status.voters.keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(status.learners.keys().copied().collect::<Vec<_>>(), vec![4]);
        assert!(
            fourth
                .node
                .with_state(|s| s.routes_of(1).any(|f| f == "early/#"))
        );

        // A learner proposes and reads linearizably like any node.
        fourth.node.propose(vec![add(4, "late")]).await.unwrap();
        nodes[1].node.read_barrier().await.unwrap();
        assert!(
            nodes[1]
                .node
                .with_state(|s| s.routes_of(4).any(|f| f == "late"))
        );
        nodes[0].node.propose(vec![add(1, "later")]).await.unwrap();
        fourth.node.read_barrier().await.unwrap();
        assert!(
            fourth
                .node
                .with_state(|s| s.routes_of(1).any(|f| f == "later"))
        );
        assert_eq!(
            fourth.recorder.changes(),
            nodes[0].recorder.changes(),
            "the learner saw the whole history"
        );

        nodes.push(fourth);
        for n in nodes {
            n.node.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_voter_promotes_a_learner() {
    bounded(LIMIT, async {
        let tmp = tempfile::tempdir().unwrap();
        let mut nodes = cluster(tmp.path(), 4, 3).await;
        assert_eq!(nodes[0].node.status().learners.keys().copied().collect::<Vec<_>>(), vec![4]);
        let leader = leader_of(&nodes).unwrap();
        let victim = if leader == 3 { 2 } else { 3 };
        // Asked on a node that is not the leader: forwarded.
        let asker = nodes.iter().find(|n| n.id() != leader && n.id() != victim).unwrap();
        asker.node.remove_node(victim).await.unwrap();
        asker.node.read_barrier().await.unwrap();
        let status = asker.node.status();
        assert!(!status.voters.contains_key(&victim) && !status.learners.contains_key(&victim));
        assert!(status.voters.contains_key(&4), "the learner took the free voter seat: {status:?}");
        assert_eq!(status.voters.len(), 3);
        let last = asker.recorder.changes().into_iter().rev().find(|c| matches!(c, Change::Members { .. }));
        assert!(matches!(last, Some(Change::Members { voters, learners }) if voters.contains(&4) && learners.is_empty()));

        match asker.node.remove_node(42).await {
            Err(ClusterError::UnknownNode(42)) => {}
            other => panic!("expected UnknownNode, got {other:?}"),
        }
        let position = nodes.iter().position(|n| n.id() == victim).unwrap();
        nodes.remove(position).node.shutdown().await.unwrap();
        nodes[0].node.propose(vec![add(1, "still works")]).await.unwrap();
        for n in nodes {
            n.node.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_to_the_requested_voter() {
    bounded(LIMIT, async {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = cluster(tmp.path(), 3, 3).await;
        for round in 0..2 {
            let leader = leader_of(&nodes).unwrap();
            let target = nodes
                .iter()
                .map(|n| n.id())
                .find(|id| *id != leader)
                .unwrap();
            // Asked from the target itself in the first round, from the leader in the second.
            let asker = if round == 0 { target } else { leader };
            nodes[(asker - 1) as usize]
                .node
                .transfer_leader(target)
                .await
                .unwrap();
            eventually(
                "everyone follows the new leader",
                Duration::from_secs(10),
                || nodes.iter().all(|n| n.node.status().leader == Some(target)),
            )
            .await;
            assert_eq!(
                nodes[(target - 1) as usize].node.status().role,
                Role::Leader
            );
            nodes[0]
                .node
                .propose(vec![add(1, &format!("round {round}"))])
                .await
                .unwrap();
        }
        let mut c = config(4, tmp.path());
        c.join = vec![nodes[0].addr()];
        let learner = start(c).await;
        learner
            .node
            .wait_ready(Duration::from_secs(15))
            .await
            .unwrap();
        match nodes[0].node.transfer_leader(4).await {
            Err(ClusterError::Rejected(reason)) => {
                assert!(reason.contains("not a voter"), "{reason}")
            }
            other => panic!("a learner cannot lead, got {other:?}"),
        }
        learner.node.shutdown().await.unwrap();
        for n in nodes {
            n.node.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_node_reusing_a_member_id_is_refused() {
    bounded(LIMIT, async {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = cluster(tmp.path(), 2, 3).await;
        let other = tempfile::tempdir().unwrap();
        let mut c = config(2, other.path());
        c.join = vec![nodes[0].addr()];
        let impostor = start(c).await;
        eventually("the conflict is reported", Duration::from_secs(10), || {
            impostor
                .node
                .status()
                .problem
                .is_some_and(|p| p.contains("node id 2 is already a member"))
        })
        .await;
        assert!(!impostor.node.is_ready());
        match nodes[0]
            .node
            .add_node(
                1,
                NodeInfo {
                    cluster_addr: "127.0.0.1:1".into(),
                    ..Default::default()
                },
            )
            .await
        {
            Err(ClusterError::NodeIdConflict { id: 1, .. }) => {}
            other => panic!("expected NodeIdConflict, got {other:?}"),
        }
        impostor.node.shutdown().await.unwrap();
        for n in nodes {
            n.node.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_adds_a_node_that_has_no_seeds() {
    bounded(LIMIT, async {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = cluster(tmp.path(), 1, 3).await;
        let waiting = start(config(5, tmp.path())).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.node.is_ready());
        assert!(
            waiting
                .node
                .status()
                .problem
                .is_some_and(|p| p.contains("waiting to be added"))
        );
        let info = NodeInfo {
            cluster_addr: waiting.addr(),
            mqtt_addr: "127.0.0.1:1883".into(),
            admin_addr: String::new(),
        };
        nodes[0].node.add_node(5, info.clone()).await.unwrap();
        waiting
            .node
            .wait_ready(Duration::from_secs(15))
            .await
            .unwrap();
        // The node corrects the addresses the operator gave to its own configuration.
        let own = NodeInfo {
            mqtt_addr: "127.0.0.1:18835".into(),
            ..info
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while nodes[0].node.node_info(5) != Some(own.clone()) {
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "node 1 has {:?}; node 5: {:?}",
                    nodes[0].node.node_info(5),
                    waiting.node.status()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            nodes[0].node.status().voters.len(),
            2,
            "promoted: fewer than 3 voters"
        );
        waiting.node.shutdown().await.unwrap();
        for n in nodes {
            n.node.shutdown().await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_in_a_five_voter_cluster() {
    bounded(LIMIT, async {
        let tmp = tempfile::tempdir().unwrap();
        let nodes = cluster(tmp.path(), 5, 5).await;
        assert_eq!(nodes[0].node.status().voters.len(), 5);
        let leader = leader_of(&nodes).unwrap();
        let target = if leader == 5 { 4 } else { 5 };
        nodes[0].node.transfer_leader(target).await.unwrap();
        eventually(
            "everyone follows the new leader",
            Duration::from_secs(10),
            || nodes.iter().all(|n| n.node.status().leader == Some(target)),
        )
        .await;
        nodes[1]
            .node
            .propose(vec![add(2, "after transfer")])
            .await
            .unwrap();
        for n in nodes {
            n.node.shutdown().await.unwrap();
        }
    })
    .await;
}
