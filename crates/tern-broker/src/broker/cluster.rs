//! The broker as a node of a cluster: what it tells the others (its
//! routes, retained messages, which clients it owns) through Raft, what
//! it applies when they change, and the messages and sessions it sends to
//! and receives from other nodes.
//!
//! - **Routes.** The router holds this node's sessions under their own
//!   keys and every other node under one key per node ([`remote_key`]),
//!   subscribed to the filters that node announced. A node announces a
//!   filter when its first local subscription to it appears and withdraws
//!   it when the last one goes (`ClusterLink::routes` counts them), so
//!   the replicated route table grows with distinct filters, not with
//!   subscriptions. A SUBACK waits until the announcement is committed.
//! - **Publishing.** One match finds local sessions and other nodes; each
//!   other node receives the message once, marked for its non-shared
//!   subscribers and for the shared groups whose choice fell on it. A
//!   QoS 1/2 publisher is acknowledged once every such node has queued
//!   the message as durably as its store promises.
//! - **Retained messages** go through Raft; every node applies them to
//!   its own index. A new subscription first waits for a read barrier, so
//!   a retained message acknowledged on any node is seen on every node.
//! - **Ownership.** A client id belongs to one node at a time, decided
//!   through Raft (`ClaimClient`). A CONNECT for a client owned elsewhere
//!   takes its session over (module `handover` of the forwarder): the old
//!   node ends the connection (MQTT 5 reason 0x8E), hands the session
//!   over, then hands over what was queued meanwhile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use tern_cluster::forward::{Delivery, Forwarder, Handover, HandoverStep};
use tern_cluster::{Change, ClusterState, Command, NodeId, RaftNode};
use tern_codec::{ByteString, QoS, RetainHandling, SubscriptionOptions, TopicFilter};
use tern_router::Matches;
use tern_session::store::transfer;
use tern_session::{Message, Op, Pending, Session, StoreError};

use super::registry::{Attachment, SessionCell, SessionKey};
use super::{Broker, wall_clock};

/// The high bit marks a router key that stands for another node.
const REMOTE: SessionKey = 1 << 63;

/// The router key of node `node`'s routes.
pub(crate) fn remote_key(node: NodeId) -> SessionKey {
    REMOTE | node
}

/// The node a router key stands for, if it is not a local session.
pub(crate) fn remote_node(key: SessionKey) -> Option<NodeId> {
    (key & REMOTE != 0).then_some(key & !REMOTE)
}

/// Subscribes node `node`'s router key to `filters` (route table entries,
/// valid filters by construction; an invalid one is skipped).
fn subscribe_remote<'a>(
    trie: &mut tern_router::SubscriptionTrie<SessionKey>,
    node: NodeId,
    filters: impl IntoIterator<Item = &'a String>,
) {
    for filter in filters {
        if let Ok(filter) = TopicFilter::new(filter.as_str()) {
            trie.subscribe(remote_key(node), &filter, ROUTE_OPTIONS, None);
        }
    }
}

/// The options of another node's route: the highest QoS, RETAIN as
/// published; the other node applies its own subscriptions' options.
const ROUTE_OPTIONS: SubscriptionOptions = SubscriptionOptions {
    qos: QoS::ExactlyOnce,
    no_local: false,
    retain_as_published: true,
    retain_handling: RetainHandling::DoNotSend,
};

/// What the broker needs of the cluster; see the module docs.
pub(crate) struct ClusterLink {
    /// This node.
    pub me: NodeId,
    /// The Raft member.
    pub raft: RaftNode,
    /// Links to the other nodes.
    pub forwarder: Forwarder,
    /// Local subscriptions per filter (shared ones as `$share/g/f`): the
    /// routes this node announces are the keys.
    routes: Mutex<HashMap<String, usize>>,
    /// Sessions being handed over to another node, with the sequence
    /// number of the last message handed over in the first step.
    handovers: Mutex<HashMap<ByteString, u64>>,
}

impl std::fmt::Debug for ClusterLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterLink")
            .field("me", &self.me)
            .finish_non_exhaustive()
    }
}

/// What forwarding one message did.
#[derive(Debug, Default)]
pub(crate) struct Forwarded {
    /// How many nodes it was sent to.
    pub nodes: usize,
    /// Their acknowledgements, for a QoS 1/2 publisher to wait for.
    pub pendings: Vec<Pending<()>>,
}

