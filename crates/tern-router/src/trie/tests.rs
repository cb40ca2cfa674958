//! Unit tests of the subscription trie, one rule each. The property tests
//! in `tests/` check the same rules against the reference matcher.

use std::num::NonZeroU32;

use tern_codec::{QoS, RetainHandling, SubscriptionOptions, TopicFilter};

use super::{SubscribeOutcome, SubscriptionTrie};
use crate::{Matches, RouterConfig, SharedStrategy};

fn filter(text: &str) -> TopicFilter {
    TopicFilter::new(text).unwrap()
}

fn qos(level: QoS) -> SubscriptionOptions {
    SubscriptionOptions::with_qos(level)
}

fn id(value: u32) -> Option<NonZeroU32> {
    NonZeroU32::new(value)
}

fn subscribe(trie: &mut SubscriptionTrie<u32>, subscriber: u32, text: &str) -> SubscribeOutcome {
    trie.subscribe(subscriber, &filter(text), qos(QoS::AtMostOnce), None)
}

/// The sorted subscribers receiving `topic`.
fn receivers(trie: &SubscriptionTrie<u32>, topic: &str) -> Vec<u32> {
    receivers_from(trie, topic, None)
}

fn receivers_from(trie: &SubscriptionTrie<u32>, topic: &str, publisher: Option<u32>) -> Vec<u32> {
    let mut matches = Matches::new();
    trie.matches(topic, publisher, &mut matches);
    let mut found: Vec<u32> = matches
        .iter()
        .map(|recipient| recipient.subscriber)
        .collect();
    found.sort_unstable();
    found
}

#[test]
fn the_matching_rules_of_the_specification() {
    let cases = [
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        ("sport/#", "sport", true),
        ("#", "anything/at/all", true),
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("a//b", "a//b", true),
        ("a/+/b", "a//b", true),
        ("/#", "/", true),
        ("+/#", "/", true),
        ("#", "/", true),
        ("a/b", "a/b/c", false),
        ("a/b/c", "a/b", false),
    ];
    for (text, topic, expected) in cases {
        let mut trie = SubscriptionTrie::default();
        subscribe(&mut trie, 1, text);
        let expected = if expected { vec![1] } else { vec![] };
        assert_eq!(receivers(&trie, topic), expected, "{text} vs {topic}");
    }
}

#[test]
fn wildcards_at_the_first_level_do_not_match_dollar_topics() {
    let mut trie = SubscriptionTrie::default();
    subscribe(&mut trie, 1, "#");
    subscribe(&mut trie, 2, "+/uptime");
    subscribe(&mut trie, 3, "$SYS/#");
    subscribe(&mut trie, 4, "$SYS/+");
    subscribe(&mut trie, 5, "+");
    subscribe(&mut trie, 6, "$share/g/#");
    assert_eq!(receivers(&trie, "$SYS/uptime"), [3, 4]);
    assert_eq!(receivers(&trie, "$SYS"), [3]);
    assert_eq!(receivers(&trie, "SYS/uptime"), [1, 2, 6]);
    assert_eq!(
        receivers(&trie, "a/$b"),
        [1, 6],
        "only the first level counts"
    );
}

#[test]
fn a_subscriber_with_overlapping_subscriptions_receives_once() {
    let mut trie = SubscriptionTrie::default();
    trie.subscribe(7, &filter("a/+"), qos(QoS::AtLeastOnce), id(1));
    trie.subscribe(7, &filter("a/#"), qos(QoS::ExactlyOnce), id(2));
    trie.subscribe(7, &filter("a/b"), qos(QoS::AtMostOnce), None);
    trie.subscribe(7, &filter("#"), qos(QoS::AtMostOnce), id(1));
    trie.subscribe(8, &filter("a/b"), qos(QoS::AtMostOnce), id(3));

    let mut matches = Matches::new();
    trie.matches("a/b", None, &mut matches);
    let recipients: Vec<_> = matches.iter().collect();
    assert_eq!(recipients.len(), 2);
    let seven = recipients.iter().find(|r| r.subscriber == 7).unwrap();
    assert_eq!(seven.qos, QoS::ExactlyOnce);
    assert_eq!(
        seven.subscription_identifiers,
        [id(1).unwrap(), id(2).unwrap()]
    );
    let eight = recipients.iter().find(|r| r.subscriber == 8).unwrap();
    assert_eq!(eight.qos, QoS::AtMostOnce);
    assert_eq!(eight.subscription_identifiers, [id(3).unwrap()]);

    trie.matches("a/c/d", None, &mut matches);
    let only: Vec<_> = matches.iter().collect();
    assert_eq!(only.len(), 1);
    assert_eq!(only[0].qos, QoS::ExactlyOnce);
    assert_eq!(
        only[0].subscription_identifiers,
        [id(1).unwrap(), id(2).unwrap()]
    );
}

