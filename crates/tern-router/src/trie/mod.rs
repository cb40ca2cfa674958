//! The subscription trie: which subscriber wants which filter, with what
//! options, arranged so that a published topic finds its subscribers in time
//! that depends on its levels and on the subscriptions that match it, not on
//! how many subscriptions there are.
//!
//! # Layout
//!
//! Everything lives in flat arenas indexed by `u32`, so the trie holds no
//! pointer per node and no hash map per node:
//!
//! - `nodes`: one [`Node`] (40 bytes) per distinct filter prefix. A node
//!   knows its parent and level (for pruning and for the edge table), its
//!   `+` child, how many children it has, and the heads of three lists:
//!   subscriptions whose filter ends exactly here, those ending in `/#`
//!   here, and shared groups here.
//! - `edges`: one [`EdgeTable`] for all `(parent, level) -> child` edges
//!   except `+`, which is a field of the node so matching needs no lookup.
//! - `subs`: one [`Sub`] record (32 bytes for a `u64` subscriber) per
//!   subscription, linked into its node's list (doubly, so leaving is O(1))
//!   and into its subscriber's list (singly).
//! - `subscribers`: subscriber -> head of its list, so a session's end
//!   removes its subscriptions without looking at anyone else's.
//! - `groups`: shared groups; their members are subscription records.
//!
//! Empty nodes are pruned upward on every removal, and freed slots are
//! reused, so memory follows the live subscriptions.

mod matching;
pub use matching::SharedMember;
mod records;
#[cfg(test)]
mod tests;

use std::fmt;
use std::num::NonZeroU32;

use hashbrown::HashMap;
use tern_codec::{SubscriptionOptions, TopicFilter};

use crate::edges::{EdgeTable, NodeId};
use crate::level::Level;
use crate::shared::{Group, Picker, RouterConfig, SubIndex};
use crate::{NIL, SubscriberKey};

use records::{Kind, PackedOptions, Sub};

/// The root node: the empty prefix. Never freed.
const ROOT: NodeId = 0;

/// Whether a subscribe added a subscription or replaced one.
///
/// MQTT 5 retain handling 1 ("send retained messages only if the
/// subscription did not exist") needs this answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscribeOutcome {
    /// The subscriber had no subscription with this filter.
    New,
    /// The subscriber already had it; its options and identifier were
    /// replaced.
    Replaced,
}

impl SubscribeOutcome {
    /// True for [`SubscribeOutcome::New`].
    pub fn is_new(self) -> bool {
        self == Self::New
    }
}

/// One subscription as [`SubscriptionTrie::subscriptions_of`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionInfo {
    /// The filter as subscribed, with `$share/{group}/` for shared ones.
    pub filter: String,
    /// The options given at subscribe time.
    pub options: SubscriptionOptions,
    /// The MQTT 5 subscription identifier, if any.
    pub identifier: Option<NonZeroU32>,
}

/// One distinct filter prefix.
#[derive(Debug)]
struct Node {
    level: Level,
    parent: NodeId,
    /// The child for a `+` level, or [`NIL`].
    plus: NodeId,
    /// Number of children, the `+` child included.
    children: u32,
    /// Head of the list of subscriptions to exactly this prefix.
    exact: SubIndex,
    /// Head of the list of subscriptions to this prefix followed by `/#`.
    multi: SubIndex,
    /// Head of the list of shared groups at this node.
    groups: u32,
}

impl Node {
    fn new(parent: NodeId, level: &str) -> Self {
        Self {
            level: Level::new(level),
            parent,
            plus: NIL,
            children: 0,
            exact: NIL,
            multi: NIL,
            groups: NIL,
        }
    }

    fn is_unused(&self) -> bool {
        self.children == 0 && self.exact == NIL && self.multi == NIL && self.groups == NIL
    }
}

