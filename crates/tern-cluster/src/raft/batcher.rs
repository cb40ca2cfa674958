//! Coalescing of [`crate::RaftNode::submit`] calls into few Raft entries.
//!
//! Every submit goes, in call order, into one bounded queue. One task takes
//! whatever has accumulated (up to [`MAX_BATCH`] commands or about
//! [`MAX_BATCH_BYTES`], so that an entry with large retained messages stays
//! small enough to replicate within openraft's AppendEntries deadline; a single
//! larger command goes alone), proposes it as a single entry, hands each caller its own result, and repeats. While a batch is
//! in flight the next one accumulates, so the batch size adapts to the load: one
//! command when idle, hundreds in a burst.
//!
//! Only one batch is in flight at a time, which keeps the commands of one caller
//! in the order it submitted them (an `AddRoutes` then a `RemoveRoutes` of the
//! same filter must not be swapped by two concurrent proposals).
//!
//! Queue policy: when [`QUEUE_CAPACITY`] commands are waiting, a submit fails at
//! once with [`ClusterError::Overloaded`] rather than waiting.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, watch};

use crate::error::ClusterError;
use crate::raft::leader::{LeaderReply, LeaderRequest};
use crate::raft::node::Inner;
use crate::raft::{Command, CommandResult};

/// The most commands one Raft entry carries.
pub(crate) const MAX_BATCH: usize = 1_000;
/// About the most bytes of commands one Raft entry carries.
pub(crate) const MAX_BATCH_BYTES: usize = 256 * 1024;
/// The most commands waiting to be proposed.
pub(crate) const QUEUE_CAPACITY: usize = 65_536;

type Reply = oneshot::Sender<Result<CommandResult, ClusterError>>;

/// One submitted command and where its result goes.
pub(crate) struct Pending {
    command: Command,
    reply: Reply,
}

/// The sending side of the queue, held by every clone of the node.
#[derive(Clone)]
pub(crate) struct Submitter {
    tx: mpsc::Sender<Pending>,
}

impl Submitter {
    /// Queues `command` now (so call order is kept) and returns its result's future.
    pub(crate) fn submit(
        &self,
        command: Command,
    ) -> impl Future<Output = Result<CommandResult, ClusterError>> + Send + 'static {
        let (reply, result) = oneshot::channel();
        let queued = self
            .tx
            .try_send(Pending { command, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => ClusterError::Overloaded(QUEUE_CAPACITY),
                mpsc::error::TrySendError::Closed(_) => ClusterError::Shutdown,
            });
        async move {
            queued?;
            result.await.unwrap_or(Err(ClusterError::Shutdown))
        }
    }
}

/// Creates the queue; run [`run`] with the receiver.
pub(crate) fn channel() -> (Submitter, mpsc::Receiver<Pending>) {
    let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
    (Submitter { tx }, rx)
}

/// The batching task: runs until `cancel` turns true; what is still queued then
/// fails with [`ClusterError::Shutdown`].
pub(crate) async fn run(
    inner: Arc<Inner>,
    mut queue: mpsc::Receiver<Pending>,
    mut cancel: watch::Receiver<bool>,
) {
    loop {
        let first = tokio::select! {
            pending = queue.recv() => match pending {
                Some(pending) => pending,
                None => return,
            },
            _ = cancel.wait_for(|stop| *stop) => break,
        };
        let mut bytes = first.command.approximate_size();
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH && bytes < MAX_BATCH_BYTES {
            let Ok(pending) = queue.try_recv() else { break };
            bytes += pending.command.approximate_size();
            batch.push(pending);
        }
        let (commands, replies): (Vec<Command>, Vec<Reply>) = batch
            .into_iter()
            .map(|pending| (pending.command, pending.reply))
            .unzip();
        let count = commands.len();
        let outcome = tokio::select! {
            outcome = inner.ask_leader(LeaderRequest::Propose(commands)) => outcome,
            // The entry may still commit; its submitters are told the node stopped.
            _ = cancel.wait_for(|stop| *stop) => Err(ClusterError::Shutdown),
        };
        match outcome {
            Ok(LeaderReply::Results(results)) if results.len() == count => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Ok(other) => {
                let e = ClusterError::Protocol(format!(
                    "the leader answered {other:?} to a proposal of {count} commands"
                ));
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
            Err(e) => {
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
    queue.close();
    while let Ok(pending) = queue.try_recv() {
        let _ = pending.reply.send(Err(ClusterError::Shutdown));
    }
}
