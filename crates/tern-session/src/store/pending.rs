//! [`Pending`]: the completion of a store operation, as a runtime-agnostic
//! future.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::channel::oneshot;

use crate::StoreError;

/// Completes with the outcome of a store operation once it is as durable as
/// the store promises.
///
/// Await it from any async runtime, or call [`Pending::wait`] from a thread
/// that may block. Dropping it does not cancel the operation.
#[must_use = "a write is durable only once its Pending completes"]
#[derive(Debug)]
pub struct Pending<T> {
    state: State<T>,
}

#[derive(Debug)]
enum State<T> {
    Ready(Option<Result<T, StoreError>>),
    Waiting(oneshot::Receiver<Result<T, StoreError>>),
}

// Nothing is pinned structurally: the value is moved out when ready.
impl<T> Unpin for Pending<T> {}

impl<T> Pending<T> {
    /// Already complete with `result`.
    pub fn ready(result: Result<T, StoreError>) -> Self {
        Self {
            state: State::Ready(Some(result)),
        }
    }

    /// Completes when `sender` sends; a dropped sender means the store's
    /// writer stopped ([`StoreError::Closed`]).
    pub(crate) fn channel() -> (oneshot::Sender<Result<T, StoreError>>, Self) {
        let (sender, receiver) = oneshot::channel();
        let pending = Self {
            state: State::Waiting(receiver),
        };
        (sender, pending)
    }

    /// A pending completed through the returned [`Completer`]: for work done
    /// elsewhere that is durable once it reports back (another node of a
    /// cluster storing a forwarded message). A dropped completer completes
    /// it with [`StoreError::Closed`].
    pub fn completer() -> (Completer<T>, Self) {
        let (sender, pending) = Self::channel();
        (Completer { sender }, pending)
    }

    /// Blocks the calling thread until complete. Not for async tasks.
    pub fn wait(self) -> Result<T, StoreError> {
        futures::executor::block_on(self)
    }
}

impl<T> Future for Pending<T> {
    type Output = Result<T, StoreError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        match &mut this.state {
            State::Ready(result) => Poll::Ready(result.take().unwrap_or(Err(StoreError::Closed))),
            State::Waiting(receiver) => Pin::new(receiver)
                .poll(cx)
                .map(|received| received.unwrap_or(Err(StoreError::Closed))),
        }
    }
}

/// Completes the [`Pending`] it was created with; see [`Pending::completer`].
#[derive(Debug)]
pub struct Completer<T> {
    sender: oneshot::Sender<Result<T, StoreError>>,
}

impl<T> Completer<T> {
    /// Completes the pending with `result` (nothing happens if it was dropped).
    pub fn complete(self, result: Result<T, StoreError>) {
        let _dropped = self.sender.send(result);
    }
}