#[test]
fn no_local_skips_the_publishers_own_subscription_only() {
    let mut trie = SubscriptionTrie::default();
    let no_local = SubscriptionOptions {
        no_local: true,
        ..qos(QoS::AtLeastOnce)
    };
    trie.subscribe(1, &filter("chat/+"), no_local, id(1));
    trie.subscribe(2, &filter("chat/+"), no_local, None);
    assert_eq!(receivers_from(&trie, "chat/room", Some(1)), [2]);
    assert_eq!(receivers_from(&trie, "chat/room", None), [1, 2]);

    // Another subscription of 1 without no-local still delivers, once.
    trie.subscribe(1, &filter("chat/#"), qos(QoS::AtMostOnce), id(9));
    let mut matches = Matches::new();
    trie.matches("chat/room", Some(1), &mut matches);
    let own = matches.iter().find(|r| r.subscriber == 1).unwrap();
    assert_eq!(own.qos, QoS::AtMostOnce);
    assert_eq!(own.subscription_identifiers, [id(9).unwrap()]);
}

#[test]
fn retain_as_published_is_reported() {
    let mut trie = SubscriptionTrie::default();
    let keep = SubscriptionOptions {
        retain_as_published: true,
        ..qos(QoS::AtMostOnce)
    };
    trie.subscribe(1, &filter("a"), keep, None);
    trie.subscribe(2, &filter("a"), qos(QoS::AtMostOnce), None);
    let mut matches = Matches::new();
    trie.matches("a", None, &mut matches);
    let flags: Vec<_> = matches
        .iter()
        .map(|r| (r.subscriber, r.retain_as_published))
        .collect();
    assert_eq!(flags, [(1, true), (2, false)]);
}

#[test]
fn subscribing_again_replaces_the_options() {
    let mut trie = SubscriptionTrie::default();
    let first = SubscriptionOptions {
        retain_handling: RetainHandling::SendIfNewSubscription,
        ..qos(QoS::AtMostOnce)
    };
    let a = filter("a/+");
    assert_eq!(trie.subscribe(1, &a, first, id(4)), SubscribeOutcome::New);
    assert_eq!(trie.subscribe(2, &a, first, id(4)), SubscribeOutcome::New);
    let second = qos(QoS::ExactlyOnce);
    assert_eq!(
        trie.subscribe(1, &a, second, None),
        SubscribeOutcome::Replaced
    );
    assert!(!trie.subscribe(1, &a, second, None).is_new());
    assert_eq!(trie.len(), 2);

    let subscriptions = trie.subscriptions_of(1);
    assert_eq!(subscriptions.len(), 1);
    assert_eq!(subscriptions[0].options, second);
    assert_eq!(subscriptions[0].identifier, None);

    // `a/+` and `a/#` and `$share/g/a/+` are three different subscriptions.
    assert!(subscribe(&mut trie, 1, "a/#").is_new());
    assert!(subscribe(&mut trie, 1, "$share/g/a/+").is_new());
    assert!(subscribe(&mut trie, 1, "$share/h/a/+").is_new());
    assert!(!subscribe(&mut trie, 1, "$share/h/a/+").is_new());
    assert_eq!(trie.len(), 5);
}

#[test]
fn unsubscribe_removes_only_the_exact_subscription_and_prunes() {
    let mut trie = SubscriptionTrie::default();
    subscribe(&mut trie, 1, "a/b/c");
    subscribe(&mut trie, 1, "a/+/c");
    subscribe(&mut trie, 2, "a/b/c");
    assert!(!trie.unsubscribe(1, &filter("a/b")), "no such filter");
    assert!(!trie.unsubscribe(1, &filter("a/b/c/#")), "no such filter");
    assert!(!trie.unsubscribe(3, &filter("a/b/c")), "no such subscriber");
    assert!(
        !trie.unsubscribe(1, &filter("$share/g/a/b/c")),
        "not shared"
    );
    assert!(trie.unsubscribe(1, &filter("a/b/c")));
    assert!(!trie.unsubscribe(1, &filter("a/b/c")), "already gone");
    assert_eq!(receivers(&trie, "a/b/c"), [1, 2]);
    assert!(trie.unsubscribe(1, &filter("a/+/c")));
    assert!(trie.unsubscribe(2, &filter("a/b/c")));
    assert!(trie.is_empty());
    assert_eq!(trie.subscriber_count(), 0);
    assert_eq!(trie.node_count(), 1, "only the root is left");
    assert_eq!(trie.edges.len(), 0);
}

