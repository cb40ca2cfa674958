//! The result of matching one published topic: who receives the message, at
//! which QoS, with which subscription identifiers.
//!
//! [`Matches`] is a reusable buffer. A connection task (or a routing worker)
//! keeps one and passes it to every `matches` call, so matching allocates
//! nothing once the buffer has grown to the usual fan-out.
//!
//! Rules applied here, after the trie walk:
//! - a subscriber with several matching non-shared subscriptions receives
//!   the message once, at the highest QoS granted among them, with every
//!   subscription identifier they carry (MQTT 5 §3.3.4), deduplicated;
//! - retain-as-published is set if any of those subscriptions asked for it;
//! - each matching shared group adds one separate recipient, even if that
//!   member also has a non-shared subscription (MQTT 5 §4.8.2 allows the
//!   second copy).

use std::num::NonZeroU32;

use tern_codec::QoS;

use crate::edges::NodeId;
use crate::{NIL, SubscriberKey};

/// One subscription that matched, before deduplication.
#[derive(Debug, Clone, Copy)]
struct Hit<S> {
    subscriber: S,
    qos: QoS,
    retain_as_published: bool,
    identifier: Option<NonZeroU32>,
}

/// A shared group of a [`crate::SubscriptionTrie`], valid while the trie
/// is not changed (read it under the same lock as the match).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SharedGroup(pub(crate) u32);

/// One recipient, stored with a range into the identifier buffer.
#[derive(Debug, Clone, Copy)]
struct Delivery<S> {
    subscriber: S,
    qos: QoS,
    retain_as_published: bool,
    /// The shared group that chose this recipient, or [`NIL`].
    group: u32,
    identifiers_start: u32,
    identifiers_end: u32,
}

/// A subscriber that should receive a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipient<'a, S> {
    /// Who receives the message.
    pub subscriber: S,
    /// The highest QoS granted by the matching subscriptions; the message
    /// goes out at the lower of this and its published QoS.
    pub qos: QoS,
    /// Keep the RETAIN flag as published (MQTT 5); false means clear it.
    pub retain_as_published: bool,
    /// True if this recipient was chosen by a shared group.
    pub shared: bool,
    /// The shared group that chose this recipient: a cluster node that
    /// receives the message for a group passes the group on
    /// ([`crate::SubscriptionTrie::shared_group_filter`]) so that the
    /// other node delivers it to one of its members of that group.
    pub group: Option<SharedGroup>,
    /// The subscription identifiers to put in the PUBLISH, without
    /// duplicates, in ascending order.
    pub subscription_identifiers: &'a [NonZeroU32],
}

/// Reusable output of a match; see the module docs.
#[derive(Debug)]
pub struct Matches<S> {
    hits: Vec<Hit<S>>,
    deliveries: Vec<Delivery<S>>,
    identifiers: Vec<NonZeroU32>,
    /// Scratch space of the trie walk: the nodes matching the levels so far.
    pub(crate) frontier: Vec<NodeId>,
    /// Scratch space of the trie walk: the nodes matching one level more.
    pub(crate) next_frontier: Vec<NodeId>,
}

impl<S> Default for Matches<S> {
    fn default() -> Self {
        Self {
            hits: Vec::new(),
            deliveries: Vec::new(),
            identifiers: Vec::new(),
            frontier: Vec::new(),
            next_frontier: Vec::new(),
        }
    }
}

impl<S: SubscriberKey> Matches<S> {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of recipients.
    pub fn len(&self) -> usize {
        self.deliveries.len()
    }

    /// True if nobody receives the message.
    pub fn is_empty(&self) -> bool {
        self.deliveries.is_empty()
    }

