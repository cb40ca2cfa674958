//! Starting a node's cluster membership: the Raft member (with the peer
//! service beside it on the cluster listener), the links to other nodes,
//! and the two ways the cluster reaches into the broker: applied changes
//! ([`StateObserver`]) and peer traffic ([`PeerHandler`]).
//!
//! Both hold the broker weakly: the Raft member outlives no broker, and a
//! broker being shut down is not kept alive by its own cluster tasks.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Weak};

use futures::FutureExt;
use futures::future::BoxFuture;
use tern_cluster::forward::{self, Delivery, Forwarder, Handover, HandoverStep, PeerHandler};
use tern_cluster::{
    Change, ClusterConfig, ClusterState, NodeId, NodeInfo, RaftNode, StateObserver,
};
use tern_session::store::transfer;

use tokio::sync::watch;

use crate::broker::cluster::ClusterLink;
use crate::broker::{Broker, stopped};
use crate::config::ClusterSettings;
use crate::error::BrokerError;
use crate::metrics::add;

struct Observer(Weak<Broker>);

impl StateObserver for Observer {
    fn applied(&self, change: &Change) {
        if let Some(broker) = self.0.upgrade() {
            broker.apply_change(change);
        }
    }

    fn reset(&self, state: &ClusterState) {
        if let Some(broker) = self.0.upgrade() {
            broker.reset_from(state);
        }
    }
}

struct Peers(Weak<Broker>);

impl PeerHandler for Peers {
    fn deliver(&self, _from: NodeId, delivery: Delivery) -> BoxFuture<'static, Result<(), String>> {
        let Some(broker) = self.0.upgrade() else {
            return futures::future::ready(Err("the node is shutting down".to_owned())).boxed();
        };
        let message = match transfer::decode_message(&delivery.message) {
            Ok(message) => message,
            Err(error) => return futures::future::ready(Err(error.to_string())).boxed(),
        };
        add(&broker.metrics.messages_from_peers, 1);
        let pendings = broker.deliver_forwarded(message, delivery.plain, &delivery.groups);
        async move {
            for pending in pendings {
                pending.await.map_err(|error| error.to_string())?;
            }
            Ok(())
        }
        .boxed()
    }

    fn handover(
        &self,
        client_id: String,
        to: NodeId,
        step: HandoverStep,
    ) -> BoxFuture<'static, Result<Handover, String>> {
        let broker = self.0.clone();
        async move {
            let Some(broker) = broker.upgrade() else {
                return Err("the node is shutting down".to_owned());
            };
            broker.hand_over(&client_id, to, step).await
        }
        .boxed()
    }
}

/// The address others should use for `bound`: the advertised host with
/// the bound port when `bound` is a wildcard address.
fn reachable(bound: SocketAddr, settings: &ClusterSettings) -> String {
    if !bound.ip().is_unspecified() {
        return bound.to_string();
    }
    let advertised = settings.advertised_address();
    let host = advertised
        .rsplit_once(':')
        .map_or(advertised.as_str(), |(host, _)| host);
    format!("{host}:{}", bound.port())
}

/// Starts `broker`'s cluster membership.
pub(crate) async fn start(
    broker: &Arc<Broker>,
    settings: &ClusterSettings,
    data_dir: &Path,
    mqtt: SocketAddr,
    admin: Option<SocketAddr>,
    shutdown: watch::Receiver<bool>,
) -> Result<Arc<ClusterLink>, BrokerError> {
    let info = NodeInfo {
        cluster_addr: settings.advertised_address(),
        mqtt_addr: reachable(mqtt, settings),
        admin_addr: admin
            .map(|admin| reachable(admin, settings))
            .unwrap_or_default(),
    };
    let mut config = ClusterConfig::new(
        settings.node_id,
        settings.cluster_listen,
        data_dir.join("raft"),
    );
    config.info = info;
    config.bootstrap = settings.bootstrap;
    config.join.clone_from(&settings.join);
    config.voters = settings.voters;
    let observer = Arc::new(Observer(Arc::downgrade(broker)));
    let peers = forward::service(Arc::new(Peers(Arc::downgrade(broker))), shutdown);
    let raft = RaftNode::start(config, observer, peers)
        .await
        .map_err(|error| BrokerError::Cluster(error.to_string()))?;
    let resolver = {
        let raft = raft.clone();
        Arc::new(move |node: NodeId| raft.node_info(node).map(|info| info.cluster_addr))
    };
    let forwarder = Forwarder::new(settings.node_id, resolver);
    let link = Arc::new(ClusterLink::new(settings.node_id, raft, forwarder));
    if broker.cluster.set(Arc::clone(&link)).is_err() {
        return Err(BrokerError::Cluster("the cluster was started twice".into()));
    }
    let announcer = Arc::clone(broker);
    let announced = Arc::clone(&link);
    tokio::spawn(async move { announcer.announce_all_routes(&announced).await });
    Ok(link)
}

/// How often a node checks that the route table holds its routes.
const RECONCILE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3);

/// Keeps this node's entry of the route table right (see
/// `Broker::reconcile_routes`): a difference seen twice in a row (not an
/// announcement still in flight) is corrected.
pub(crate) async fn reconcile(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let Some(link) = broker.cluster().cloned() else {
        return;
    };
    let mut suspicious = false;
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => return,
            () = tokio::time::sleep(RECONCILE_INTERVAL) => {}
        }
        if !link.raft.is_ready() {
            continue;
        }
        let differs = broker.routes_differ(&link);
        if differs && suspicious {
            broker.reconcile_routes(&link).await;
            suspicious = false;
        } else {
            suspicious = differs;
        }
    }
}
