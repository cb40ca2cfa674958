//! Why the broker could not start, or stopped badly. Each message says
//! what was wrong and what to do.

use std::io;
use std::net::SocketAddr;

use tern_session::StoreError;
use thiserror::Error;

use crate::config::ConfigError;
use crate::server::TlsError;

/// A failure to start or to shut down the broker. Errors caused by one
/// client never appear here: they close that client's connection only.
#[derive(Debug, Error)]
pub enum BrokerError {
    /// A setting cannot work.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The session store could not be opened, read or closed.
    #[error("session store: {0}")]
    Store(#[from] StoreError),
    /// The password or ACL file cannot be used.
    #[error("authentication: {0}")]
    Auth(#[from] tern_auth::FileError),
    /// A listener address could not be bound.
    #[error(
        "cannot listen on {address}: {source}; check that no other program uses this port and \
         that this user may bind it (ports below 1024 need privileges), or change `listeners`"
    )]
    Bind {
        /// The address in the configuration.
        address: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// The node could not start its cluster membership.
    #[error("cluster: {0}")]
    Cluster(String),
    /// The admin API could not be served.
    #[error(
        "cannot serve the admin API on {address}: {source}; check that no other program uses \
         this port, or change cluster.admin_listen"
    )]
    Admin {
        /// The address in the configuration.
        address: SocketAddr,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// A TLS listener's certificate, key or CA files cannot serve.
    #[error("listener {listener:?}: {source}")]
    Tls {
        /// The listener's name.
        listener: String,
        /// What is wrong with its files.
        #[source]
        source: TlsError,
    },
    /// A broker task panicked or could not be joined.
    #[error("the broker task {task} failed: {detail}; this is a bug, please report it")]
    Task {
        /// Which task.
        task: &'static str,
        /// What the runtime reported.
        detail: String,
    },
}
