//! [`Broker`]: the state every connection shares, and who owns each part.
//!
//! | state | owner | shared as |
//! | --- | --- | --- |
//! | subscriptions of every session | `router` (tern-router) | its own `RwLock`; written by the session's connection task, read by every publisher |
//! | sessions | `registry` ([`registry::SessionCell`]s) | one `Mutex<Session>` per session, held for short synchronous sections |
//! | retained messages | `retained` | an `RwLock`; writes also submit the store operation under it, so the store sees them in order |
//! | when disconnected sessions owe a will or expire | `deadlines` | a `Mutex`, drained by the housekeeping task |
//! | durable copies | `store` (chosen once at start-up) | its own synchronisation |
//! | counters | `metrics` | relaxed atomics |
//! | users, ACL and policy | `auth` ([`auth::SharedAuthorizer`]) | an `Arc` swapped whole on reload; connections notice by a generation number |
//!
//! The submodules hold the operations: `sessions` (attach, take over,
//! detach, expire), `routing` (publish to subscribers and the retained
//! index) and `sys` (the `$SYS` topics).

pub(crate) mod auth;
pub(crate) mod cluster;
pub(crate) mod registry;
pub(crate) mod routing;
pub(crate) mod sessions;
pub(crate) mod sys;

use std::collections::{BTreeSet, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Instant, SystemTime};

use futures::FutureExt;
use tern_router::{RetainedIndex, Router, RouterConfig};
use tern_session::{Message, Pending, Session, SessionLimits, SessionStore, StoreError, Timestamp};
use tokio::sync::{Notify, Semaphore};

use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::metrics::Metrics;
use crate::protocol::ProtocolSettings;
use crate::server::throttle::TokenBucket;
use crate::store::Store;
use registry::{ParkedWakes, Registry, SessionKey};

/// The wall clock, for session, will and message expiry. Only the runtime
/// reads it; the protocol is given the time.
pub(crate) fn wall_clock() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// Logs a failed store write that nobody waits for.
pub(crate) fn log_write(result: Result<(), StoreError>) {
    if let Err(error) = result {
        tracing::error!(%error, "session store write failed");
    }
}

/// Completes once `shutdown` says stop (or its sender is gone). Cancel-safe.
pub(crate) async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    // The guard `wait_for` returns is not `Send`: drop it here.
    let _stop = shutdown.wait_for(|stop| *stop).await.is_ok();
}

/// The state shared by every task of one broker; see the module docs.
#[derive(Debug)]
pub(crate) struct Broker {
    pub config: BrokerConfig,
    pub settings: Arc<ProtocolSettings>,
    pub limits: SessionLimits,
    pub router: Router<SessionKey>,
    pub registry: Registry,
    pub retained: RwLock<RetainedIndex<Arc<Message>>>,
    pub store: Store,
    pub metrics: Metrics,
    /// One permit per open connection when `max_connections` is set.
    pub connection_slots: Option<Arc<Semaphore>>,
    /// The users, ACL and policy in force.
    pub auth: auth::SharedAuthorizer,
    /// New connections allowed per second when `max_connection_rate` is set.
    pub connection_rate: Option<Mutex<TokenBucket>>,
    pub started: Instant,
    next_connection_id: AtomicU64,
    deadlines: Mutex<BTreeSet<(Timestamp, SessionKey)>>,
    /// Wakes the housekeeping task when an earlier deadline is scheduled.
    pub housekeeping_wake: Notify,
    /// Store writes nobody waits for, kept until complete so that a
    /// failure is logged: reaped by housekeeping, awaited at shutdown.
    untracked_writes: Mutex<Vec<Pending<()>>>,
    /// Set once when the broker is a cluster node (after start-up).
    pub cluster: OnceLock<Arc<cluster::ClusterLink>>,
    /// The other nodes whose routes are in the router.
    pub remote_nodes: Mutex<HashSet<tern_cluster::NodeId>>,
    /// Parked connections to resume (`server::parking`).
    pub parked_wakes: Arc<ParkedWakes>,
}

