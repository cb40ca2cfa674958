//! The Raft control plane: openraft's type configuration and the pieces around it.
//!
//! - [`state`]: the replicated data and the commands that change it (pure).
//! - `store`: the durable log, vote and snapshots on sled.
//! - `state_machine`: openraft's state machine over [`ClusterState`], with the observer.
//! - `transport` and `service`: the gRPC client and server of proto/raft.proto.
//! - `leader`: requests only the leader serves, and forwarding to it.
//! - `batcher`: coalescing of submits into few entries.
//! - `joiner`: joining through seeds, and readiness.
//! - `node`: [`RaftNode`], which starts and owns all of the above.

use std::io::Cursor;

use openraft::SnapshotMeta;
use serde::{Deserialize, Serialize};

mod batcher;
pub(crate) mod codec;
mod config;
mod joiner;
mod leader;
mod node;
mod service;
mod state;
mod state_machine;
mod status;
mod store;
mod transport;

pub use config::{ClusterConfig, NodeId, NodeInfo};
pub use node::RaftNode;
pub use state::{Change, ClusterState, Command, CommandResult, NoObserver, StateObserver};
pub use status::{ClusterStatus, MemberStatus, NodeStatus, Role};

/// The generated protobuf types and gRPC stubs; never leave this crate.
#[allow(missing_docs, unused_qualifications, clippy::all, clippy::pedantic)]
pub(crate) mod pb {
    tonic::include_proto!("tern.raft");
}

openraft::declare_raft_types!(
    /// openraft's types for Tern: one entry carries a batch of commands and
    /// answers one result per command.
    pub(crate) TypeConfig:
        D = Vec<Command>,
        R = Vec<CommandResult>,
        NodeId = NodeId,
        Node = NodeInfo,
        SnapshotData = Cursor<Vec<u8>>,
);

pub(crate) type Raft = openraft::Raft<TypeConfig>;
pub(crate) type Entry = openraft::Entry<TypeConfig>;

/// A snapshot as persisted: its metadata and the encoded [`ClusterState`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StoredSnapshot {
    pub(crate) meta: SnapshotMeta<NodeId, NodeInfo>,
    pub(crate) data: Vec<u8>,
}
