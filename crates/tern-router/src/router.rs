//! [`Router`]: a [`SubscriptionTrie`] shared by every core.
//!
//! The scheme is one `std::sync::RwLock` around the whole trie:
//!
//! - matching takes the read lock, so every connection task matches at the
//!   same time; the trie's only state that readers change (a shared group's
//!   round-robin counter, the random generator) is atomic;
//! - subscribe, unsubscribe and remove-subscriber take the write lock for a
//!   time proportional to one filter's levels (or one session's
//!   subscriptions), a few hundred nanoseconds to microseconds;
//! - std's futex-based lock prefers waiting writers, so a steady stream of
//!   matches cannot starve subscribes.
//!
//! The crate docs give the reasons and the measured cost.

use std::num::NonZeroU32;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tern_codec::{SubscriptionOptions, TopicFilter};

use crate::SubscriberKey;
use crate::matches::Matches;
use crate::shared::RouterConfig;
use crate::trie::{SubscribeOutcome, SubscriptionTrie};

/// A subscription trie behind a read-write lock; see the module docs.
#[derive(Debug)]
pub struct Router<S> {
    trie: RwLock<SubscriptionTrie<S>>,
}

impl<S: SubscriberKey> Default for Router<S> {
    fn default() -> Self {
        Self::new(RouterConfig::default())
    }
}

impl<S: SubscriberKey> Router<S> {
    /// An empty router whose shared groups follow `config`.
    pub fn new(config: RouterConfig) -> Self {
        Self {
            trie: RwLock::new(SubscriptionTrie::new(config)),
        }
    }

    /// Read access, for several calls under one lock.
    ///
    /// A panic inside a write section would be a bug in this crate; the
    /// lock's poison flag is ignored rather than turned into a second panic
    /// on every later call.
    pub fn read(&self) -> RwLockReadGuard<'_, SubscriptionTrie<S>> {
        self.trie.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Write access, for applying one SUBSCRIBE's filters under one lock.
    /// Keep the section short: every matcher waits for it.
    pub fn write(&self) -> RwLockWriteGuard<'_, SubscriptionTrie<S>> {
        self.trie.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`SubscriptionTrie::matches`] under the read lock.
    pub fn matches(&self, topic: &str, publisher: Option<S>, out: &mut Matches<S>) {
        self.read().matches(topic, publisher, out);
    }

    /// [`SubscriptionTrie::subscribe`] under the write lock.
    pub fn subscribe(
        &self,
        subscriber: S,
        filter: &TopicFilter,
        options: SubscriptionOptions,
        identifier: Option<NonZeroU32>,
    ) -> SubscribeOutcome {
        self.write()
            .subscribe(subscriber, filter, options, identifier)
    }

    /// [`SubscriptionTrie::unsubscribe`] under the write lock.
    pub fn unsubscribe(&self, subscriber: S, filter: &TopicFilter) -> bool {
        self.write().unsubscribe(subscriber, filter)
    }

    /// [`SubscriptionTrie::remove_subscriber`] under the write lock.
    pub fn remove_subscriber(&self, subscriber: S) -> usize {
        self.write().remove_subscriber(subscriber)
    }

    /// Number of subscriptions.
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// True if there is no subscription.
    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tern_codec::QoS;

    use super::*;

    #[test]
    fn readers_and_a_writer_share_the_router() {
        let router = Arc::new(Router::<u64>::default());
        let filter = TopicFilter::new("devices/+/telemetry").unwrap();
        let options = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
        assert!(router.subscribe(0, &filter, options, None).is_new());

        let writer = {
            let router = Arc::clone(&router);
            std::thread::spawn(move || {
                for subscriber in 1..200 {
                    let own = TopicFilter::new(format!("devices/{subscriber}/telemetry")).unwrap();
                    router.subscribe(subscriber, &own, options, None);
                    assert!(router.unsubscribe(subscriber, &own));
                }
            })
        };
        let mut matches = Matches::new();
        for _ in 0..200 {
            router.matches("devices/7/telemetry", None, &mut matches);
            assert!(matches.iter().any(|recipient| recipient.subscriber == 0));
        }
        writer.join().unwrap();
        assert_eq!(router.len(), 1);
        assert_eq!(router.remove_subscriber(0), 1);
        assert!(router.is_empty());
    }
}
