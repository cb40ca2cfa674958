//! Becoming and staying a member: the joiner task (contacts seeds until this node
//! is a member with its own addresses, and a voter if a seat is free) and the
//! readiness monitor behind [`crate::RaftNode::is_ready`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

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
/// applied up to its commit index. A leader must also have heard from a majority of
/// the voters within [`UNANSWERED_LEADER_TIMEOUTS`] election timeouts: openraft 0.9
/// keeps a leader cut off from the others leading until it hears of a higher term,
/// while the others elect a new leader within one. Such a leader reports not-ready,
/// with the reason in its status, so a load balancer sends it no new clients; it is
/// ready again once a majority answers (or, the partition healed, it follows the new
/// leader).
pub(crate) async fn monitor_readiness(inner: Arc<Inner>, mut cancel: watch::Receiver<bool>) {
    let mut metrics = inner.raft.metrics();
    let limit_ms = UNANSWERED_LEADER_TIMEOUTS * inner.config.election_timeout_max_ms;
    let mut reported_isolation = false;
    // Since when this node has led without any majority's acknowledgement.
    let mut unacknowledged_since: Option<Instant> = None;
    loop {
        let committed = inner
            .raft
            .with_raft_state(|s| s.committed.map_or(0, |id| id.index))
            .await;
        let (ready, isolated) = {
            let m = metrics.borrow_and_update();
            let membership = m.membership_config.membership();
            let member = membership.get_node(&inner.id).is_some();
            let applied = m.last_applied.map_or(0, |id| id.index);
            let caught_up = committed.is_ok_and(|committed| applied >= committed);
            let sole_voter = membership.voter_ids().all(|id| id == inner.id);
            let leading = m.current_leader == Some(inner.id) && !sole_voter;
            // A new leader has no acknowledgement until its first heartbeat
            // round: counted from when this monitor first saw it so.
            let millis_since_quorum_ack = match (leading, m.millis_since_quorum_ack) {
                (true, None) => {
                    let since = *unacknowledged_since.get_or_insert_with(Instant::now);
                    Some(since.elapsed().as_millis() as u64)
                }
                (_, acknowledged) => {
                    unacknowledged_since = None;
                    acknowledged
                }
            };
            let isolated = leader_without_quorum(leading, millis_since_quorum_ack, limit_ms);
            let acknowledged = !leading || m.millis_since_quorum_ack.is_some();
            let ready = member
                && inner.joined.load(Ordering::Relaxed)
                && m.current_leader.is_some()
                && caught_up
                && acknowledged
                && isolated.is_none();
            (ready, isolated)
        };
        inner.ready.store(ready, Ordering::Relaxed);
        // The joiner owns the problem until this node has joined.
        if inner.joined.load(Ordering::Relaxed) && isolated.is_some() != reported_isolation {
            reported_isolation = isolated.is_some();
            if let Some(problem) = &isolated {
                tracing::warn!(node = inner.id, "{problem}");
            } else {
                tracing::info!(
                    node = inner.id,
                    "no longer a leader cut off from the majority"
                );
            }
            inner.set_problem(isolated);
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = cancel.wait_for(|stop| *stop) => break,
        }
    }
    inner.ready.store(false, Ordering::Relaxed);
}

/// How many election timeouts (their upper bound) a leader may go unanswered by a
/// majority and still call itself ready. One is when the others start electing a new
/// leader; three leave room for a healthy leader whose followers answer late (a busy
/// disk under a large AppendEntries), so its readiness does not flap.
const UNANSWERED_LEADER_TIMEOUTS: u64 = 3;

/// Why a leader (`leading`, with other voters) is cut off from the majority: no
/// majority has acknowledged it for longer than `limit_ms`.
fn leader_without_quorum(
    leading: bool,
    millis_since_quorum_ack: Option<u64>,
    limit_ms: u64,
) -> Option<String> {
    let ms = millis_since_quorum_ack.filter(|ms| leading && *ms > limit_ms)?;
    Some(format!(
        "this node leads, but no majority of the voters has answered it for {ms} ms \
         (the limit is {limit_ms} ms, three election timeouts): a network partition, or \
         the other voters are down; it takes no new clients until a majority answers or \
         a new leader is known"
    ))
}

#[cfg(test)]
mod tests {
    use super::leader_without_quorum;

    #[test]
    fn a_leader_answered_within_the_limit_is_not_cut_off() {
        assert_eq!(leader_without_quorum(true, Some(0), 1_000), None);
        assert_eq!(leader_without_quorum(true, Some(1_000), 1_000), None);
    }

    #[test]
    fn a_leader_unanswered_beyond_the_limit_is_cut_off() {
        let problem = leader_without_quorum(true, Some(1_001), 1_000).expect("cut off");
        assert!(problem.contains("for 1001 ms"), "{problem}");
        assert!(problem.contains("limit is 1000 ms"), "{problem}");
    }

    #[test]
    fn a_follower_or_a_missing_figure_is_not_judged() {
        assert_eq!(leader_without_quorum(false, Some(60_000), 1_000), None);
        assert_eq!(leader_without_quorum(false, None, 1_000), None);
        // A new leader's first acknowledgement is timed by the monitor instead.
        assert_eq!(leader_without_quorum(true, None, 1_000), None);
    }
}