/// Waits for a route announcement to be committed, before a SUBACK.
pub(crate) type RouteCommit = BoxFuture<'static, ()>;

impl ClusterLink {
    /// A link for node `me`.
    pub(crate) fn new(me: NodeId, raft: RaftNode, forwarder: Forwarder) -> Self {
        Self {
            me,
            raft,
            forwarder,
            routes: Mutex::new(HashMap::new()),
            handovers: Mutex::new(HashMap::new()),
        }
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, HashMap<String, usize>> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Submits `command`; a failure is logged, as nobody waits for it.
    fn submit_logged(&self, command: Command, what: &'static str) -> RouteCommit {
        let submitted = self.raft.submit(command);
        async move {
            if let Err(error) = submitted.await {
                tracing::warn!(%error, what, "a cluster update failed");
            }
        }
        .boxed()
    }
}

fn subscription_filter(filter: &TopicFilter) -> String {
    filter.to_string()
}

impl Broker {
    /// The cluster link, when this broker is a cluster node.
    pub(crate) fn cluster(&self) -> Option<&Arc<ClusterLink>> {
        self.cluster.get()
    }

    /// Subscribes local session `key` to `filter`; in a cluster, returns
    /// the announcement of a filter new to this node, to await before the
    /// SUBACK.
    pub(crate) fn subscribe_local(
        &self,
        key: SessionKey,
        filter: &TopicFilter,
        options: SubscriptionOptions,
        identifier: Option<std::num::NonZeroU32>,
    ) -> Option<RouteCommit> {
        let outcome = self.router.subscribe(key, filter, options, identifier);
        let link = self.cluster()?;
        if !outcome.is_new() {
            return None;
        }
        let text = subscription_filter(filter);
        let mut routes = link.routes();
        let count = routes.entry(text.clone()).or_insert(0);
        *count += 1;
        if *count > 1 {
            return None;
        }
        let commit = link.submit_logged(
            Command::AddRoutes {
                node: link.me,
                filters: vec![text],
            },
            "route announcement",
        );
        if link.raft.is_ready() {
            Some(commit)
        } else {
            // No quorum (or still catching up): the SUBACK does not wait;
            // the route reaches the cluster when it can (reconciliation).
            tokio::spawn(commit);
            None
        }
    }

    /// Removes local session `key`'s subscription to `filter`.
    pub(crate) fn unsubscribe_local(&self, key: SessionKey, filter: &TopicFilter) -> bool {
        let removed = self.router.unsubscribe(key, filter);
        if removed && let Some(link) = self.cluster() {
            self.withdraw(link, vec![subscription_filter(filter)]);
        }
        removed
    }

    /// Removes every subscription of local session `key`.
    pub(crate) fn remove_local(&self, key: SessionKey) {
        let Some(link) = self.cluster() else {
            self.router.remove_subscriber(key);
            return;
        };
        let filters: Vec<String> = {
            let mut trie = self.router.write();
            let filters = trie
                .subscriptions_of(key)
                .into_iter()
                .map(|info| info.filter)
                .collect();
            trie.remove_subscriber(key);
            filters
        };
        self.withdraw(link, filters);
    }

    /// Counts down `filters`; those no local session uses any more are
    /// withdrawn from the route table.
    fn withdraw(&self, link: &ClusterLink, filters: Vec<String>) {
        let mut routes = link.routes();
        let mut gone = Vec::new();
        for filter in filters {
            if let Some(count) = routes.get_mut(&filter) {
                *count -= 1;
                if *count == 0 {
                    routes.remove(&filter);
                    gone.push(filter);
                }
            }
        }
        if !gone.is_empty() {
            let commit = link.submit_logged(
                Command::RemoveRoutes {
                    node: link.me,
                    filters: gone,
                },
                "route withdrawal",
            );
            tokio::spawn(commit);
        }
    }

