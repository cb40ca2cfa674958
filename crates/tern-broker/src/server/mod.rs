//! [`Server`]: a running broker, and the tasks it owns.
//!
//! Task tree, each with its owner, cancel signal and join point:
//!
//! ```text
//! Server (owns the shutdown watch channel)
//!  ├─ accept loop, one per listener    joined by Server::shutdown
//!  │    └─ connection tasks            joined by their accept loop
//!  ├─ parking lot (idle connections)   joined by Server::shutdown
//!  │    └─ resumed connection tasks    joined by the lot
//!  ├─ housekeeping (wills, expiry)     joined by Server::shutdown
//!  ├─ idle pollers, one per worker     joined by Server::shutdown
//!  └─ $SYS publisher (if enabled)      joined by Server::shutdown
//! ```
//!
//! Every task watches the same `watch::Receiver<bool>`. On shutdown the
//! accept loops stop accepting and wait for their connections, the
//! parking lot resumes its connections and waits for them; each
//! connection sends MQTT 5 clients DISCONNECT 0x8B, records its session
//! as disconnected and ends. Then the store is flushed and closed.
//!
//! Each listener's transport (PROXY protocol, TLS, WebSocket) is set up in
//! `transport` before the connection task starts; [`Server::reload_tls`]
//! re-reads the certificates of the TLS listeners without touching
//! established connections.

mod acks;
mod admin;
mod auth;
mod cluster;
mod connection;
mod idle_poll;
mod listener;
mod parking;
pub(crate) mod throttle;
mod transport;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tern_session::SessionStore;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::broker::{Broker, sessions, sys};
use crate::config::BrokerConfig;
use crate::error::BrokerError;
use crate::metrics::MetricsSnapshot;
use transport::Listener;
pub use transport::tls::TlsError;

