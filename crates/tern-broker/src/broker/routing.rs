//! Publishing: from one message to the queues of its subscribers' sessions,
//! and the retained-message index.
//!
//! A publisher never waits for a subscriber: it locks each recipient's
//! session for one enqueue (the session's bounded queue applies its drop
//! policy), submits the resulting store operations under that lock, and
//! wakes the recipient's connection. The store writes' [`Pending`]s are
//! returned so that a QoS 1/2 publisher is acknowledged only once they are
//! durable.

use std::cell::Cell;
use std::sync::{Arc, PoisonError};

use std::num::NonZeroU32;
use tern_codec::TopicFilter;

use tern_codec::QoS;
use tern_router::{Matches, Recipient, SharedMember};
use tern_session::{Message, Op, Pending, SessionStore, Subscription, Timestamp};

use super::Broker;
use super::registry::{SessionCell, SessionKey};

thread_local! {
    /// Matching's scratch space, one per thread: a match is made and used
    /// within one synchronous call to [`Broker::route`], so the
    /// connections need not each keep one, with whatever it grew to
    /// (docs/performance.md, "Idle connections").
    static MATCHES: Cell<Matches<SessionKey>> = Cell::new(Matches::default());
}

/// Runs `f` with this thread's matching scratch space.
pub(super) fn with_matches<R>(f: impl FnOnce(&mut Matches<SessionKey>) -> R) -> R {
    MATCHES.with(|scratch| {
        // Taken out, not borrowed: a nested use (none today) gets a fresh
        // one instead of a panic.
        let mut matches = scratch.take();
        let result = f(&mut matches);
        scratch.set(matches);
        result
    })
}

/// What routing one message did.
#[derive(Debug, Default)]
pub(crate) struct Routed {
    /// Store writes to wait for before acknowledging the publisher.
    pub pendings: Vec<Pending<()>>,
    /// How many subscribers it was queued for.
    pub recipients: usize,
}

/// The copy of `message` that `recipient` receives: at the lower of the
/// two QoS, RETAIN kept only with retain as published (MQTT 5 §3.3.1.3),
/// with the identifiers of the matching subscriptions.
pub(crate) fn delivery_for(message: &Message, recipient: &Recipient<'_, SessionKey>) -> Message {
    copy_for(
        message,
        recipient.qos,
        recipient.retain_as_published,
        recipient.subscription_identifiers,
    )
}

/// The copy of `message` for the shared-group member another node's
/// match chose this node for.
pub(crate) fn delivery_for_member(message: &Message, member: &SharedMember<SessionKey>) -> Message {
    let identifiers: Vec<NonZeroU32> = member.identifier.into_iter().collect();
    copy_for(
        message,
        member.qos,
        member.retain_as_published,
        &identifiers,
    )
}

fn copy_for(
    message: &Message,
    qos: QoS,
    retain_as_published: bool,
    identifiers: &[NonZeroU32],
) -> Message {
    let mut publish = message.publish().clone();
    publish.qos = publish.qos.min(qos);
    publish.retain = publish.retain && retain_as_published;
    if !identifiers.is_empty() || !publish.properties().subscription_identifiers.is_empty() {
        publish.properties_mut().subscription_identifiers =
            identifiers.iter().map(|id| id.get()).collect();
    }
    Message::with_expiry(publish, message.expires_at())
}

/// The copy of a retained message sent for a new subscription: RETAIN set
/// (MQTT 5 §3.3.1.3), at most the subscription's QoS, with its identifier.
fn retained_for(message: &Message, subscription: &Subscription) -> Message {
    let mut publish = message.publish().clone();
    publish.qos = publish.qos.min(subscription.options.qos);
    publish.retain = true;
    let identifiers: Vec<u32> = subscription.identifier.iter().map(|id| id.get()).collect();
    if !identifiers.is_empty() || !publish.properties().subscription_identifiers.is_empty() {
        publish.properties_mut().subscription_identifiers = identifiers;
    }
    Message::with_expiry(publish, message.expires_at())
}