    /// Joins the cluster's route table with this node's whole route set:
    /// at start, after the sessions in the store were loaded.
    pub(crate) async fn announce_all_routes(&self, link: &ClusterLink) {
        let filters: Vec<String> = {
            let mut counts: HashMap<String, usize> = HashMap::new();
            let trie = self.router.read();
            for cell in self.registry.cells() {
                for info in trie.subscriptions_of(cell.key) {
                    *counts.entry(info.filter).or_insert(0) += 1;
                }
            }
            let mut routes = link.routes();
            *routes = counts;
            routes.keys().cloned().collect()
        };
        let count = filters.len();
        let commit = link.submit_logged(
            Command::SetRoutes {
                node: link.me,
                filters,
            },
            "route table at start",
        );
        commit.await;
        tracing::info!(
            routes = count,
            "announced this node's routes to the cluster"
        );
    }

    /// Whether the replicated route table's entry for this node differs
    /// from the routes this node has.
    pub(crate) fn routes_differ(&self, link: &ClusterLink) -> bool {
        let routes = link.routes();
        link.raft.with_state(|state| {
            let replicated: std::collections::BTreeSet<&str> = state.routes_of(link.me).collect();
            replicated.len() != routes.len()
                || replicated
                    .iter()
                    .any(|filter| !routes.contains_key(*filter))
        })
    }

    /// Replaces this node's entry of the route table with the routes it
    /// has: heals an announcement that failed (no quorum at the time).
    pub(crate) async fn reconcile_routes(&self, link: &ClusterLink) {
        let (count, commit) = {
            let routes = link.routes();
            let filters: Vec<String> = routes.keys().cloned().collect();
            // Submitted under the lock, so after every announcement so far.
            let commit = link.raft.submit(Command::SetRoutes {
                node: link.me,
                filters,
            });
            (routes.len(), commit)
        };
        match commit.await {
            Ok(_) => tracing::info!(
                routes = count,
                "this node's routes were corrected in the cluster"
            ),
            Err(error) => tracing::debug!(%error, "route correction failed; will try again"),
        }
    }

    /// Sends `message` to the other nodes `matches` found; returns what a
    /// QoS 1/2 publisher must wait for.
    pub(crate) fn forward(
        &self,
        link: &ClusterLink,
        message: &Message,
        matches: &Matches<SessionKey>,
        groups: impl Fn(tern_router::SharedGroup) -> String,
    ) -> Forwarded {
        let mut targets: Vec<(NodeId, bool, Vec<String>)> = Vec::new();
        for recipient in matches.iter() {
            let Some(node) = remote_node(recipient.subscriber) else {
                continue;
            };
            let position = match targets.iter().position(|(target, ..)| *target == node) {
                Some(position) => position,
                None => {
                    targets.push((node, false, Vec::new()));
                    targets.len() - 1
                }
            };
            match recipient.group {
                Some(group) => targets[position].2.push(groups(group)),
                None => targets[position].1 = true,
            }
        }
        let nodes = targets.len();
        if targets.is_empty() {
            return Forwarded::default();
        }
        let bytes = match transfer::encode_message(message) {
            Ok(bytes) => Bytes::from(bytes),
            Err(error) => {
                tracing::error!(%error, "a message could not be encoded for other nodes");
                return Forwarded {
                    nodes,
                    pendings: vec![Pending::ready(Err(error))],
                };
            }
        };
        let wants_ack = message.publish().qos != QoS::AtMostOnce;
        let mut pendings = Vec::new();
        for (node, plain, groups) in targets {
            let delivery = Delivery {
                message: bytes.clone(),
                plain,
                groups,
            };
            let ack = wants_ack.then(|| {
                let (completer, pending) = Pending::completer();
                pendings.push(pending);
                Box::new(move |result: Result<(), String>| {
                    completer
                        .complete(result.map_err(|detail| StoreError::Remote { node, detail }));
                }) as tern_cluster::forward::AckCallback
            });
            link.forwarder.send(node, delivery, ack);
        }
        crate::metrics::add(&self.metrics.messages_forwarded, nodes as u64);
        Forwarded { nodes, pendings }
    }

    /// Queues a message another node forwarded for this node's sessions;
    /// the pendings complete once it is durable.
    pub(crate) fn deliver_forwarded(
        &self,
        message: Message,
        plain: bool,
        groups: &[String],
    ) -> Vec<Pending<()>> {
        super::routing::with_matches(|matches| {
            self.deliver_forwarded_matching(message, plain, groups, matches)
        })
    }