/// How long shutdown waits for the cluster member (Raft, its gRPC server).
const CLUSTER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running broker. Stop it with [`Server::shutdown`]; dropping it
/// without leaves its tasks running until the runtime ends.
#[derive(Debug)]
pub struct Server {
    broker: Arc<Broker>,
    local_addrs: Vec<SocketAddr>,
    listeners: Vec<(Arc<Listener>, SocketAddr)>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Server {
    /// Validates `config`, binds its listeners, opens the session store
    /// (loading stored sessions and retained messages) and starts serving.
    /// Call it inside a tokio runtime with the `net`, `time` and `rt`
    /// features.
    pub async fn start(config: BrokerConfig) -> Result<Self, BrokerError> {
        config.validate()?;
        let mut specs: Vec<(SocketAddr, Listener)> = config
            .listeners
            .iter()
            .map(|&address| (address, Listener::plain(address)))
            .collect();
        for table in &config.listener {
            let listener = Listener::from_config(table).map_err(|source| BrokerError::Tls {
                listener: table.display_name(),
                source,
            })?;
            specs.push((table.bind, listener));
        }
        let mut listeners = Vec::with_capacity(specs.len());
        for (address, spec) in specs {
            let socket = TcpListener::bind(address)
                .await
                .map_err(|source| BrokerError::Bind { address, source })?;
            listeners.push((address, socket, Arc::new(spec)));
        }
        let broker = tokio::task::spawn_blocking(move || Broker::open(config))
            .await
            .map_err(|error| BrokerError::Task {
                task: "store opening",
                detail: error.to_string(),
            })??;
        let broker = Arc::new(broker);
        let (shutdown, signal) = watch::channel(false);
        let mut tasks = Vec::new();
        let admin = match broker.config.admin_listen {
            None => None,
            Some(address) => {
                let listener = TcpListener::bind(address)
                    .await
                    .map_err(|source| BrokerError::Admin { address, source })?;
                let bound = listener
                    .local_addr()
                    .map_err(|source| BrokerError::Admin { address, source })?;
                let task = admin::serve(listener, Arc::clone(&broker), signal.clone());
                tasks.push(("admin API", tokio::spawn(task)));
                tracing::info!(address = %bound, "admin API listening");
                Some(bound)
            }
        };
        if let (Some(settings), Some(data_dir)) = (
            broker.config.cluster.clone(),
            broker.config.data_dir.clone(),
        ) {
            let mqtt = listeners
                .first()
                .and_then(|(_, socket, _)| socket.local_addr().ok())
                .unwrap_or(settings.cluster_listen);
            cluster::start(&broker, &settings, &data_dir, mqtt, admin, signal.clone()).await?;
            let reconcile = cluster::reconcile(Arc::clone(&broker), signal.clone());
            tasks.push(("route reconciliation", tokio::spawn(reconcile)));
        }
        let lot = if broker.config.park_idle_after_ms == 0 {
            None
        } else {
            let after = Duration::from_millis(broker.config.park_idle_after_ms.into());
            match parking::ParkingLot::new(Arc::clone(&broker), after, signal.clone()) {
                Ok((lot, poll)) => {
                    tasks.push(("parking lot", tokio::spawn(Arc::clone(&lot).run(poll))));
                    Some(lot)
                }
                Err(error) => {
                    tracing::error!(%error, "no poller for idle connections: they will not be parked");
                    None
                }
            }
        };
        let mut local_addrs = Vec::with_capacity(listeners.len());
        let mut bound = Vec::with_capacity(listeners.len());
        for (address, socket, spec) in listeners {
            let local = socket
                .local_addr()
                .map_err(|source| BrokerError::Bind { address, source })?;
            local_addrs.push(local);
            bound.push((Arc::clone(&spec), local));
            let task = listener::accept_loop(
                socket,
                spec,
                Arc::clone(&broker),
                signal.clone(),
                lot.clone(),
            );
            tasks.push(("listener", tokio::spawn(task)));
        }
        let housekeeping = sessions::housekeeping(Arc::clone(&broker), signal.clone());
        tasks.push(("housekeeping", tokio::spawn(housekeeping)));
        if broker.config.idle_poll_us > 0 {
            let window = Duration::from_micros(broker.config.idle_poll_us.into());
            let workers = tokio::runtime::Handle::current().metrics().num_workers();
            for _ in 0..workers {
                let poller = idle_poll::run(Arc::clone(&broker), window, signal.clone());
                tasks.push(("idle poller", tokio::spawn(poller)));
            }
        }
        if broker.config.sys_interval > 0 {
            let interval = Duration::from_secs(broker.config.sys_interval);
            let publisher = sys::sys_task(Arc::clone(&broker), interval, signal);
            tasks.push(("$SYS publisher", tokio::spawn(publisher)));
        }
        tracing::info!(addresses = ?local_addrs, "broker started");
        Ok(Self {
            broker,
            local_addrs,
            listeners: bound,
            shutdown,
            tasks,
        })
    }

    /// The addresses listened on, with the ports actually bound (for a
    /// configured port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Every listener: its name, its kind (`tcp`, `tls`, `ws`, `wss`) and
    /// the address actually bound, the `listeners` addresses first, then
    /// the `[[listener]]` tables, in the order of the configuration.
    pub fn listeners(&self) -> Vec<ListenerInfo> {
        self.listeners
            .iter()
            .map(|(listener, address)| ListenerInfo {
                name: listener.name.to_string(),
                kind: listener.kind.as_str(),
                address: *address,
            })
            .collect()
    }

    /// Reads the certificate, key and CA files of every TLS listener
    /// again. A listener whose files serve uses them for every new
    /// handshake; connections already established are untouched. A
    /// listener whose files fail keeps its previous certificates. Returns
    /// one result per TLS listener; each is logged too.
    pub fn reload_tls(&self) -> Vec<TlsReload> {
        let mut reloads = Vec::new();
        for (listener, _) in &self.listeners {
            let Some(result) = listener.reload_tls() else {
                continue;
            };
            match &result {
                Ok(()) => tracing::info!(listener = %listener.name, "TLS certificates reloaded"),
                Err(error) => tracing::error!(
                    listener = %listener.name,
                    "TLS certificates not reloaded, the previous ones stay in use: {error}"
                ),
            }
            reloads.push(TlsReload {
                listener: listener.name.to_string(),
                result,
            });
        }
        reloads
    }

    /// Reads the password and ACL files again and puts them in force for
    /// every connection (at its next packet). A file that cannot be read or
    /// parsed leaves the rules in force unchanged and is returned as the
    /// error, naming the file, the line and the fix. The TLS listeners'
    /// certificates have their own reload.
    pub async fn reload_auth(&self) -> Result<(), BrokerError> {
        let broker = Arc::clone(&self.broker);
        let reloaded = tokio::task::spawn_blocking(move || broker.auth.reload())
            .await
            .map_err(|error| BrokerError::Task {
                task: "authentication reload",
                detail: error.to_string(),
            })??;
        tracing::info!(
            users = reloaded.user_count(),
            "password and ACL files reloaded"
        );
        Ok(())
    }

    /// The broker's counters now.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.broker.metrics.snapshot()
    }

