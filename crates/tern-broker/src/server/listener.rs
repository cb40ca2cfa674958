//! The accept loop of one listener. It owns the tasks of the connections
//! it accepted (a `JoinSet`) and joins them before it ends.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};

use super::connection;
use crate::broker::{Broker, stopped};

/// Accepts connections until shutdown, then waits for every one of them
/// to end (they watch the same shutdown signal).
pub(crate) async fn accept_loop(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    let signal = shutdown.clone();
    loop {
        tokio::select! {
            () = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        tracing::debug!(%error, %peer, "cannot disable Nagle's algorithm");
                    }
                    let task = connection::serve(Arc::clone(&broker), stream, peer, signal.clone());
                    connections.spawn(task);
                }
                Err(error) => {
                    // Usually out of file descriptors: back off a little.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(joined) = connections.join_next(), if !connections.is_empty() => log_join(joined),
        }
    }
    drop(listener);
    while let Some(joined) = connections.join_next().await {
        log_join(joined);
    }
}

fn log_join(joined: Result<(), JoinError>) {
    if let Err(error) = joined {
        tracing::error!(%error, "a connection task failed; this is a bug, please report it");
    }
}