impl Broker {
    /// Publishes `message` (from session `publisher`, if any) to every
    /// matching subscription, and stores or clears it as retained.
    pub(crate) fn route(
        &self,
        message: Message,
        publisher: Option<SessionKey>,
        now: Timestamp,
    ) -> Routed {
        with_matches(|matches| self.route_matching(message, publisher, matches, now))
    }

    fn route_matching(
        &self,
        message: Message,
        publisher: Option<SessionKey>,
        matches: &mut Matches<SessionKey>,
        now: Timestamp,
    ) -> Routed {
        let mut routed = Routed::default();
        if message.is_expired(now) {
            self.metrics
                .dropped_expired
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return routed;
        }
        if message.publish().retain {
            routed.pendings.extend(self.retain(&message));
        }
        match self.cluster() {
            None => self.router.matches(message.topic(), publisher, matches),
            Some(link) => {
                // Group names are only valid under the lock of the match.
                let trie = self.router.read();
                trie.matches(message.topic(), publisher, matches);
                let forwarded = self.forward(link, &message, matches, |group| {
                    trie.shared_group_filter(group)
                });
                drop(trie);
                routed.recipients += forwarded.nodes;
                routed.pendings.extend(forwarded.pendings);
            }
        }
        for recipient in matches.iter() {
            if super::cluster::remote_node(recipient.subscriber).is_some() {
                continue;
            }
            let Some(cell) = self.registry.by_key(recipient.subscriber) else {
                continue;
            };
            routed.recipients += 1;
            let delivery = delivery_for(&message, &recipient);
            routed
                .pendings
                .extend(self.enqueue(&cell, std::iter::once(delivery)));
        }
        routed
    }

    /// Queues `messages` in `cell`'s session and wakes its connection if
    /// it can send one now.
    pub(crate) fn enqueue(
        &self,
        cell: &SessionCell,
        messages: impl IntoIterator<Item = Message>,
    ) -> Option<Pending<()>> {
        let mut session = cell.lock();
        let before = session.drops();
        for message in messages {
            if let Some(reason) = session.enqueue(message) {
                tracing::debug!(client_id = %cell.client_id, ?reason, "message dropped");
            }
        }
        self.metrics.count_drops(before, session.drops());
        let pending = self.submit(session.take_changes());
        // A subscriber whose window is full is woken by its next
        // acknowledgement, which delivers what waits: waking it now would
        // only find nothing to send (every message, in a fan-out to
        // clients slower than the publisher).
        let wake = session.can_deliver();
        let parked = cell.parked(&session).filter(|_| wake);
        drop(session);
        if wake {
            cell.notify.notify_one();
        }
        if let Some(token) = parked {
            self.parked_wakes.wake(token);
        }
        pending
    }

    /// Updates the retained index: an empty payload clears the topic. The
    /// store write is submitted under the index's lock so that the store
    /// keeps the last retained message of a topic, as the index does.
    /// `$SYS` topics are not stored: they are rebuilt after a restart.
    fn retain(&self, message: &Message) -> Option<Pending<()>> {
        let topic = message.topic();
        let persist = !topic.starts_with("$SYS");
        if persist && let Some(link) = self.cluster() {
            return Some(self.retain_replicated(link, message));
        }
        let mut index = self.retained_index();
        if message.publish().payload.is_empty() {
            let removed = index.remove(topic).is_some();
            (removed && persist).then(|| self.store.write(vec![Op::RemoveRetained(topic.into())]))
        } else {
            index.insert(topic, Arc::new(message.clone()));
            persist.then(|| self.store.write(vec![Op::PutRetained(message.clone())]))
        }
    }

    /// Queues for `cell` the live retained messages matching `filter`, as
    /// a new subscription receives them.
    pub(crate) fn send_retained(
        &self,
        cell: &SessionCell,
        filter: &TopicFilter,
        subscription: &Subscription,
        now: Timestamp,
    ) -> Option<Pending<()>> {
        let messages: Vec<Message> = {
            let index = self.retained.read().unwrap_or_else(PoisonError::into_inner);
            index
                .matching(filter)
                .into_iter()
                .filter(|message| !message.is_expired(now))
                .map(|message| retained_for(message, subscription))
                .collect()
        };
        if messages.is_empty() {
            return None;
        }
        self.enqueue(cell, messages)
    }
}