/// The levels of a filter that walk the trie, and whether it ends in `#`
/// (which is not a node: `a/#` lives in the `multi` list of node `a`, and
/// `#` in the root's).
fn split_filter(filter: &TopicFilter) -> (impl Iterator<Item = &str>, bool) {
    let text = filter.filter();
    let (prefix, multi) = if text == "#" {
        (None, true)
    } else if let Some(prefix) = text.strip_suffix("/#") {
        (Some(prefix), true)
    } else {
        (Some(text), false)
    };
    (
        prefix.into_iter().flat_map(|prefix| prefix.split('/')),
        multi,
    )
}

/// Resolves a node index to its edge key, for the [`EdgeTable`].
fn key_of<'a>(nodes: &'a [Node]) -> impl Fn(NodeId) -> (NodeId, &'a Level) + 'a {
    |id| {
        let node = &nodes[id as usize];
        (node.parent, &node.level)
    }
}

/// Subscriptions of many subscribers, matched against published topics.
///
/// `S` identifies a subscriber; see [`SubscriberKey`]. All methods taking
/// `&mut self` are short (proportional to the filter's levels and to the
/// number of subscriptions of the one subscriber involved), which is what
/// lets [`crate::Router`] hold its write lock briefly.
pub struct SubscriptionTrie<S> {
    nodes: Vec<Node>,
    free_nodes: Vec<NodeId>,
    edges: EdgeTable,
    subs: Vec<Sub<S>>,
    free_subs: Vec<SubIndex>,
    groups: Vec<Group>,
    free_groups: Vec<u32>,
    subscribers: HashMap<S, SubIndex>,
    picker: Picker,
    len: usize,
}

impl<S: SubscriberKey> Default for SubscriptionTrie<S> {
    fn default() -> Self {
        Self::new(RouterConfig::default())
    }
}

impl<S> fmt::Debug for SubscriptionTrie<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubscriptionTrie")
            .field("subscriptions", &self.len)
            .field("subscribers", &self.subscribers.len())
            .field("nodes", &(self.nodes.len() - self.free_nodes.len()))
            .field("edges", &self.edges.len())
            .field("groups", &(self.groups.len() - self.free_groups.len()))
            .field("shared_strategy", &self.picker.strategy())
            .finish()
    }
}

impl<S: SubscriberKey> SubscriptionTrie<S> {
    /// An empty trie whose shared groups follow `config`.
    pub fn new(config: RouterConfig) -> Self {
        Self {
            nodes: vec![Node::new(NIL, "")],
            free_nodes: Vec::new(),
            edges: EdgeTable::default(),
            subs: Vec::new(),
            free_subs: Vec::new(),
            groups: Vec::new(),
            free_groups: Vec::new(),
            subscribers: HashMap::new(),
            picker: Picker::new(config),
            len: 0,
        }
    }

    /// Number of subscriptions, shared memberships included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if there is no subscription.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of subscribers with at least one subscription.
    pub fn subscriber_count(&self) -> usize {
        self.subscribers.len()
    }

    /// Number of live trie nodes, the root included.
    pub fn node_count(&self) -> usize {
        self.nodes.len() - self.free_nodes.len()
    }