    fn deliver_forwarded_matching(
        &self,
        message: Message,
        plain: bool,
        groups: &[String],
        matches: &mut Matches<SessionKey>,
    ) -> Vec<Pending<()>> {
        let mut pendings = Vec::new();
        if message.is_expired(wall_clock()) {
            return pendings;
        }
        if plain {
            self.router.matches(message.topic(), None, matches);
            for recipient in matches.iter() {
                if recipient.shared || remote_node(recipient.subscriber).is_some() {
                    continue;
                }
                let Some(cell) = self.registry.by_key(recipient.subscriber) else {
                    continue;
                };
                let delivery = super::routing::delivery_for(&message, &recipient);
                pendings.extend(self.enqueue(&cell, std::iter::once(delivery)));
            }
        }
        for group in groups {
            let Ok(filter) = TopicFilter::new(group.as_str()) else {
                tracing::warn!(
                    group,
                    "another node named a shared group that is not a filter"
                );
                continue;
            };
            let chosen = self.router.read().choose_shared_member(
                &filter,
                |key| remote_node(key).is_none(),
                None,
            );
            let Some(member) = chosen else {
                continue;
            };
            let Some(cell) = self.registry.by_key(member.subscriber) else {
                continue;
            };
            let delivery = super::routing::delivery_for_member(&message, &member);
            pendings.extend(self.enqueue(&cell, std::iter::once(delivery)));
        }
        pendings
    }

    /// Stores or clears a retained message through Raft. The index
    /// changes when the entry is applied, on every node alike.
    pub(crate) fn retain_replicated(&self, link: &ClusterLink, message: &Message) -> Pending<()> {
        let topic = message.topic().to_owned();
        let bytes = if message.publish().payload.is_empty() {
            Bytes::new()
        } else {
            match transfer::encode_message(message) {
                Ok(bytes) => Bytes::from(bytes),
                Err(error) => return Pending::ready(Err(error)),
            }
        };
        let submitted = link.raft.submit(Command::SetRetained {
            topic,
            message: bytes,
        });
        let (completer, pending) = Pending::completer();
        let node = link.me;
        tokio::spawn(async move {
            let result = submitted
                .await
                .map(|_| ())
                .map_err(|error| StoreError::Remote {
                    node,
                    detail: error.to_string(),
                });
            completer.complete(result);
        });
        pending
    }

    /// Applies one change of the replicated state to this node.
    pub(crate) fn apply_change(&self, change: &Change) {
        let Some(me) = self.cluster_node_id() else {
            return;
        };
        match change {
            Change::RoutesAdded { node, filters } if *node != me => {
                self.remote_nodes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(*node);
                subscribe_remote(&mut self.router.write(), *node, filters);
            }
            Change::RoutesRemoved { node, filters } if *node != me => {
                let mut trie = self.router.write();
                for filter in filters {
                    if let Ok(filter) = TopicFilter::new(filter.as_str()) {
                        trie.unsubscribe(remote_key(*node), &filter);
                    }
                }
            }
            Change::Retained { topic, message } => self.apply_retained(topic, message),
            Change::Owner {
                client_id,
                owner,
                previous,
            } if *previous == Some(me) && owner.is_some_and(|node| node != me) => {
                // Another node claimed a client of ours: end its local
                // connection now, even if the handover call never comes.
                // (A release by this node itself, `owner: None`, must not:
                // the client may already have reconnected here.)
                self.end_connection_of(client_id);
            }
            _ => {}
        }
    }

    /// Rebuilds everything derived from the replicated state (at start,
    /// and when a snapshot replaces it).
    pub(crate) fn reset_from(&self, state: &ClusterState) {
        let Some(me) = self.cluster_node_id() else {
            return;
        };
        {
            let mut trie = self.router.write();
            let mut known = self
                .remote_nodes
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for node in known.drain() {
                trie.remove_subscriber(remote_key(node));
            }
            for (&node, filters) in state.routes() {
                if node == me {
                    continue;
                }
                known.insert(node);
                subscribe_remote(&mut trie, node, filters);
            }
        }
        // `$SYS` topics are local; they are published again within
        // `sys_interval`.
        *self.retained_index() = tern_router::RetainedIndex::new();
        for (topic, bytes) in state.retained() {
            self.apply_retained(topic, bytes);
        }
    }

