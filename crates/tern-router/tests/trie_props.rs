//! Property tests of the subscription trie against a brute-force model that
//! uses the reference matcher `tern_codec::topic::matches_filter`.
//!
//! Topics and filters are drawn from a small alphabet of levels (including
//! the empty level and `$` levels) so that matches actually happen. Each
//! case applies a random sequence of subscribes, unsubscribes and
//! subscriber removals, checks every answer against the model, then checks
//! the recipients of random topics: each non-shared subscriber once, at its
//! highest QoS, with all its identifiers; exactly one member per matching
//! shared group.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroU32;

use proptest::prelude::*;
use tern_codec::topic::matches_filter;
use tern_codec::{QoS, RetainHandling, SubscriptionOptions, TopicFilter};
use tern_router::{Matches, RouterConfig, SharedStrategy, SubscriptionTrie};

const TOPIC_LEVELS: &[&str] = &["a", "b", "", "$s"];
const FILTER_LEVELS: &[&str] = &["a", "b", "", "$s", "+"];
const GROUPS: &[&str] = &["g", "h"];

fn topic() -> impl Strategy<Value = String> {
    common::topic(TOPIC_LEVELS, 4)
}

/// A plain filter: some levels, maybe followed by `#`, or `#` alone.
fn plain_filter() -> impl Strategy<Value = String> {
    common::plain_filter(FILTER_LEVELS, 4)
}

/// A filter, shared one time in four.
fn filter() -> impl Strategy<Value = String> {
    (
        plain_filter(),
        prop::option::weighted(0.25, prop::sample::select(GROUPS)),
    )
        .prop_map(|(filter, group)| match group {
            Some(group) => format!("$share/{group}/{filter}"),
            None => filter,
        })
}

fn options() -> impl Strategy<Value = SubscriptionOptions> {
    (0..3u8, any::<bool>(), any::<bool>()).prop_map(|(qos, no_local, retain_as_published)| {
        SubscriptionOptions {
            qos: QoS::from_bits(qos).unwrap_or_default(),
            no_local,
            retain_as_published,
            retain_handling: RetainHandling::SendAtSubscribe,
        }
    })
}

#[derive(Debug, Clone)]
enum Op {
    Subscribe(u32, String, SubscriptionOptions, Option<u32>),
    Unsubscribe(u32, String),
    RemoveSubscriber(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..4u32, filter(), options(), prop::option::of(1..4u32))
            .prop_map(|(s, f, o, id)| Op::Subscribe(s, f, o, id)),
        2 => (0..4u32, filter()).prop_map(|(s, f)| Op::Unsubscribe(s, f)),
        1 => (0..4u32).prop_map(Op::RemoveSubscriber),
    ]
}

/// The model: every subscription by (subscriber, filter text).
type Model = BTreeMap<(u32, String), (SubscriptionOptions, Option<NonZeroU32>)>;

/// Shared subscriptions carry an identifier naming their group, so the
/// recipients can be told apart by group.
fn group_identifier(filter: &TopicFilter) -> NonZeroU32 {
    let text = filter.as_str();
    let hash = text.bytes().fold(1000u32, |h, b| {
        h.wrapping_mul(31).wrapping_add(u32::from(b))
    });
    NonZeroU32::new(hash | 0x8000_0000).unwrap_or(NonZeroU32::MIN)
}

fn apply(
    trie: &mut SubscriptionTrie<u32>,
    model: &mut Model,
    op: &Op,
) -> Result<(), TestCaseError> {
    match op {
        Op::Subscribe(subscriber, text, options, identifier) => {
            let filter = TopicFilter::new(text.as_str()).unwrap();
            let identifier = if filter.is_shared() {
                Some(group_identifier(&filter))
            } else {
                identifier.and_then(NonZeroU32::new)
            };
            let mut options = *options;
            options.no_local &= !filter.is_shared();
            let outcome = trie.subscribe(*subscriber, &filter, options, identifier);
            let was_there = model
                .insert((*subscriber, text.clone()), (options, identifier))
                .is_some();
            prop_assert_eq!(outcome.is_new(), !was_there, "subscribe {:?}", op);
        }
        Op::Unsubscribe(subscriber, text) => {
            let filter = TopicFilter::new(text.as_str()).unwrap();
            let removed = trie.unsubscribe(*subscriber, &filter);
            let was_there = model.remove(&(*subscriber, text.clone())).is_some();
            prop_assert_eq!(removed, was_there, "unsubscribe {:?}", op);
        }
        Op::RemoveSubscriber(subscriber) => {
            let before = model.len();
            model.retain(|(s, _), _| s != subscriber);
            prop_assert_eq!(trie.remove_subscriber(*subscriber), before - model.len());
        }
    }
    prop_assert_eq!(trie.len(), model.len());
    Ok(())
}