#[test]
fn removing_a_subscriber_leaves_the_others() {
    let mut trie = SubscriptionTrie::default();
    for text in ["a", "a/#", "+/b", "$share/g/a", "x/y/z"] {
        subscribe(&mut trie, 1, text);
    }
    subscribe(&mut trie, 2, "a");
    subscribe(&mut trie, 2, "$share/g/a");
    assert_eq!(trie.remove_subscriber(1), 5);
    assert_eq!(trie.remove_subscriber(1), 0);
    assert_eq!(trie.len(), 2);
    assert_eq!(receivers(&trie, "a"), [2, 2], "plain and shared copies");
    assert!(receivers(&trie, "x/y/z").is_empty());
    assert!(trie.subscriptions_of(1).is_empty());
    assert_eq!(trie.remove_subscriber(2), 2);
    assert_eq!(trie.node_count(), 1);
}

#[test]
fn subscriptions_of_rebuilds_the_filters() {
    let mut trie = SubscriptionTrie::default();
    let texts = [
        "#",
        "/#",
        "a//b",
        "+/+",
        "$share/g/x/#",
        "$SYS/+",
        "a-level-much-longer-than-fourteen-bytes/+",
    ];
    for text in texts {
        subscribe(&mut trie, 1, text);
    }
    let mut found: Vec<String> = trie
        .subscriptions_of(1)
        .into_iter()
        .map(|info| info.filter)
        .collect();
    found.sort();
    let mut expected: Vec<String> = texts.iter().map(|text| text.to_string()).collect();
    expected.sort();
    assert_eq!(found, expected);
}

#[test]
fn one_member_of_each_shared_group_receives() {
    let mut trie = SubscriptionTrie::default();
    for member in [1, 2, 3] {
        subscribe(&mut trie, member, "$share/workers/jobs/+");
    }
    subscribe(&mut trie, 4, "$share/auditors/jobs/#");
    subscribe(&mut trie, 5, "jobs/+");
    subscribe(&mut trie, 6, "$share/workers/other");
    let mut matches = Matches::new();
    let mut workers = Vec::new();
    for _ in 0..6 {
        trie.matches("jobs/1", None, &mut matches);
        let shared: Vec<u32> = matches
            .iter()
            .filter(|r| r.shared)
            .map(|r| r.subscriber)
            .collect();
        assert_eq!(shared.len(), 2, "one per group");
        assert!(shared.contains(&4));
        workers.extend(shared.into_iter().filter(|&s| s != 4));
        assert!(matches.iter().any(|r| r.subscriber == 5 && !r.shared));
    }
    assert_eq!(workers, [1, 2, 3, 1, 2, 3], "round robin in joining order");
}

#[test]
fn a_recipient_names_the_group_that_chose_it() {
    let mut trie = SubscriptionTrie::default();
    subscribe(&mut trie, 1, "$share/workers/jobs/+");
    subscribe(&mut trie, 2, "$share/auditors/jobs/#");
    subscribe(&mut trie, 3, "jobs/+");
    let mut matches = Matches::new();
    trie.matches("jobs/1", None, &mut matches);
    let mut groups: Vec<String> = matches
        .iter()
        .filter_map(|recipient| recipient.group)
        .map(|group| trie.shared_group_filter(group))
        .collect();
    groups.sort();
    assert_eq!(groups, ["$share/auditors/jobs/#", "$share/workers/jobs/+"]);
    let plain = matches.iter().find(|r| r.subscriber == 3).unwrap();
    assert!(plain.group.is_none() && !plain.shared);
}

