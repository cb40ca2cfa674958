//! The `extra` routes of `RaftNode::start` are served on the cluster listener next
//! to the Raft service (the broker adds its message-forwarding service there).

mod common;

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::time::Duration;

use common::*;
use tern_cluster::{NoObserver, RaftNode};
use tonic::codegen::http::{self, uri::PathAndQuery};
use tonic::codegen::{Context, Poll, Service};

/// A minimal gRPC service that answers every call with a recognisable status.
#[derive(Clone)]
struct Hello;

impl tonic::server::NamedService for Hello {
    const NAME: &'static str = "tern.test.Hello";
}

impl Service<http::Request<tonic::body::Body>> for Hello {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: http::Request<tonic::body::Body>) -> Self::Future {
        let status = tonic::Status::not_found("hello from the extra service");
        ready(Ok(status.into_http()))
    }
}

async fn call(addr: std::net::SocketAddr, path: &'static str) -> Result<(), tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<(), ()>::default();
    grpc.unary(
        tonic::Request::new(()),
        PathAndQuery::from_static(path),
        codec,
    )
    .await
    .map(drop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extra_services_share_the_cluster_listener() {
    bounded(Duration::from_secs(30), async {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = config(1, tmp.path());
        c.bootstrap = true;
        let routes = tonic::service::Routes::new(Hello);
        let node = RaftNode::start(c, std::sync::Arc::new(NoObserver), routes)
            .await
            .unwrap();
        node.wait_ready(Duration::from_secs(10)).await.unwrap();

        let status = call(node.cluster_addr(), "/tern.test.Hello/Ping")
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(status.message(), "hello from the extra service");
        let status = call(node.cluster_addr(), "/tern.test.Nobody/Ping")
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        // The Raft service answers on the same listener (an empty request is an
        // empty payload; the reply's fields are skipped by the unit decoder).
        call(node.cluster_addr(), "/tern.raft.Raft/NodeStatus")
            .await
            .unwrap();
        node.shutdown().await.unwrap();
    })
    .await;
}