/// What one non-shared subscriber should receive.
#[derive(Debug, PartialEq, Eq)]
struct Expected {
    qos: QoS,
    retain_as_published: bool,
    identifiers: Vec<NonZeroU32>,
}

fn check_topic(
    trie: &SubscriptionTrie<u32>,
    model: &Model,
    topic: &str,
    publisher: Option<u32>,
) -> Result<(), TestCaseError> {
    let mut plain: BTreeMap<u32, Expected> = BTreeMap::new();
    let mut groups: BTreeMap<NonZeroU32, BTreeSet<u32>> = BTreeMap::new();
    for ((subscriber, text), (options, identifier)) in model {
        let filter = TopicFilter::new(text.as_str()).unwrap();
        if !matches_filter(filter.filter(), topic) {
            continue;
        }
        if filter.is_shared() {
            groups
                .entry(group_identifier(&filter))
                .or_default()
                .insert(*subscriber);
            continue;
        }
        if options.no_local && publisher == Some(*subscriber) {
            continue;
        }
        let entry = plain.entry(*subscriber).or_insert(Expected {
            qos: QoS::AtMostOnce,
            retain_as_published: false,
            identifiers: Vec::new(),
        });
        entry.qos = entry.qos.max(options.qos);
        entry.retain_as_published |= options.retain_as_published;
        entry.identifiers.extend(*identifier);
        entry.identifiers.sort_unstable();
        entry.identifiers.dedup();
    }

    let mut matches = Matches::new();
    trie.matches(topic, publisher, &mut matches);
    let mut got_plain = BTreeMap::new();
    let mut got_groups: BTreeMap<NonZeroU32, u32> = BTreeMap::new();
    for recipient in matches.iter() {
        if recipient.shared {
            prop_assert_eq!(recipient.subscription_identifiers.len(), 1);
            let group = recipient.subscription_identifiers[0];
            let before = got_groups.insert(group, recipient.subscriber);
            prop_assert!(before.is_none(), "group {} delivered twice", group);
        } else {
            let expected = Expected {
                qos: recipient.qos,
                retain_as_published: recipient.retain_as_published,
                identifiers: recipient.subscription_identifiers.to_vec(),
            };
            let before = got_plain.insert(recipient.subscriber, expected);
            prop_assert!(before.is_none(), "{} received twice", recipient.subscriber);
        }
    }
    prop_assert_eq!(&got_plain, &plain, "topic {:?}", topic);
    prop_assert_eq!(
        got_groups.keys().collect::<Vec<_>>(),
        groups.keys().collect::<Vec<_>>(),
        "groups for topic {:?}",
        topic
    );
    for (group, member) in &got_groups {
        prop_assert!(
            groups[group].contains(member),
            "{} not in its group",
            member
        );
    }
    Ok(())
}

fn strategy() -> impl Strategy<Value = SharedStrategy> {
    prop::sample::select(
        &[
            SharedStrategy::RoundRobin,
            SharedStrategy::Random,
            SharedStrategy::Sticky,
        ][..],
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_trie_agrees_with_the_reference_matcher(
        ops in prop::collection::vec(op(), 1..40),
        topics in prop::collection::vec((topic(), prop::option::of(0..5u32)), 1..12),
        shared_strategy in strategy(),
        seed in any::<u64>(),
    ) {
        let mut trie = SubscriptionTrie::new(RouterConfig { shared_strategy, seed });
        let mut model = Model::new();
        for op in &ops {
            apply(&mut trie, &mut model, op)?;
        }
        for (topic, publisher) in &topics {
            check_topic(&trie, &model, topic, *publisher)?;
        }
        for subscriber in 0..4 {
            let mut listed: Vec<String> = trie
                .subscriptions_of(subscriber)
                .into_iter()
                .map(|info| info.filter)
                .collect();
            listed.sort();
            let expected: Vec<String> = model
                .keys()
                .filter(|(s, _)| *s == subscriber)
                .map(|(_, text)| text.clone())
                .collect();
            prop_assert_eq!(listed, expected);
        }
        for subscriber in 0..4 {
            trie.remove_subscriber(subscriber);
        }
        prop_assert!(trie.is_empty());
        prop_assert_eq!(trie.node_count(), 1, "every node pruned");
    }

    #[test]
    fn any_topic_and_filter_agree_with_the_reference(filter in plain_filter(), topic in topic()) {
        let mut trie = SubscriptionTrie::default();
        let parsed = TopicFilter::new(filter.as_str()).unwrap();
        trie.subscribe(1u32, &parsed, SubscriptionOptions::default(), None);
        let mut matches = Matches::new();
        trie.matches(&topic, None, &mut matches);
        prop_assert_eq!(!matches.is_empty(), matches_filter(&filter, &topic));
    }
}
