//! The client side of the cluster gRPC service: one lazily connected tonic channel
//! per peer address, a typed [`Peers::call`] that serde-encodes the request into the
//! protobuf `Payload`, and openraft's `RaftNetwork` on top of it.
//!
//! Transport failures become openraft's `Unreachable` (openraft then backs off
//! before retrying that peer), deadlines become `Timeout`, and an error the remote
//! Raft returned travels back as `RemoteError`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RPCTypes, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tonic::transport::{Channel, Endpoint};

use crate::raft::codec;
use crate::raft::pb::Payload;
use crate::raft::pb::raft_client::RaftClient;
use crate::raft::{NodeId, NodeInfo, TypeConfig};

/// The largest gRPC message either side accepts (snapshots and big append batches).
pub(crate) const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// The RPCs of proto/raft.proto.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Rpc {
    AppendEntries,
    Vote,
    InstallSnapshot,
    Propose,
    ReadIndex,
    Join,
    Leave,
    NodeStatus,
    TransferLeader,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The peer could not be reached (refused, reset, no route, bad address).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// No answer within the deadline.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The peer answered something undecodable or failed the call itself.
    #[error("{0}")]
    Protocol(String),
}

/// Clients for every peer this node talks to, keyed by address.
#[derive(Clone, Default)]
pub(crate) struct Peers {
    clients: Arc<Mutex<HashMap<String, RaftClient<Channel>>>>,
}

impl Peers {
    fn client(&self, addr: &str) -> Result<RaftClient<Channel>, CallError> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(addr) {
            return Ok(client.clone());
        }
        let endpoint = Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| CallError::Unreachable(format!("bad address {addr:?}: {e}")))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true);
        let client = RaftClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        clients.insert(addr.to_string(), client.clone());
        Ok(client)
    }

    /// Calls `rpc` on the node at `addr` with a serde-encoded request.
    pub(crate) async fn call<Req, Resp>(
        &self,
        addr: &str,
        rpc: Rpc,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp, CallError>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let mut client = self.client(addr)?;
        let data = codec::encode(req).map_err(|e| CallError::Protocol(e.to_string()))?;
        let mut request = tonic::Request::new(Payload { data: data.into() });
        request.set_timeout(timeout);
        let call = async move {
            match rpc {
                Rpc::AppendEntries => client.append_entries(request).await,
                Rpc::Vote => client.vote(request).await,
                Rpc::InstallSnapshot => client.install_snapshot(request).await,
                Rpc::Propose => client.propose(request).await,
                Rpc::ReadIndex => client.read_index(request).await,
                Rpc::Join => client.join(request).await,
                Rpc::Leave => client.leave(request).await,
                Rpc::NodeStatus => client.node_status(request).await,
                Rpc::TransferLeader => client.transfer_leader(request).await,
            }
        };
        let response = match tokio::time::timeout(timeout, call).await {
            Err(_) => return Err(CallError::Timeout(timeout)),
            Ok(Err(status)) => return Err(status_error(status, timeout)),
            Ok(Ok(response)) => response,
        };
        codec::decode(&response.into_inner().data).map_err(|e| CallError::Protocol(e.to_string()))
    }
}

fn status_error(status: tonic::Status, timeout: Duration) -> CallError {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown => {
            CallError::Unreachable(status.message().to_string())
        }
        tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => CallError::Timeout(timeout),
        _ => CallError::Protocol(format!("{}: {}", status.code(), status.message())),
    }
}

/// openraft's factory of per-peer network clients.
pub(crate) struct NetworkFactory {
    pub(crate) id: NodeId,
    pub(crate) peers: Peers,
}

impl RaftNetworkFactory<TypeConfig> for NetworkFactory {
    type Network = PeerNetwork;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Self::Network {
        PeerNetwork {
            id: self.id,
            target,
            addr: node.cluster_addr.clone(),
            peers: self.peers.clone(),
        }
    }
}

/// The connection to one peer, used by openraft's replication and election tasks.
pub(crate) struct PeerNetwork {
    id: NodeId,
    target: NodeId,
    addr: String,
    peers: Peers,
}

impl PeerNetwork {
    async fn raft_call<Req, Resp, E>(
        &self,
        rpc: Rpc,
        action: RPCTypes,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, NodeInfo, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let ttl = option.hard_ttl();
        let reply: Result<Resp, RaftError<NodeId, E>> = self
            .peers
            .call(&self.addr, rpc, req, ttl)
            .await
            .map_err(|e| match e {
                CallError::Unreachable(reason) => {
                    RPCError::Unreachable(Unreachable::new(&std::io::Error::other(reason)))
                }
                CallError::Timeout(timeout) => RPCError::Timeout(Timeout {
                    action,
                    id: self.id,
                    target: self.target,
                    timeout,
                }),
                CallError::Protocol(reason) => {
                    RPCError::Network(NetworkError::new(&std::io::Error::other(reason)))
                }
            })?;
        reply.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        self.raft_call(Rpc::AppendEntries, RPCTypes::AppendEntries, &rpc, &option)
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, NodeInfo, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.raft_call(
            Rpc::InstallSnapshot,
            RPCTypes::InstallSnapshot,
            &rpc,
            &option,
        )
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, NodeInfo, RaftError<NodeId>>> {
        self.raft_call(Rpc::Vote, RPCTypes::Vote, &rpc, &option)
            .await
    }
}