    /// Adds or replaces `subscriber`'s subscription to `filter`.
    ///
    /// A shared filter (`$share/g/f`) makes the subscriber a member of group
    /// `g` on `f`. Subscribing again to the same filter text replaces the
    /// options and identifier and answers [`SubscribeOutcome::Replaced`].
    pub fn subscribe(
        &mut self,
        subscriber: S,
        filter: &TopicFilter,
        options: SubscriptionOptions,
        identifier: Option<NonZeroU32>,
    ) -> SubscribeOutcome {
        let (levels, multi) = split_filter(filter);
        let (node, new_node) = self.ensure_path(levels);
        let (kind, owner, new_owner) = match filter.share_group() {
            None if multi => (Kind::Multi, node, new_node),
            None => (Kind::Exact, node, new_node),
            Some(name) => {
                let (group, new_group) = self.ensure_group(node, multi, name);
                (Kind::Shared, group, new_group)
            }
        };
        // A node or group created just now has no subscription to replace,
        // which spares the walk of the subscriber's list: a subscriber with
        // many distinct filters (a bridge, a cluster peer) subscribes in
        // constant time. Only re-subscribing to an existing filter walks it.
        let existing = if new_owner {
            None
        } else {
            self.find_record(subscriber, kind, owner)
        };
        if let Some((index, _)) = existing {
            let record = &mut self.subs[index as usize];
            record.options = PackedOptions::pack(options);
            record.identifier = identifier;
            return SubscribeOutcome::Replaced;
        }
        let index = self.alloc_record(Sub {
            subscriber,
            owner,
            prev: NIL,
            next: NIL,
            next_of_subscriber: NIL,
            identifier,
            options: PackedOptions::pack(options),
            kind,
        });
        match kind {
            Kind::Exact | Kind::Multi => self.link_at_node(index),
            Kind::Shared => self.join_group(index),
            Kind::Vacant => unreachable!("a new record is never vacant"),
        }
        let head = self.subscribers.entry(subscriber).or_insert(NIL);
        self.subs[index as usize].next_of_subscriber = *head;
        *head = index;
        self.len += 1;
        SubscribeOutcome::New
    }

    /// Removes `subscriber`'s subscription to exactly `filter` (same text,
    /// same share group). Returns whether there was one.
    pub fn unsubscribe(&mut self, subscriber: S, filter: &TopicFilter) -> bool {
        let (levels, multi) = split_filter(filter);
        let Some(node) = self.find_path(levels) else {
            return false;
        };
        let (kind, owner) = match filter.share_group() {
            None if multi => (Kind::Multi, node),
            None => (Kind::Exact, node),
            Some(name) => match self.find_group(node, multi, name) {
                Some(group) => (Kind::Shared, group),
                None => return false,
            },
        };
        let Some((index, previous)) = self.find_record(subscriber, kind, owner) else {
            return false;
        };
        let next = self.subs[index as usize].next_of_subscriber;
        if previous != NIL {
            self.subs[previous as usize].next_of_subscriber = next;
        } else if next != NIL {
            self.subscribers.insert(subscriber, next);
        } else {
            self.subscribers.remove(&subscriber);
        }
        self.detach(index);
        true
    }

    /// Removes every subscription of `subscriber` (at the end of its
    /// session) and returns how many there were. Touches only that
    /// subscriber's records, never the rest of the trie.
    pub fn remove_subscriber(&mut self, subscriber: S) -> usize {
        let Some(mut index) = self.subscribers.remove(&subscriber) else {
            return 0;
        };
        let mut removed = 0;
        while index != NIL {
            let next = self.subs[index as usize].next_of_subscriber;
            self.detach(index);
            removed += 1;
            index = next;
        }
        removed
    }

    /// The subscriptions of `subscriber`, newest first, with their filters
    /// rebuilt from the trie. Meant for administration and tests.
    pub fn subscriptions_of(&self, subscriber: S) -> Vec<SubscriptionInfo> {
        let mut found = Vec::new();
        let mut index = self.subscribers.get(&subscriber).copied().unwrap_or(NIL);
        while index != NIL {
            let record = &self.subs[index as usize];
            let (node, multi, group) = match record.kind {
                Kind::Exact => (record.owner, false, None),
                Kind::Multi => (record.owner, true, None),
                Kind::Shared => {
                    let group = &self.groups[record.owner as usize];
                    (group.node, group.multi, Some(&*group.name))
                }
                Kind::Vacant => unreachable!("a subscriber's list holds live records"),
            };
            found.push(SubscriptionInfo {
                filter: self.filter_text(node, multi, group),
                options: record.options.unpack(),
                identifier: record.identifier,
            });
            index = record.next_of_subscriber;
        }
        found
    }