#[test]
fn a_member_is_chosen_among_the_eligible_only() {
    let mut trie = SubscriptionTrie::default();
    // Even keys stand for this node's sessions, odd ones for other nodes.
    for member in [1, 2, 3, 4] {
        subscribe(&mut trie, member, "$share/g/jobs/#");
    }
    let group = filter("$share/g/jobs/#");
    let mut chosen = Vec::new();
    for _ in 0..4 {
        let member = trie
            .choose_shared_member(&group, |key| key % 2 == 0, None)
            .unwrap();
        chosen.push(member.subscriber);
    }
    chosen.sort();
    assert_eq!(chosen, [2, 2, 4, 4], "only eligible members, taking turns");
    assert!(
        trie.choose_shared_member(&group, |key| key > 10, None)
            .is_none()
    );
    assert!(
        trie.choose_shared_member(&filter("$share/other/jobs/#"), |_| true, None)
            .is_none()
    );
    assert!(
        trie.choose_shared_member(&filter("jobs/#"), |_| true, None)
            .is_none()
    );
}

#[test]
fn a_group_survives_until_its_last_member_leaves() {
    let mut trie = SubscriptionTrie::default();
    trie.subscribe(1, &filter("$share/g/a"), qos(QoS::AtLeastOnce), id(5));
    subscribe(&mut trie, 2, "$share/g/a");
    assert!(trie.unsubscribe(1, &filter("$share/g/a")));
    for _ in 0..3 {
        assert_eq!(receivers(&trie, "a"), [2]);
    }
    assert!(!trie.unsubscribe(2, &filter("$share/other/a")));
    assert!(trie.unsubscribe(2, &filter("$share/g/a")));
    assert!(receivers(&trie, "a").is_empty());
    assert_eq!(trie.node_count(), 1);
}

#[test]
fn sticky_groups_keep_each_publisher_on_one_member() {
    let mut trie = SubscriptionTrie::new(RouterConfig {
        shared_strategy: SharedStrategy::Sticky,
        seed: 11,
    });
    for member in 0..4 {
        subscribe(&mut trie, member, "$share/g/t/#");
    }
    let mut chosen = std::collections::HashSet::new();
    for publisher in 100..140 {
        let first = receivers_from(&trie, "t/x", Some(publisher));
        assert_eq!(first.len(), 1);
        for topic in ["t/x", "t/y", "t"] {
            assert_eq!(receivers_from(&trie, topic, Some(publisher)), first);
        }
        chosen.insert(first[0]);
    }
    assert!(chosen.len() > 1, "publishers spread over members");
}

#[test]
fn random_groups_are_reproducible_from_the_seed() {
    let run = |seed| {
        let mut trie = SubscriptionTrie::new(RouterConfig {
            shared_strategy: SharedStrategy::Random,
            seed,
        });
        for member in 0..5 {
            subscribe(&mut trie, member, "$share/g/t");
        }
        (0..50)
            .map(|_| receivers(&trie, "t")[0])
            .collect::<Vec<_>>()
    };
    assert_eq!(run(1), run(1));
    assert_ne!(run(1), run(2));
}

#[test]
fn shared_recipients_carry_their_own_options() {
    let mut trie = SubscriptionTrie::default();
    let options = SubscriptionOptions {
        retain_as_published: true,
        ..qos(QoS::ExactlyOnce)
    };
    trie.subscribe(1, &filter("$share/g/a"), options, id(8));
    let mut matches = Matches::new();
    trie.matches("a", None, &mut matches);
    let recipient = matches.iter().next().unwrap();
    assert!(recipient.shared);
    assert_eq!(recipient.qos, QoS::ExactlyOnce);
    assert!(recipient.retain_as_published);
    assert_eq!(recipient.subscription_identifiers, [id(8).unwrap()]);
}

#[test]
fn a_node_is_40_bytes() {
    assert_eq!(size_of::<super::Node>(), 40);
}

#[test]
fn freed_slots_are_reused() {
    let mut trie = SubscriptionTrie::default();
    for round in 0..3 {
        for subscriber in 0..10 {
            subscribe(&mut trie, subscriber, &format!("r{round}/{subscriber}/x"));
            subscribe(&mut trie, subscriber, &format!("$share/g{round}/y"));
        }
        assert_eq!(trie.len(), 20);
        for subscriber in 0..10 {
            assert_eq!(trie.remove_subscriber(subscriber), 2);
        }
    }
    // Root, then r, 10 ids, 10 x and y: one round of nodes.
    assert_eq!(trie.nodes.len(), 1 + 22);
    assert_eq!(trie.subs.len(), 20);
    assert_eq!(trie.groups.len(), 1);
    assert!(trie.heap_bytes() > 0);
    assert!(format!("{trie:?}").contains("subscriptions: 0"));
}