    fn apply_retained(&self, topic: &str, bytes: &Bytes) {
        let mut index = self.retained_index();
        if bytes.is_empty() {
            index.remove(topic);
            return;
        }
        match transfer::decode_message(bytes) {
            Ok(message) => {
                index.insert(topic, Arc::new(message));
            }
            Err(error) => {
                tracing::error!(%error, topic, "a replicated retained message cannot be read");
            }
        }
    }

    fn cluster_node_id(&self) -> Option<NodeId> {
        self.config.cluster.as_ref().map(|cluster| cluster.node_id)
    }

    /// Asks the connection attached to `client_id`'s session, if any, to
    /// end (another node owns the client now).
    fn end_connection_of(&self, client_id: &str) {
        let Some(cell) = self.registry.by_client(client_id) else {
            return;
        };
        let wakes = Arc::clone(&self.parked_wakes);
        tokio::spawn(async move {
            let attached = cell.attachment.lock().await;
            if let Some(attachment) = attached.filter(|attachment| attachment.is_leased()) {
                cell.kick(attachment.connection_id(), &wakes);
            }
        });
    }

    /// Makes this node the owner of `client_id` and, if another node had
    /// it, brings its session here (before the local attach, which then
    /// resumes or discards it as the CONNECT asks).
    pub(crate) async fn claim_client(&self, link: &ClusterLink, client_id: &ByteString) {
        if !link.raft.is_ready() {
            // Without a quorum no claim can commit: serve the client here
            // rather than make it wait for a timeout.
            tracing::warn!(client_id = %client_id, "no cluster quorum: serving the client without recording its owner");
            return;
        }
        let claimed = link
            .raft
            .submit(Command::ClaimClient {
                client_id: client_id.to_string(),
                node: link.me,
            })
            .await;
        let previous = match claimed {
            Ok(tern_cluster::CommandResult::Claimed { previous }) => previous,
            Ok(other) => {
                tracing::warn!(?other, "unexpected answer to a client claim");
                None
            }
            Err(error) => {
                tracing::warn!(%error, client_id = %client_id, "cannot record this node as the client's owner; serving it anyway");
                None
            }
        };
        let Some(previous) = previous.filter(|node| *node != link.me) else {
            return;
        };
        if let Err(error) = self.take_session_from(link, previous, client_id).await {
            tracing::warn!(%error, client_id = %client_id, from = previous, "session handover failed; the client starts with what this node has");
        }
    }

    async fn take_session_from(
        &self,
        link: &ClusterLink,
        node: NodeId,
        client_id: &ByteString,
    ) -> Result<(), String> {
        let started = link
            .forwarder
            .handover(node, client_id, HandoverStep::Start)
            .await
            .map_err(|error| error.to_string())?;
        let Some(bundle) = started.session else {
            return Ok(());
        };
        let stored = transfer::decode_session(&bundle).map_err(|error| error.to_string())?;
        let now = wall_clock();
        let session = Session::restore(stored, self.limits, now);
        let (cell, stale) = self.registry.replace(session);
        if let Some(stale) = stale {
            let mut attached = stale.attachment.lock().await;
            if let Some(previous) = attached.take() {
                self.end_attachment(&stale, previous).await;
            }
            self.registry.remove(&stale);
            self.remove_local(stale.key);
        }
        let mut commits = Vec::new();
        {
            let mut session = cell.lock();
            let subscriptions: Vec<_> = session
                .subscriptions()
                .iter()
                .map(|(filter, subscription)| (filter.clone(), *subscription))
                .collect();
            for (filter, subscription) in subscriptions {
                commits.extend(self.subscribe_local(
                    cell.key,
                    &filter,
                    subscription.options,
                    subscription.identifier,
                ));
            }
            let mut ops = session.take_changes();
            if session.expiry().is_persistent() {
                ops.extend(session.snapshot_ops());
            }
            if let Some(pending) = self.submit(ops) {
                self.track_write(pending);
            }
        }
        // Routes first, so that from now on messages come here too...
        for commit in commits {
            commit.await;
        }
        // ...then what reached the old node meanwhile.
        let finished = link
            .forwarder
            .handover(node, client_id, HandoverStep::Finish)
            .await
            .map_err(|error| error.to_string())?;
        let mut messages = Vec::new();
        for bytes in finished.messages {
            messages.push(transfer::decode_message(&bytes).map_err(|error| error.to_string())?);
        }
        let count = messages.len();
        if let Some(pending) = self.enqueue(&cell, messages) {
            self.track_write(pending);
        }
        tracing::info!(client_id = %client_id, from = node, late_messages = count, "session taken over from another node");
        Ok(())
    }

