//! [`Server`]: a running broker, and the tasks it owns.
//!
//! Task tree, each with its owner, cancel signal and join point:
//!
//! ```text
//! Server (owns the shutdown watch channel)
//!  ├─ accept loop, one per listener    joined by Server::shutdown
//!  │    └─ connection tasks (JoinSet)  joined by their accept loop
//!  ├─ housekeeping (wills, expiry)     joined by Server::shutdown
//!  └─ $SYS publisher (if enabled)      joined by Server::shutdown
//! ```
//!
//! Every task watches the same `watch::Receiver<bool>`. On shutdown the
//! accept loops stop accepting and wait for their connections; each
//! connection sends MQTT 5 clients DISCONNECT 0x8B, records its session
//! as disconnected and ends. Then the store is flushed and closed.

mod acks;
mod auth;
mod connection;
mod listener;
pub(crate) mod throttle;

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

/// A running broker. Stop it with [`Server::shutdown`]; dropping it
/// without leaves its tasks running until the runtime ends.
#[derive(Debug)]
pub struct Server {
    broker: Arc<Broker>,
    local_addrs: Vec<SocketAddr>,
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
        let mut listeners = Vec::with_capacity(config.listeners.len());
        for &address in &config.listeners {
            let listener = TcpListener::bind(address)
                .await
                .map_err(|source| BrokerError::Bind { address, source })?;
            listeners.push((address, listener));
        }
        let broker = tokio::task::spawn_blocking(move || Broker::open(config))
            .await
            .map_err(|error| BrokerError::Task {
                task: "store opening",
                detail: error.to_string(),
            })??;
        let broker = Arc::new(broker);
        let (shutdown, signal) = watch::channel(false);
        let mut local_addrs = Vec::with_capacity(listeners.len());
        let mut tasks = Vec::new();
        for (address, listener) in listeners {
            let local = listener
                .local_addr()
                .map_err(|source| BrokerError::Bind { address, source })?;
            local_addrs.push(local);
            let task = listener::accept_loop(listener, Arc::clone(&broker), signal.clone());
            tasks.push(("listener", tokio::spawn(task)));
        }
        let housekeeping = sessions::housekeeping(Arc::clone(&broker), signal.clone());
        tasks.push(("housekeeping", tokio::spawn(housekeeping)));
        if broker.config.sys_interval > 0 {
            let interval = Duration::from_secs(broker.config.sys_interval);
            let publisher = sys::sys_task(Arc::clone(&broker), interval, signal);
            tasks.push(("$SYS publisher", tokio::spawn(publisher)));
        }
        tracing::info!(addresses = ?local_addrs, "broker started");
        Ok(Self {
            broker,
            local_addrs,
            shutdown,
            tasks,
        })
    }

    /// The addresses listened on, with the ports actually bound (for a
    /// configured port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
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
