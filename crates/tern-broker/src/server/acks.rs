//! [`AckQueue`]: acknowledgements owed to a publisher, each waiting for
//! the store writes of its message, released in the order the messages
//! arrived.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;

use tern_session::{Pending, StoreError};

use crate::protocol::{InboundAck, RouteOutcome};

#[derive(Debug)]
struct Waiting {
    ack: InboundAck,
    outcome: RouteOutcome,
    pendings: Vec<Pending<()>>,
}

/// Acknowledgements waiting for durability; see the module docs.
#[derive(Debug, Default)]
pub(crate) struct AckQueue {
    waiting: VecDeque<Waiting>,
}

impl AckQueue {
    /// Owes `ack` once `pendings` (and everything pushed before) complete.
    pub(crate) fn push(
        &mut self,
        ack: InboundAck,
        outcome: RouteOutcome,
        pendings: Vec<Pending<()>>,
    ) {
        self.waiting.push_back(Waiting {
            ack,
            outcome,
            pendings,
        });
    }

    /// True when nothing is owed.
    pub(crate) fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// The oldest acknowledgement, once its writes are done; a failed
    /// write turns its outcome into [`RouteOutcome::StoreFailed`], or
    /// [`RouteOutcome::NodeUnconfirmed`] if another node did not confirm.
    ///
    /// Cancel-safe: progress is kept in the queue, and an entry leaves it
    /// only when this future completes. Never completes when empty.
    pub(crate) async fn next(&mut self) -> (InboundAck, RouteOutcome) {
        poll_fn(|cx| {
            let Some(front) = self.waiting.front_mut() else {
                return Poll::Pending;
            };
            while let Some(pending) = front.pendings.last_mut() {
                match Pin::new(pending).poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(result) => {
                        match result {
                            Ok(()) => {}
                            Err(error @ StoreError::Remote { .. }) => {
                                tracing::warn!(%error, "a published message was not confirmed");
                                front.outcome = RouteOutcome::NodeUnconfirmed;
                            }
                            Err(error) => {
                                tracing::error!(%error, "storing a published message failed");
                                front.outcome = RouteOutcome::StoreFailed;
                            }
                        }
                        front.pendings.pop();
                    }
                }
            }
            match self.waiting.pop_front() {
                Some(done) => Poll::Ready((done.ack, done.outcome)),
                None => Poll::Pending,
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use futures::FutureExt;
    use tern_codec::{PacketId, QoS};

    use super::*;

    fn ack(id: u16) -> InboundAck {
        InboundAck {
            packet_id: PacketId::new(id).expect("non-zero"),
            qos: QoS::AtLeastOnce,
        }
    }

    #[test]
    fn acknowledgements_come_out_in_order_with_failures_marked() {
        let mut queue = AckQueue::default();
        assert!(
            queue.next().now_or_never().is_none(),
            "empty never completes"
        );
        queue.push(
            ack(1),
            RouteOutcome::Delivered,
            vec![Pending::ready(Ok(()))],
        );
        queue.push(
            ack(2),
            RouteOutcome::Delivered,
            vec![Pending::ready(Err(StoreError::Closed))],
        );
        queue.push(ack(3), RouteOutcome::NoSubscribers, Vec::new());
        queue.push(
            ack(4),
            RouteOutcome::Delivered,
            vec![
                Pending::ready(Ok(())),
                Pending::ready(Err(StoreError::Remote {
                    node: 2,
                    detail: "the link to node 2 broke".into(),
                })),
            ],
        );
        assert_eq!(
            queue.next().now_or_never(),
            Some((ack(1), RouteOutcome::Delivered))
        );
        assert_eq!(
            queue.next().now_or_never(),
            Some((ack(2), RouteOutcome::StoreFailed))
        );
        assert_eq!(
            queue.next().now_or_never(),
            Some((ack(3), RouteOutcome::NoSubscribers))
        );
        assert_eq!(
            queue.next().now_or_never(),
            Some((ack(4), RouteOutcome::NodeUnconfirmed))
        );
        assert!(queue.is_empty());
    }
}