    /// The old node's side of a handover; see the module docs.
    pub(crate) async fn hand_over(
        &self,
        client_id: &str,
        to: NodeId,
        step: HandoverStep,
    ) -> Result<Handover, String> {
        let Some(link) = self.cluster() else {
            return Err("this node is not in a cluster".into());
        };
        let Some(cell) = self.registry.by_client(client_id) else {
            return Ok(Handover::default());
        };
        let mut attached = cell.attachment.lock().await;
        if cell.is_removed() {
            return Ok(Handover::default());
        }
        match step {
            HandoverStep::Start => {
                if let Some(previous) = attached.take()
                    && previous.is_leased()
                {
                    self.end_attachment(&cell, previous).await;
                }
                *attached = Some(Attachment::HANDING_OVER);
                cell.set_attached(Attachment::HANDING_OVER.connection_id());
                let (bundle, mark) = {
                    let session = cell.lock();
                    let stored = transfer::stored_session(&session);
                    let mark = stored.queue.last().map_or(0, |queued| queued.seq);
                    (transfer::encode_session(&stored), mark)
                };
                let bundle = bundle.map_err(|error| error.to_string())?;
                link.handovers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(cell.client_id.clone(), mark);
                tracing::info!(client_id, to, "handing a session over to another node");
                Ok(Handover {
                    session: Some(Bytes::from(bundle)),
                    messages: Vec::new(),
                })
            }
            HandoverStep::Finish => {
                let mark = link
                    .handovers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&cell.client_id);
                let messages = match mark {
                    Some(mark) => {
                        let session = cell.lock();
                        session
                            .queue()
                            .iter()
                            .filter(|queued| queued.seq > mark)
                            .map(|queued| {
                                transfer::encode_message(&queued.message).map(Bytes::from)
                            })
                            .collect::<Result<Vec<_>, _>>()
                            .map_err(|error| error.to_string())?
                    }
                    None => Vec::new(),
                };
                *attached = None;
                cell.set_attached(0);
                self.forget_session(&cell);
                Ok(Handover {
                    session: None,
                    messages,
                })
            }
        }
    }

    /// Removes a session that moved to another node: from the registry,
    /// the router and the store, without publishing its will (it moved
    /// with the session).
    fn forget_session(&self, cell: &Arc<SessionCell>) {
        self.registry.remove(cell);
        self.remove_local(cell.key);
        let mut session = cell.lock();
        let mut ops = session.take_changes();
        if session.expiry().is_persistent() {
            ops.push(Op::RemoveSession(cell.client_id.clone()));
        }
        drop(session);
        if let Some(pending) = self.submit(ops) {
            self.track_write(pending);
        }
    }

    /// Records in the cluster what a store write changes of persistent
    /// sessions' records (subscriptions, expiry, will), so that another
    /// node can adopt them. Called with the session locked, in store order.
    pub(crate) fn replicate_session_records(&self, link: &ClusterLink, ops: &[Op]) {
        for op in ops {
            let (client_id, record) = match op {
                Op::PutSession(record) => match transfer::encode_record(record) {
                    Ok(bytes) => (record.client_id.to_string(), Bytes::from(bytes)),
                    Err(error) => {
                        tracing::error!(%error, "a session record could not be encoded for the cluster");
                        continue;
                    }
                },
                Op::RemoveSession(client_id) => (client_id.to_string(), Bytes::new()),
                _ => continue,
            };
            let commit = link.submit_logged(
                Command::SetSession {
                    client_id,
                    node: link.me,
                    record,
                },
                "session record",
            );
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(commit);
            }
        }
    }

    /// Tells the cluster this node no longer serves `client_id` (its
    /// session ended with its connection).
    pub(crate) fn release_client(&self, client_id: &ByteString) {
        if let Some(link) = self.cluster() {
            let commit = link.submit_logged(
                Command::ReleaseClient {
                    client_id: client_id.to_string(),
                    node: link.me,
                },
                "client release",
            );
            tokio::spawn(commit);
        }
    }
}