    /// An estimate of the heap bytes this trie holds, from the capacities
    /// of its arenas and tables. The benchmark checks it against a counting
    /// allocator.
    pub fn heap_bytes(&self) -> usize {
        let levels: usize = self.nodes.iter().map(|node| node.level.heap_bytes()).sum();
        let groups: usize = self.groups.iter().map(Group::heap_bytes).sum();
        self.nodes.capacity() * size_of::<Node>()
            + levels
            + self.free_nodes.capacity() * size_of::<NodeId>()
            + self.edges.heap_bytes()
            + self.subs.capacity() * size_of::<Sub<S>>()
            + self.free_subs.capacity() * size_of::<SubIndex>()
            + self.groups.capacity() * size_of::<Group>()
            + groups
            + self.free_groups.capacity() * size_of::<u32>()
            + self.subscribers.allocation_size()
    }

    /// The text of the filter ending at `node`.
    fn filter_text(&self, node: NodeId, multi: bool, group: Option<&str>) -> String {
        let mut levels = Vec::new();
        let mut current = node;
        while current != ROOT {
            let node = &self.nodes[current as usize];
            levels.push(node.level.to_text());
            current = node.parent;
        }
        if multi {
            levels.insert(0, "#".to_owned());
        }
        levels.reverse();
        let filter = levels.join("/");
        match group {
            Some(name) => format!("{}{name}/{filter}", tern_codec::topic::SHARED_PREFIX),
            None => filter,
        }
    }

    /// The node of a filter prefix, if it exists.
    fn find_path<'a>(&self, levels: impl Iterator<Item = &'a str>) -> Option<NodeId> {
        let mut node = ROOT;
        for level in levels {
            node = if level == "+" {
                Some(self.nodes[node as usize].plus).filter(|&plus| plus != NIL)?
            } else {
                self.edges.find(node, level, key_of(&self.nodes))?
            };
        }
        Some(node)
    }

    /// The node of a filter prefix, created with its ancestors if needed,
    /// and whether it was created.
    fn ensure_path<'a>(&mut self, levels: impl Iterator<Item = &'a str>) -> (NodeId, bool) {
        let mut node = ROOT;
        let mut created = false;
        for level in levels {
            let existing = if level == "+" {
                Some(self.nodes[node as usize].plus).filter(|&plus| plus != NIL)
            } else {
                self.edges.find(node, level, key_of(&self.nodes))
            };
            node = match existing {
                Some(child) => child,
                None => {
                    created = true;
                    self.add_child(node, level)
                }
            };
        }
        (node, created)
    }

    fn add_child(&mut self, parent: NodeId, level: &str) -> NodeId {
        let fresh = Node::new(parent, level);
        let child = match self.free_nodes.pop() {
            Some(slot) => {
                self.nodes[slot as usize] = fresh;
                slot
            }
            None => {
                self.nodes.push(fresh);
                // Four billion nodes would need 160 GB; index fits in u32.
                (self.nodes.len() - 1) as NodeId
            }
        };
        if level == "+" {
            self.nodes[parent as usize].plus = child;
        } else {
            self.edges.insert(child, key_of(&self.nodes));
        }
        self.nodes[parent as usize].children += 1;
        child
    }

    /// Frees `node` and its ancestors as long as nothing uses them.
    fn prune(&mut self, mut node: NodeId) {
        while node != ROOT && self.nodes[node as usize].is_unused() {
            let parent = self.nodes[node as usize].parent;
            if self.nodes[parent as usize].plus == node {
                self.nodes[parent as usize].plus = NIL;
            } else {
                let removed = self.edges.remove(node, key_of(&self.nodes));
                debug_assert!(removed, "every non-plus node has an edge");
            }
            self.nodes[parent as usize].children -= 1;
            // Drop a long level now rather than when the slot is reused.
            self.nodes[node as usize] = Node::new(NIL, "");
            self.free_nodes.push(node);
            node = parent;
        }
    }
}