impl Broker {
    /// Opens the store and loads what it holds: sessions (subscriptions
    /// back into the router, queued and in-flight messages kept) and
    /// retained messages. Blocking: call it off the async worker threads.
    pub(crate) fn open(config: BrokerConfig) -> Result<Self, BrokerError> {
        let authorizer = tern_auth::Authorizer::new(config.auth_settings())?;
        let store = Store::open(&config)?;
        let now = wall_clock();
        // Assigned client identifiers must not collide with those of an
        // earlier run, whose persistent sessions may be stored.
        let prefix = format!("tern-{:x}-", now.as_millis());
        let connection_slots = config
            .connection_limit()
            .map(|limit| Arc::new(Semaphore::new(limit.min(Semaphore::MAX_PERMITS))));
        let connection_rate = (config.max_connection_rate > 0)
            .then(|| Mutex::new(TokenBucket::new(config.max_connection_rate, Instant::now())));
        let broker = Self {
            settings: Arc::new(ProtocolSettings::new(&config, prefix)),
            limits: SessionLimits {
                max_queued_messages: config.max_queued_messages.max(1),
                max_inflight_messages: config.max_inflight_messages.max(1),
            },
            config,
            router: Router::new(RouterConfig::default()),
            registry: Registry::default(),
            retained: RwLock::new(RetainedIndex::new()),
            store,
            metrics: Metrics::default(),
            connection_slots,
            auth: auth::SharedAuthorizer::new(authorizer),
            connection_rate,
            started: Instant::now(),
            next_connection_id: AtomicU64::new(1),
            deadlines: Mutex::new(BTreeSet::new()),
            housekeeping_wake: Notify::new(),
            untracked_writes: Mutex::new(Vec::new()),
            cluster: OnceLock::new(),
            remote_nodes: Mutex::new(HashSet::new()),
            parked_wakes: Arc::default(),
        };
        broker.load(now)?;
        Ok(broker)
    }

    fn load(&self, now: Timestamp) -> Result<(), StoreError> {
        let mut retained = self.retained_index();
        for message in self.store.retained()? {
            if !message.is_expired(now) {
                let topic = message.topic().to_owned();
                retained.insert(&topic, Arc::new(message));
            }
        }
        drop(retained);
        let mut sessions = 0;
        for client_id in self.store.client_ids()? {
            let Some(stored) = self.store.load_session(&client_id)? else {
                continue;
            };
            let session = Session::restore(stored, self.limits, now);
            let cell = self.registry.insert(session);
            let mut session = cell.lock();
            for (filter, subscription) in session.subscriptions() {
                self.router.subscribe(
                    cell.key,
                    filter,
                    subscription.options,
                    subscription.identifier,
                );
            }
            // Due wills and expired sessions are handled by housekeeping.
            if let Some(at) = sessions::next_deadline(&session) {
                self.schedule(cell.key, at);
            }
            let changes = session.take_changes();
            if !changes.is_empty() {
                self.store.write(changes).wait()?;
            }
            sessions += 1;
        }
        tracing::info!(
            sessions,
            retained = self.retained_index().len(),
            "loaded the session store"
        );
        Ok(())
    }

    /// A fresh connection number.
    pub(crate) fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }

    /// The retained index for writing. Poison is ignored, as for sessions.
    pub(crate) fn retained_index(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, RetainedIndex<Arc<Message>>> {
        self.retained
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks housekeeping to look at session `key` at `at`.
    pub(crate) fn schedule(&self, key: SessionKey, at: Timestamp) {
        let mut deadlines = self
            .deadlines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let earliest = deadlines.first().is_none_or(|(first, _)| at < *first);
        deadlines.insert((at, key));
        drop(deadlines);
        if earliest {
            self.housekeeping_wake.notify_one();
        }
    }

    /// Removes and returns the sessions due at `now`.
    pub(crate) fn take_due(&self, now: Timestamp) -> Vec<SessionKey> {
        let mut deadlines = self
            .deadlines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut due = Vec::new();
        while let Some(&(at, key)) = deadlines.first() {
            if at > now {
                break;
            }
            deadlines.pop_first();
            due.push(key);
        }
        due
    }

    /// Keeps a store write nobody waits for until it completes.
    pub(crate) fn track_write(&self, mut pending: Pending<()>) {
        match (&mut pending).now_or_never() {
            Some(result) => log_write(result),
            None => self
                .untracked_writes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(pending),
        }
    }

    /// Forgets the tracked writes that completed, logging failures.
    pub(crate) fn reap_writes(&self) {
        let mut writes = self
            .untracked_writes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        writes.retain_mut(|pending| match pending.now_or_never() {
            Some(result) => {
                log_write(result);
                false
            }
            None => true,
        });
    }

    /// Waits for every tracked write (at shutdown).
    pub(crate) async fn finish_writes(&self) {
        let writes = std::mem::take(
            &mut *self
                .untracked_writes
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for pending in writes {
            log_write(pending.await);
        }
    }

    /// The earliest scheduled deadline.
    pub(crate) fn next_scheduled(&self) -> Option<Timestamp> {
        let deadlines = self
            .deadlines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        deadlines.first().map(|(at, _)| *at)
    }
}