    /// The recipients, non-shared ones first, each non-shared subscriber
    /// once.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = Recipient<'_, S>> + '_ {
        self.deliveries.iter().map(|delivery| Recipient {
            subscriber: delivery.subscriber,
            qos: delivery.qos,
            retain_as_published: delivery.retain_as_published,
            shared: delivery.group != NIL,
            group: (delivery.group != NIL).then_some(SharedGroup(delivery.group)),
            subscription_identifiers: &self.identifiers
                [delivery.identifiers_start as usize..delivery.identifiers_end as usize],
        })
    }

    /// Empties the buffer, keeping its capacity.
    pub(crate) fn clear(&mut self) {
        self.hits.clear();
        self.deliveries.clear();
        self.identifiers.clear();
        self.frontier.clear();
        self.next_frontier.clear();
    }

    /// Records a matching non-shared subscription.
    pub(crate) fn push_hit(
        &mut self,
        subscriber: S,
        qos: QoS,
        retain_as_published: bool,
        identifier: Option<NonZeroU32>,
    ) {
        self.hits.push(Hit {
            subscriber,
            qos,
            retain_as_published,
            identifier,
        });
    }

    /// Records the member a shared group chose.
    pub(crate) fn push_shared(
        &mut self,
        group: u32,
        subscriber: S,
        qos: QoS,
        retain_as_published: bool,
        identifier: Option<NonZeroU32>,
    ) {
        let identifiers_start = self.identifier_position();
        self.identifiers.extend(identifier);
        self.deliveries.push(Delivery {
            subscriber,
            qos,
            retain_as_published,
            group,
            identifiers_start,
            identifiers_end: self.identifier_position(),
        });
    }

    fn identifier_position(&self) -> u32 {
        // A u32 would only overflow with four billion matching subscriptions
        // carrying identifiers, far beyond what one router holds.
        self.identifiers.len() as u32
    }

    /// Merges the non-shared hits into one delivery per subscriber.
    pub(crate) fn finish(&mut self) {
        if self.hits.len() > 1 {
            self.hits.sort_unstable_by_key(|hit| hit.subscriber);
        }
        let mut rest = self.hits.as_slice();
        let mut merged = Vec::new();
        std::mem::swap(&mut merged, &mut self.deliveries);
        let shared = merged.len();
        while let Some(first) = rest.first() {
            let run_len = rest
                .iter()
                .position(|hit| hit.subscriber != first.subscriber)
                .unwrap_or(rest.len());
            let (run, tail) = rest.split_at(run_len);
            rest = tail;

            let identifiers_start = self.identifiers.len();
            self.identifiers
                .extend(run.iter().filter_map(|hit| hit.identifier));
            let new_identifiers = &mut self.identifiers[identifiers_start..];
            if new_identifiers.len() > 1 {
                new_identifiers.sort_unstable();
                let unique = dedup_sorted(new_identifiers);
                self.identifiers.truncate(identifiers_start + unique);
            }
            merged.push(Delivery {
                subscriber: first.subscriber,
                qos: run.iter().map(|hit| hit.qos).max().unwrap_or(first.qos),
                retain_as_published: run.iter().any(|hit| hit.retain_as_published),
                group: NIL,
                identifiers_start: identifiers_start as u32,
                identifiers_end: self.identifier_position(),
            });
        }
        // Non-shared recipients first, then the shared ones in walk order.
        merged.rotate_left(shared);
        self.deliveries = merged;
    }
}

/// Moves the distinct values of a sorted slice to its front and returns
/// how many there are.
fn dedup_sorted(values: &mut [NonZeroU32]) -> usize {
    let mut unique = 0;
    for index in 0..values.len() {
        if unique == 0 || values[index] != values[unique - 1] {
            values[unique] = values[index];
            unique += 1;
        }
    }
    unique
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(value: u32) -> Option<NonZeroU32> {
        NonZeroU32::new(value)
    }

    #[test]
    fn overlapping_hits_merge_per_subscriber() {
        let mut matches = Matches::<u32>::new();
        matches.push_hit(2, QoS::AtMostOnce, false, id(5));
        matches.push_hit(1, QoS::AtLeastOnce, false, None);
        matches.push_hit(2, QoS::ExactlyOnce, true, id(3));
        matches.push_hit(2, QoS::AtLeastOnce, false, id(5));
        matches.push_shared(0, 2, QoS::AtMostOnce, false, id(9));
        matches.finish();

        let recipients: Vec<_> = matches.iter().collect();
        assert_eq!(recipients.len(), 3);
        assert_eq!(recipients[0].subscriber, 1);
        assert_eq!(recipients[0].qos, QoS::AtLeastOnce);
        assert!(recipients[0].subscription_identifiers.is_empty());
        assert_eq!(recipients[1].subscriber, 2);
        assert_eq!(recipients[1].qos, QoS::ExactlyOnce);
        assert!(recipients[1].retain_as_published);
        assert!(!recipients[1].shared);
        let expected = [NonZeroU32::new(3).unwrap(), NonZeroU32::new(5).unwrap()];
        assert_eq!(recipients[1].subscription_identifiers, expected);
        assert!(recipients[2].shared);
        assert_eq!(recipients[2].subscriber, 2);
        assert_eq!(
            recipients[2].subscription_identifiers,
            [NonZeroU32::new(9).unwrap()]
        );
    }

    #[test]
    fn clearing_empties_the_buffer() {
        let mut matches = Matches::<u32>::new();
        matches.push_hit(1, QoS::AtMostOnce, false, id(1));
        matches.finish();
        assert_eq!(matches.len(), 1);
        matches.clear();
        matches.finish();
        assert!(matches.is_empty());
    }

    #[test]
    fn dedup_keeps_distinct_values() {
        let mut values: Vec<NonZeroU32> = [1, 1, 2, 3, 3, 3]
            .into_iter()
            .filter_map(NonZeroU32::new)
            .collect();
        let unique = dedup_sorted(&mut values);
        assert_eq!(&values[..unique], &values[..3]);
        assert_eq!(
            values[..unique].iter().map(|v| v.get()).collect::<Vec<_>>(),
            [1, 2, 3]
        );
    }
}