    /// Number of sessions the broker holds (connected or not).
    pub fn session_count(&self) -> usize {
        self.broker.registry.len()
    }

    /// Stops accepting, disconnects every client (MQTT 5 clients get
    /// DISCONNECT 0x8B), waits for every task, then flushes and closes the
    /// session store. Returns the first failure met.
    pub async fn shutdown(self) -> Result<(), BrokerError> {
        tracing::info!("shutting down");
        self.shutdown.send_replace(true);
        let mut failure = None;
        for (task, handle) in self.tasks {
            if let Err(error) = handle.await {
                failure.get_or_insert(BrokerError::Task {
                    task,
                    detail: error.to_string(),
                });
            }
        }
        if let Some(link) = self.broker.cluster.get().cloned() {
            let stopped =
                tokio::time::timeout(CLUSTER_STOP_TIMEOUT, link.raft.clone().shutdown()).await;
            match stopped {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "the cluster member did not stop cleanly"),
                Err(_) => tracing::warn!(
                    "the cluster member did not stop within 10 s; stopping without it"
                ),
            }
        }
        self.broker.finish_writes().await;
        if let Err(error) = self.broker.store.flush().await {
            failure.get_or_insert(BrokerError::Store(error));
        }
        match Arc::try_unwrap(self.broker) {
            Ok(broker) => {
                let closed = tokio::task::spawn_blocking(move || broker.store.close()).await;
                match closed {
                    Ok(Ok(())) => {}
                    Ok(Err(error)) => {
                        failure.get_or_insert(BrokerError::Store(error));
                    }
                    Err(error) => {
                        failure.get_or_insert(BrokerError::Task {
                            task: "store closing",
                            detail: error.to_string(),
                        });
                    }
                }
            }
            Err(_) => tracing::warn!(
                "the broker state is still referenced after every task ended; the store is \
                 flushed but will be closed only when that reference goes"
            ),
        }
        tracing::info!("stopped");
        failure.map_or(Ok(()), Err)
    }
}

/// A listener of a running [`Server`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerInfo {
    /// Its `name`, or `KIND BIND`.
    pub name: String,
    /// `tcp`, `tls`, `ws` or `wss`.
    pub kind: &'static str,
    /// The address bound (with the port chosen for a configured port 0).
    pub address: SocketAddr,
}

/// The outcome of [`Server::reload_tls`] for one TLS listener.
#[derive(Debug)]
pub struct TlsReload {
    /// The listener's name.
    pub listener: String,
    /// `Ok` if new handshakes use the files read now; the error otherwise
    /// (the previous certificates stay in use).
    pub result: Result<(), TlsError>,
}
