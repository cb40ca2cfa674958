//! tern-cluster: the replicated control plane of a cluster of Tern nodes.
//!
//! Every node runs a [`RaftNode`]: an openraft 0.9 member with its log on sled and
//! a tonic gRPC listener for its peers. What the nodes must agree on goes through
//! Raft; the messages themselves do not.
//!
//! # What goes through Raft
//!
//! The state machine is [`ClusterState`], kept whole in memory on every node and
//! changed only by [`Command`]s in committed log entries:
//!
//! - **routes**: which topic filters each node has subscribers for (`SetRoutes` when
//!   a node starts, then `AddRoutes`/`RemoveRoutes`), so a publisher's node knows
//!   which nodes to forward a message to;
//! - **retained messages**: topic to opaque bytes in the broker's encoding
//!   (`SetRetained`, empty bytes remove);
//! - **client ownership**: which node hosts each client's session (`ClaimClient`
//!   returns the previous owner, so a takeover across nodes is detected;
//!   `ReleaseClient` only releases if the releasing node still owns it);
//! - the **membership** (voters and learners with their [`NodeInfo`]).
//!
//! Each applied change is told to the [`StateObserver`] on every node, in log
//! order, so the broker keeps derived indexes (its route trie, its retained index)
//! without reading the whole state; after a snapshot is installed, or at start,
//! `reset` hands it the whole state to rebuild from.
//!
//! Published messages travel node to node over a separate forwarding service
//! added to the same gRPC listener (the `extra` routes of [`RaftNode::start`]).
//!
//! # Writes and batching
//!
//! [`RaftNode::propose`] appends one entry holding a `Vec<Command>` and returns one
//! [`CommandResult`] per command. It works on any node: openraft 0.9 does not
//! forward writes, so a follower sends them to the leader over gRPC (`Propose`)
//! and retries through elections until `request_timeout` (10 s by default), then
//! fails with [`ClusterError::Timeout`]. If leadership changes while an entry is
//! in flight it may be applied and then proposed again (at-least-once); the
//! commands are idempotent except that a repeated claim reports its own node as
//! the previous owner.
//!
//! [`RaftNode::submit`] is the everyday path: one command per call, coalesced by one
//! task into entries of up to 1,000 commands (or about 256 KiB), taking whatever accumulated while the
//! previous entry was in flight. One entry is in flight at a time, so one caller's
//! commands apply in call order. 10,000 concurrent submits on a three-node
//! loopback cluster commit as about ten entries (`tests/burst.rs` prints the
//! time): 60 to 90 ms in a release build, 0.3 to 0.6 s in a debug build, on a
//! shared two-core machine.
//!
//! # Reads
//!
//! [`RaftNode::with_state`] reads the local replica, which may be slightly behind.
//! [`RaftNode::read_barrier`] makes a read linearizable on any node: it obtains
//! the leader's read index (the leader confirms its leadership with a quorum,
//! `ensure_linearizable`; a follower or learner asks the leader over gRPC,
//! `ReadIndex`) and waits until the local node has applied that index. A retained
//! message acknowledged on node 1 is then visible to a subscriber on node 3.
//!
//! # Membership
//!
//! One node starts with `bootstrap` and initialises a single-node cluster. The
//! others start with `join` seeds and ask a seed (`Join`), which forwards to the
//! leader; the leader adds the node as a learner (waiting until it has caught up)
//! and, while there are fewer voters than `voters` (default 3), promotes it. Later
//! nodes stay learners: they receive everything but do not vote. A node that
//! cannot reach its seeds stays up and retries with backoff, not ready, with the
//! reason in [`NodeStatus::problem`]. A node restarted from its data directory is
//! already a member and needs no seed (if its address changed, it re-joins to
//! update it). A new node whose id is already a member with another address is
//! refused ([`ClusterError::NodeIdConflict`]).
//!
//! [`RaftNode::remove_node`] removes a member (a removed voter is replaced by the
//! lowest-id learner). [`RaftNode::transfer_leader`]: openraft 0.9 has no
//! leadership transfer, so the leader waits until the target's log matches its own
//! and its own leader lease (the maximum election timeout since its election) has
//! run out, then asks the target to start an election (`trigger().elect()`), votes
//! for it and steps down. With more than three voters the leader also pauses its
//! heartbeats for the transfer, so the other voters' leases run out as well. If
//! another voter wins the election, the request is retried on that leader.
//!
//! # Storage and transport
//!
//! The log, the vote and the committed index are in sled (`raft/store.rs`, the one
//! file here that names sled), flushed before openraft is told they are durable;
//! it passes openraft's storage test suite. The state machine is in memory;
//! snapshots serialise it whole into sled, and at start the last snapshot is
//! loaded and openraft re-applies the log after it. Everything is serialised by
//! one function pair (`raft/codec.rs`, postcard: compact, and opaque bytes stay
//! bytes).
//!
//! The gRPC service (proto/raft.proto) carries openraft's messages and ours
//! serde-encoded in a `bytes` field: AppendEntries, Vote, InstallSnapshot, then
//! Propose, ReadIndex, Join, Leave, NodeStatus and TransferLeader. A peer that
//! cannot be reached is openraft's `Unreachable`, so openraft backs off. Protobuf,
//! tonic and openraft types stay inside this crate; the public API uses only the
//! types below, plus `tonic::service::Routes` for the extra services.
//!
//! # Timing
//!
//! openraft 0.9 uses the heartbeat interval as the deadline of every AppendEntries
//! call and retries a timed-out call with the same entries, so a call that cannot
//! finish in time stalls that follower. Hence the defaults: heartbeats every
//! 100 ms, elections after 0.5 to 1 s, at most 16 entries per call and about
//! 256 KiB per entry.
//!
//! # Additions to the first API sketch
//!
//! - [`ClusterConfig::new`] fills the defaults; the timers are `heartbeat_ms`,
//!   `election_timeout_min_ms` and `election_timeout_max_ms`; `snapshot_every`,
//!   `snapshot_keep_logs` and `request_timeout` were added. An empty
//!   `info.cluster_addr` becomes the address actually bound (for port 0).
//! - [`RaftNode::id`], [`RaftNode::cluster_addr`] and [`RaftNode::wait_ready`];
//!   [`NoObserver`]; [`NodeStatus`] also says `ready`, `snapshot_index` and the
//!   `problem` that keeps a node from joining.
//! - [`ClusterError`] is `Clone`: one failed batch is every submitter's error.
//!   [`ClusterError::is_retryable`] tells a retry apart from a configuration error.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::Arc;
//! use tern_cluster::{ClusterConfig, Command, NoObserver, RaftNode};
//!
//! # async fn run() -> Result<(), tern_cluster::ClusterError> {
//! let mut config = ClusterConfig::new(2, "0.0.0.0:7946".parse().unwrap(), "/var/lib/tern/raft");
//! config.info.cluster_addr = "node2.example:7946".into();
//! config.join = vec!["node1.example:7946".into()];
//! let node = RaftNode::start(config, Arc::new(NoObserver), Default::default()).await?;
//! node.wait_ready(std::time::Duration::from_secs(30)).await?;
//! node.submit(Command::AddRoutes { node: 2, filters: vec!["sensors/#".into()] }).await?;
//! node.read_barrier().await?;
//! let routes = node.with_state(|state| state.routes().len());
//! # let _ = routes;
//! node.shutdown().await
//! # }
//! ```

pub mod error;
pub mod forward;
mod raft;

pub use error::ClusterError;
pub use raft::{
    Change, ClusterConfig, ClusterState, ClusterStatus, Command, CommandResult, MemberStatus,
    NoObserver, NodeId, NodeInfo, NodeStatus, RaftNode, Role, StateObserver,
};
