//! Matching a published topic against the trie.
//!
//! The walk keeps a frontier: the nodes whose filter prefix matches the
//! topic's levels so far. For each level, every frontier node contributes
//! its `#` subscriptions (a prefix followed by `#` matches whatever
//! follows), its child for that exact level and its `+` child. After the
//! last level, the frontier nodes contribute their exact subscriptions and
//! their `#` subscriptions too (`sport/#` matches `sport`).
//!
//! A topic starting with `$` skips the root's `#` and `+`, since filters
//! starting with a wildcard never match such topics (MQTT 5 §4.7.2). Deeper
//! nodes are only reached through a literal `$...` first level, so the
//! rule needs no other check.

use super::records::Sub;
use super::split_filter;
use super::{ROOT, SubscriptionTrie};
use crate::matches::{Matches, SharedGroup};
use crate::shared::SubIndex;
use crate::{NIL, SubscriberKey};
use std::num::NonZeroU32;
use tern_codec::{QoS, TopicFilter};

/// The member [`SubscriptionTrie::choose_shared_member`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedMember<S> {
    /// Who receives the message.
    pub subscriber: S,
    /// The QoS the member subscribed with.
    pub qos: QoS,
    /// Keep the RETAIN flag as published.
    pub retain_as_published: bool,
    /// The member's subscription identifier.
    pub identifier: Option<NonZeroU32>,
}

impl<S: SubscriberKey> SubscriptionTrie<S> {
    /// Finds who receives a message published to `topic` by `publisher`.
    ///
    /// `topic` must be a valid topic name (see
    /// [`tern_codec::topic::validate_topic_name`]; the codec checks every
    /// PUBLISH). `publisher` is the id of the publishing subscriber, used
    /// by no-local subscriptions and the sticky strategy; `None` for
    /// messages from the broker itself or from another node. The result
    /// replaces the contents of `out`.
    pub fn matches(&self, topic: &str, publisher: Option<S>, out: &mut Matches<S>) {
        debug_assert!(
            tern_codec::topic::validate_topic_name(topic).is_ok(),
            "not a topic name: {topic:?}"
        );
        out.clear();
        let mut frontier = std::mem::take(&mut out.frontier);
        let mut next = std::mem::take(&mut out.next_frontier);
        frontier.push(ROOT);
        let dollar = topic.starts_with('$');
        for level in topic.as_bytes().split(|&byte| byte == b'/') {
            next.clear();
            for &id in &frontier {
                let node = &self.nodes[id as usize];
                let wildcards_apply = !(dollar && id == ROOT);
                if wildcards_apply {
                    self.collect_list(node.multi, publisher, out);
                    self.collect_groups(node.groups, true, publisher, out);
                    if node.plus != NIL {
                        next.push(node.plus);
                    }
                }
                if let Some(child) = self.edges.find(id, level, super::key_of(&self.nodes)) {
                    next.push(child);
                }
            }
            std::mem::swap(&mut frontier, &mut next);
            if frontier.is_empty() {
                break;
            }
        }
        for &id in &frontier {
            let node = &self.nodes[id as usize];
            self.collect_list(node.exact, publisher, out);
            self.collect_list(node.multi, publisher, out);
            self.collect_groups(node.groups, false, publisher, out);
        }
        out.frontier = frontier;
        out.next_frontier = next;
        out.finish();
    }

    /// The filter of a shared group a match returned
    /// ([`crate::Recipient::group`]), as subscribed: `$share/{name}/{filter}`.
    pub fn shared_group_filter(&self, group: SharedGroup) -> String {
        let group = &self.groups[group.0 as usize];
        self.filter_text(group.node, group.multi, Some(&group.name))
    }

    /// One member of the shared group `filter` (`$share/{name}/{filter}`)
    /// among those `eligible` accepts, chosen by the group's strategy as a
    /// match would: how a cluster node delivers a message another node
    /// routed to it for that group. `None` if the group has no eligible
    /// member (or `filter` is not shared).
    pub fn choose_shared_member(
        &self,
        filter: &TopicFilter,
        eligible: impl Fn(S) -> bool,
        publisher: Option<S>,
    ) -> Option<SharedMember<S>> {
        let name = filter.share_group()?;
        let (levels, multi) = split_filter(filter);
        let node = self.find_path(levels)?;
        let group = &self.groups[self.find_group(node, multi, name)? as usize];
        let members: Vec<&Sub<S>> = group
            .members
            .iter()
            .map(|&index| &self.subs[index as usize])
            .filter(|record| eligible(record.subscriber))
            .collect();
        if members.is_empty() {
            return None;
        }
        let record = members[self.picker.pick(&group.cursor, publisher, members.len())];
        Some(SharedMember {
            subscriber: record.subscriber,
            qos: record.options.qos(),
            retain_as_published: record.options.retain_as_published(),
            identifier: record.identifier,
        })
    }

    /// Adds the records of one node list, honouring no-local.
    fn collect_list(&self, mut index: SubIndex, publisher: Option<S>, out: &mut Matches<S>) {
        while index != NIL {
            let record: &Sub<S> = &self.subs[index as usize];
            let is_own_message = record.options.no_local() && publisher == Some(record.subscriber);
            if !is_own_message {
                out.push_hit(
                    record.subscriber,
                    record.options.qos(),
                    record.options.retain_as_published(),
                    record.identifier,
                );
            }
            index = record.next;
        }
    }

    /// Lets each group in a node's list choose one member. With
    /// `multi_only`, only groups whose filter ends in `#` take part (the
    /// topic has more levels than their prefix).
    ///
    /// No-local is not applied: MQTT 5 forbids it on shared subscriptions
    /// (§3.8.3.1), and the session refuses such a SUBSCRIBE.
    fn collect_groups(
        &self,
        mut index: u32,
        multi_only: bool,
        publisher: Option<S>,
        out: &mut Matches<S>,
    ) {
        while index != NIL {
            let group = &self.groups[index as usize];
            if group.multi || !multi_only {
                let chosen = self
                    .picker
                    .pick(&group.cursor, publisher, group.members.len());
                let record = &self.subs[group.members[chosen] as usize];
                out.push_shared(
                    index,
                    record.subscriber,
                    record.options.qos(),
                    record.options.retain_as_published(),
                    record.identifier,
                );
            }
            index = group.next_at_node;
        }
    }
}
