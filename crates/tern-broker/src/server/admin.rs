//! The admin API: HTTP with JSON bodies, for operators (`tern cluster`),
//! load balancers and Kubernetes probes.
//!
//! | method and path | answer |
//! | --- | --- |
//! | `GET /healthz` | 200 while the process serves |
//! | `GET /readyz` | 200 when the node can serve clients (in a cluster: a leader is known, this node has applied what it committed, and if it leads, a majority has answered it within three election timeouts), 503 otherwise |
//! | `GET /cluster/status` | the leader, term, members and each member's applied index |
//! | `GET /cluster/sessions` | the persistent sessions the cluster knows, by client id: the node that hosts each (this node's replica of the registry) |
//! | `POST /cluster/join` `{"node_id", "cluster_addr", "mqtt_addr", "admin_addr"}` | adds a node (learner, then voter while voters are short) |
//! | `POST /cluster/leave` `{"node_id"}` | removes a node |
//! | `POST /cluster/transfer-leader` `{"node_id"}` | moves leadership to a voter |
//!
//! Errors come back as `{"error": "..."}` with a 4xx or 5xx status.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use tern_cluster::{NodeId, NodeInfo};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::{Broker, stopped};

type Shared = Arc<Broker>;

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": message.into() }))).into_response()
}

fn not_clustered() -> Response {
    error(
        StatusCode::CONFLICT,
        "this node runs alone, not in a cluster: start it with --node-id, --cluster-listen and \
         --bootstrap or --join",
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(broker): State<Shared>) -> Response {
    match broker.cluster() {
        None => (StatusCode::OK, "ready\n").into_response(),
        Some(link) if link.raft.is_ready() => (StatusCode::OK, "ready\n").into_response(),
        Some(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no leader is known or this node is catching up with the cluster's log",
        ),
    }
}

async fn status(State(broker): State<Shared>) -> Response {
    match broker.cluster() {
        None => not_clustered(),
        Some(link) => Json(link.raft.cluster_status().await).into_response(),
    }
}

async fn sessions(State(broker): State<Shared>) -> Response {
    match broker.cluster() {
        None => not_clustered(),
        Some(link) => {
            let sessions: std::collections::BTreeMap<String, NodeId> =
                link.raft.with_state(|state| {
                    state
                        .sessions()
                        .iter()
                        .map(|(client_id, (node, _))| (client_id.clone(), *node))
                        .collect()
                });
            Json(serde_json::json!({ "sessions": sessions })).into_response()
        }
    }
}

#[derive(Debug, Deserialize)]
struct Join {
    node_id: NodeId,
    cluster_addr: String,
    #[serde(default)]
    mqtt_addr: String,
    #[serde(default)]
    admin_addr: String,
}

async fn join(State(broker): State<Shared>, Json(request): Json<Join>) -> Response {
    let Some(link) = broker.cluster() else {
        return not_clustered();
    };
    let info = NodeInfo {
        cluster_addr: request.cluster_addr,
        mqtt_addr: request.mqtt_addr,
        admin_addr: request.admin_addr,
    };
    match link.raft.add_node(request.node_id, info).await {
        Ok(()) => Json(serde_json::json!({ "joined": request.node_id })).into_response(),
        Err(failure) => error(StatusCode::BAD_GATEWAY, failure.to_string()),
    }
}

#[derive(Debug, Deserialize)]
struct Node {
    node_id: NodeId,
}

async fn leave(State(broker): State<Shared>, Json(request): Json<Node>) -> Response {
    let Some(link) = broker.cluster() else {
        return not_clustered();
    };
    match link.raft.remove_node(request.node_id).await {
        Ok(()) => {
            link.forwarder.forget(request.node_id);
            Json(serde_json::json!({ "left": request.node_id })).into_response()
        }
        Err(failure) => error(StatusCode::BAD_GATEWAY, failure.to_string()),
    }
}

async fn transfer_leader(State(broker): State<Shared>, Json(request): Json<Node>) -> Response {
    let Some(link) = broker.cluster() else {
        return not_clustered();
    };
    match link.raft.transfer_leader(request.node_id).await {
        Ok(()) => Json(serde_json::json!({ "leader": request.node_id })).into_response(),
        Err(failure) => error(StatusCode::BAD_GATEWAY, failure.to_string()),
    }
}

/// Serves the admin API on `listener` until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/cluster/status", get(status))
        .route("/cluster/sessions", get(sessions))
        .route("/cluster/join", post(join))
        .route("/cluster/leave", post(leave))
        .route("/cluster/transfer-leader", post(transfer_leader))
        .with_state(broker);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stopped(&mut shutdown).await })
        .await;
    if let Err(failure) = served {
        tracing::error!(error = %failure, "the admin API stopped");
    }
}
