//! Becoming and staying a member: the joiner task (contacts seeds until this node
//! is a member with its own addresses, and a voter if a seat is free) and the
//! readiness monitor behind [`crate::RaftNode::is_ready`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::error::ClusterError;
use crate::raft::leader::{LeaderRequest, Reply};
use crate::raft::node::Inner;
use crate::raft::transport::Rpc;

/// Makes this node a member with its configured addresses: nothing to do if it
/// already is a voter with them; otherwise asks a seed to have the leader add it (or, for a member
/// whose addresses changed, update them). The seeds are the configured ones plus,
/// for a member, the other members. Every address a seed resolves to is tried,
/// with backoff, until one answers yes or the node is cancelled. Never gives up:
/// a node that cannot join stays up, not ready, with the reason in its status.
pub(crate) async fn join(inner: Arc<Inner>, mut cancel: watch::Receiver<bool>) {
    let mut pause = Duration::from_millis(100);
    // Whether the leader has accepted this node's request.
    let mut accepted = false;
    loop {
        let member = inner.member_info();
        // A learner asks once, so the leader promotes it if a voter seat is free.
        if member.as_ref() == Some(&inner.config.info) && (accepted || inner.is_voter()) {
            tracing::info!(
                node = inner.id,
                voter = inner.is_voter(),
                "member of the cluster"
            );
            inner.set_problem(None);
            inner.joined.store(true, Ordering::Relaxed);
            return;
        }
        let mut seeds = inner.config.join.clone();
        if member.is_some() {
            let metrics = inner.raft.metrics().borrow().clone();
            let others = metrics
                .membership_config
                .membership()
                .nodes()
                .filter(|(id, _)| **id != inner.id);
            seeds.extend(others.map(|(_, info)| info.cluster_addr.clone()));
        }
        if seeds.is_empty() {
            if !inner.config.bootstrap {
                inner.set_problem(Some(
                    "not a member yet: waiting to be added (no join seeds configured)".into(),
                ));
            }
        } else {
            let request = LeaderRequest::Join {
                id: inner.id,
                info: inner.config.info.clone(),
                rejoin: member.is_some(),
            };
            let asked = tokio::select! {
                asked = ask_seeds(&inner, &seeds, &request) => asked,
                _ = cancel.wait_for(|stop| *stop) => return,
            };
            match asked {
                Ok(()) => {
                    // Checked at the top once the membership shows it (an operator's
                    // concurrent add_node may still have other addresses).
                    accepted = true;
                    pause = Duration::from_millis(20);
                    inner.set_problem(None);
                }
                Err(e) => {
                    tracing::warn!(node = inner.id, error = %e, "cannot join the cluster yet; retrying");
                    inner.set_problem(Some(e.to_string()));
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = cancel.wait_for(|stop| *stop) => return,
        }
        // Without seeds this only watches for being added: check often.
        let cap = if seeds.is_empty() {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        };
        pause = (pause * 2).min(cap);
        if accepted {
            pause = pause.min(Duration::from_millis(100));
        }
    }
}

async fn ask_seeds(
    inner: &Inner,
    seeds: &[String],
    request: &LeaderRequest,
) -> Result<(), ClusterError> {
    let timeout = inner.config.request_timeout;
    let mut last = String::from("no address");
    for seed in seeds {
        let addrs = match tokio::net::lookup_host(seed.as_str()).await {
            Ok(addrs) => addrs,
            Err(e) => {
                last = format!("{seed}: {e}");
                continue;
            }
        };
        for addr in addrs {
            match inner
                .peers
                .call::<_, Reply>(&addr.to_string(), Rpc::Join, request, timeout)
                .await
            {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err(e)) => {
                    let e = ClusterError::from(e);
                    if !e.is_retryable() {
                        return Err(e);
                    }
                    last = format!("{seed} ({addr}): {e}");
                }
                Err(e) => last = format!("{seed} ({addr}): {e}"),
            }
        }
    }
    Err(ClusterError::SeedUnreachable {
        seeds: seeds.join(", "),
        reason: last,
    })
}

/// Keeps [`crate::RaftNode::is_ready`] current: a member that knows a leader and has
/// applied up to its commit index.
pub(crate) async fn monitor_readiness(inner: Arc<Inner>, mut cancel: watch::Receiver<bool>) {
    let mut metrics = inner.raft.metrics();
    loop {
        let committed = inner
            .raft
            .with_raft_state(|s| s.committed.map_or(0, |id| id.index))
            .await;
        let ready = {
            let m = metrics.borrow_and_update();
            let member = m
                .membership_config
                .membership()
                .get_node(&inner.id)
                .is_some();
            let applied = m.last_applied.map_or(0, |id| id.index);
            let ready = committed.is_ok_and(|committed| applied >= committed);
            member && inner.joined.load(Ordering::Relaxed) && m.current_leader.is_some() && ready
        };
        inner.ready.store(ready, Ordering::Relaxed);
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = cancel.wait_for(|stop| *stop) => break,
        }
    }
    inner.ready.store(false, Ordering::Relaxed);
}
