//! The server side of proto/raft.proto: decodes each request, hands it to openraft
//! or to the leader logic, and encodes the reply. gRPC errors are only for calls
//! that could not be understood; everything else is an encoded reply.

use std::net::SocketAddr;
use std::sync::Arc;

use openraft::raft::{AppendEntriesRequest, InstallSnapshotRequest, VoteRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::{Request, Response, Status};

use crate::raft::codec;
use crate::raft::leader::LeaderRequest;
use crate::raft::node::Inner;
use crate::raft::pb::Payload;
use crate::raft::pb::raft_server::{Raft, RaftServer};
use crate::raft::transport::MAX_MESSAGE_BYTES;
use crate::raft::{NodeId, TypeConfig};

/// The gRPC service of one node.
pub(crate) struct RaftService {
    inner: Arc<Inner>,
}

fn decode<T: DeserializeOwned>(request: Request<Payload>) -> Result<T, Status> {
    codec::decode(&request.into_inner().data).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn reply<T: Serialize>(value: &T) -> Result<Response<Payload>, Status> {
    let data = codec::encode(value).map_err(|e| Status::internal(e.to_string()))?;
    Ok(Response::new(Payload { data: data.into() }))
}

#[tonic::async_trait]
impl Raft for RaftService {
    async fn append_entries(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> = decode(request)?;
        reply(&self.inner.raft.append_entries(rpc).await)
    }

    async fn vote(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let rpc: VoteRequest<NodeId> = decode(request)?;
        reply(&self.inner.raft.vote(rpc).await)
    }

    async fn install_snapshot(
        &self,
        request: Request<Payload>,
    ) -> Result<Response<Payload>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> = decode(request)?;
        reply(&self.inner.raft.install_snapshot(rpc).await)
    }

    async fn propose(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        self.leader_only(request).await
    }

    async fn read_index(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        self.leader_only(request).await
    }

    async fn join(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        // A joining node knows no leader: the seed forwards.
        let request: LeaderRequest = decode(request)?;
        if !matches!(request, LeaderRequest::Join { .. }) {
            return Err(Status::invalid_argument("Join expects a join request"));
        }
        reply(
            &self
                .inner
                .ask_leader(request)
                .await
                .map_err(crate::error::RemoteError::from),
        )
    }

    async fn leave(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        self.leader_only(request).await
    }

    async fn node_status(&self, _request: Request<Payload>) -> Result<Response<Payload>, Status> {
        reply(&self.inner.status())
    }

    async fn transfer_leader(
        &self,
        request: Request<Payload>,
    ) -> Result<Response<Payload>, Status> {
        self.leader_only(request).await
    }
}

impl RaftService {
    async fn leader_only(&self, request: Request<Payload>) -> Result<Response<Payload>, Status> {
        let request: LeaderRequest = decode(request)?;
        if matches!(request, LeaderRequest::Join { .. }) {
            return Err(Status::invalid_argument("a join request goes to Join"));
        }
        reply(&self.inner.serve_as_leader(request).await)
    }
}

/// Serves the cluster service plus `extra` on `listener` until `cancel` turns true.
pub(crate) async fn serve(
    listener: TcpListener,
    inner: Arc<Inner>,
    extra: Routes,
    mut cancel: watch::Receiver<bool>,
) -> Result<(), tonic::transport::Error> {
    let local: Option<SocketAddr> = listener.local_addr().ok();
    let service = RaftServer::new(RaftService { inner })
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tracing::debug!(?local, "cluster gRPC listening");
    Server::builder()
        .add_routes(extra)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = cancel.wait_for(|stop| *stop).await;
        })
        .await
}
