//! The retained-message index: the last retained message of each topic,
//! found from a new subscription's filter without scanning every topic.
//!
//! Topics form a trie by level. A filter walks it: an exact level follows
//! one edge (a hash lookup), `+` visits every child, `#` takes the whole
//! subtree including the node itself (`sport/#` matches `sport`). At the
//! root, `+` and `#` skip children starting with `$` (MQTT 5 §4.7.2). The
//! cost is the size of the matched part of the trie, not of the index.
//!
//! Children are linked as siblings (for `+` and `#`) and also entered in a
//! flat [`EdgeTable`] (for exact levels), as in the subscription trie. The
//! value type is the broker's: typically a shared pointer to the message.
//!
//! The index is a plain data structure taking `&mut self` for writes; the
//! broker shares it the way [`crate::Router`] shares the subscription trie,
//! behind one `RwLock`.

use std::fmt;

use tern_codec::TopicFilter;

use crate::NIL;
use crate::edges::{EdgeTable, NodeId};
use crate::level::Level;

/// The root: the empty prefix, parent of every first level. Never freed.
const ROOT: NodeId = 0;

struct RetainedNode<V> {
    level: Level,
    parent: NodeId,
    first_child: NodeId,
    prev_sibling: NodeId,
    next_sibling: NodeId,
    value: Option<V>,
}

impl<V> RetainedNode<V> {
    fn new(parent: NodeId, level: &str) -> Self {
        Self {
            level: Level::new(level),
            parent,
            first_child: NIL,
            prev_sibling: NIL,
            next_sibling: NIL,
            value: None,
        }
    }
}

fn key_of<'a, V>(nodes: &'a [RetainedNode<V>]) -> impl Fn(NodeId) -> (NodeId, &'a Level) + 'a {
    |id| {
        let node = &nodes[id as usize];
        (node.parent, &node.level)
    }
}

/// Retained values by topic name, searchable by topic filter.
pub struct RetainedIndex<V> {
    nodes: Vec<RetainedNode<V>>,
    free_nodes: Vec<NodeId>,
    edges: EdgeTable,
    len: usize,
}

impl<V> Default for RetainedIndex<V> {
    fn default() -> Self {
        Self {
            nodes: vec![RetainedNode::new(NIL, "")],
            free_nodes: Vec::new(),
            edges: EdgeTable::default(),
            len: 0,
        }
    }
}

impl<V> fmt::Debug for RetainedIndex<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetainedIndex")
            .field("topics", &self.len)
            .field("nodes", &(self.nodes.len() - self.free_nodes.len()))
            .field("edges", &self.edges.len())
            .finish()
    }
}

impl<V> RetainedIndex<V> {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of topics with a retained value.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True if no topic has a retained value.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Stores `value` as the retained message of `topic` (a valid topic
    /// name) and returns the one it replaces.
    pub fn insert(&mut self, topic: &str, value: V) -> Option<V> {
        let mut node = ROOT;
        for level in topic.split('/') {
            node = match self.edges.find(node, level, key_of(&self.nodes)) {
                Some(child) => child,
                None => self.add_child(node, level),
            };
        }
        let previous = self.nodes[node as usize].value.replace(value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// Removes the retained message of `topic` (a PUBLISH with RETAIN and
    /// an empty payload) and returns it.
    pub fn remove(&mut self, topic: &str) -> Option<V> {
        let node = self.find(topic)?;
        let previous = self.nodes[node as usize].value.take()?;
        self.len -= 1;
        self.prune(node);
        Some(previous)
    }

    /// The retained message of exactly `topic`.
    pub fn get(&self, topic: &str) -> Option<&V> {
        self.nodes[self.find(topic)? as usize].value.as_ref()
    }

    /// Calls `visit` with every retained value whose topic matches
    /// `filter`. A shared filter is matched without its `$share/{group}/`
    /// prefix; whether shared subscriptions get retained messages at all is
    /// the broker's decision (MQTT 5 says they do not).
    pub fn for_each_match<'a>(&'a self, filter: &TopicFilter, mut visit: impl FnMut(&'a V)) {
        let levels: Vec<&str> = filter.filter().split('/').collect();
        let mut pending = vec![(ROOT, 0usize)];
        while let Some((id, depth)) = pending.pop() {
            let node = &self.nodes[id as usize];
            let Some(&level) = levels.get(depth) else {
                if let Some(value) = &node.value {
                    visit(value);
                }
                continue;
            };
            match level {
                "#" => self.visit_subtree(id, &mut visit),
                "+" => {
                    for child in self.children(id) {
                        pending.push((child, depth + 1));
                    }
                }
                exact => {
                    if let Some(child) = self.edges.find(id, exact, key_of(&self.nodes)) {
                        pending.push((child, depth + 1));
                    }
                }
            }
        }
    }

    /// The retained values matching `filter`, in no particular order.
    pub fn matching(&self, filter: &TopicFilter) -> Vec<&V> {
        let mut found = Vec::new();
        self.for_each_match(filter, |value| found.push(value));
        found
    }

    /// An estimate of the heap bytes held by the index itself (not by the
    /// values' own allocations).
    pub fn heap_bytes(&self) -> usize {
        let levels: usize = self.nodes.iter().map(|node| node.level.heap_bytes()).sum();
        self.nodes.capacity() * size_of::<RetainedNode<V>>()
            + levels
            + self.free_nodes.capacity() * size_of::<NodeId>()
            + self.edges.heap_bytes()
    }

    /// The children of `id` that wildcards may match: all of them, except
    /// `$` topics below the root.
    fn children(&self, id: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        let mut child = self.nodes[id as usize].first_child;
        std::iter::from_fn(move || {
            while child != NIL {
                let current = child;
                let node = &self.nodes[current as usize];
                child = node.next_sibling;
                if !(id == ROOT && node.level.starts_with_dollar()) {
                    return Some(current);
                }
            }
            None
        })
    }

    /// Visits `id`'s value and every value below it, for a `#` level.
    fn visit_subtree<'a>(&'a self, id: NodeId, visit: &mut impl FnMut(&'a V)) {
        if let Some(value) = &self.nodes[id as usize].value {
            visit(value);
        }
        let mut pending: Vec<NodeId> = self.children(id).collect();
        while let Some(current) = pending.pop() {
            let node = &self.nodes[current as usize];
            if let Some(value) = &node.value {
                visit(value);
            }
            let mut child = node.first_child;
            while child != NIL {
                pending.push(child);
                child = self.nodes[child as usize].next_sibling;
            }
        }
    }

    fn find(&self, topic: &str) -> Option<NodeId> {
        let mut node = ROOT;
        for level in topic.as_bytes().split(|&byte| byte == b'/') {
            node = self.edges.find(node, level, key_of(&self.nodes))?;
        }
        Some(node)
    }

    fn add_child(&mut self, parent: NodeId, level: &str) -> NodeId {
        let mut fresh = RetainedNode::new(parent, level);
        let first = self.nodes[parent as usize].first_child;
        fresh.next_sibling = first;
        let child = match self.free_nodes.pop() {
            Some(slot) => {
                self.nodes[slot as usize] = fresh;
                slot
            }
            None => {
                self.nodes.push(fresh);
                (self.nodes.len() - 1) as NodeId
            }
        };
        if first != NIL {
            self.nodes[first as usize].prev_sibling = child;
        }
        self.nodes[parent as usize].first_child = child;
        self.edges.insert(child, key_of(&self.nodes));
        child
    }

    /// Frees `id` and its ancestors while they hold nothing.
    fn prune(&mut self, mut id: NodeId) {
        loop {
            let node = &self.nodes[id as usize];
            if id == ROOT || node.value.is_some() || node.first_child != NIL {
                return;
            }
            let (parent, prev, next) = (node.parent, node.prev_sibling, node.next_sibling);
            if prev == NIL {
                self.nodes[parent as usize].first_child = next;
            } else {
                self.nodes[prev as usize].next_sibling = next;
            }
            if next != NIL {
                self.nodes[next as usize].prev_sibling = prev;
            }
            let removed = self.edges.remove(id, key_of(&self.nodes));
            debug_assert!(removed, "every retained node has an edge");
            self.nodes[id as usize] = RetainedNode::new(NIL, "");
            self.free_nodes.push(id);
            id = parent;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(topics: &[&'static str]) -> RetainedIndex<&'static str> {
        let mut index = RetainedIndex::new();
        for topic in topics {
            assert_eq!(index.insert(topic, *topic), None);
        }
        index
    }

    fn found(index: &RetainedIndex<&'static str>, filter: &str) -> Vec<&'static str> {
        let filter = TopicFilter::new(filter).unwrap();
        let mut found: Vec<_> = index.matching(&filter).into_iter().copied().collect();
        found.sort_unstable();
        found
    }

    #[test]
    fn filters_find_their_topics() {
        let index = index(&[
            "sport",
            "sport/tennis",
            "sport/tennis/player1",
            "sport/golf",
            "/finance",
            "$SYS/uptime",
            "a//b",
        ]);
        assert_eq!(
            found(&index, "sport/#"),
            [
                "sport",
                "sport/golf",
                "sport/tennis",
                "sport/tennis/player1"
            ]
        );
        assert_eq!(found(&index, "sport/+"), ["sport/golf", "sport/tennis"]);
        assert_eq!(found(&index, "sport/tennis"), ["sport/tennis"]);
        assert_eq!(
            found(&index, "+/+"),
            ["/finance", "sport/golf", "sport/tennis"]
        );
        assert_eq!(found(&index, "a/+/b"), ["a//b"]);
        assert_eq!(found(&index, "$SYS/#"), ["$SYS/uptime"]);
        assert_eq!(found(&index, "$share/g/sport/golf"), ["sport/golf"]);
        assert!(found(&index, "sport/tennis/+/x").is_empty());
    }

    #[test]
    fn wildcards_at_the_root_skip_dollar_topics() {
        let index = index(&["$SYS/uptime", "$SYS", "x"]);
        assert_eq!(found(&index, "#"), ["x"]);
        assert_eq!(found(&index, "+"), ["x"]);
        assert!(found(&index, "+/uptime").is_empty());
        assert_eq!(found(&index, "$SYS/+"), ["$SYS/uptime"]);
        assert_eq!(found(&index, "$SYS"), ["$SYS"]);
    }

    #[test]
    fn insert_replaces_and_remove_prunes() {
        let mut index = index(&["a/b/c", "a/b"]);
        assert_eq!(index.insert("a/b/c", "new"), Some("a/b/c"));
        assert_eq!(index.len(), 2);
        assert_eq!(index.get("a/b/c"), Some(&"new"));
        assert_eq!(index.get("a"), None);
        assert_eq!(index.remove("a"), None);
        assert_eq!(index.remove("a/b/c"), Some("new"));
        assert_eq!(index.remove("a/b/c"), None);
        assert_eq!(index.len(), 1);
        assert_eq!(index.edges.len(), 2, "the c node was pruned");
        assert_eq!(index.remove("a/b"), Some("a/b"));
        assert!(index.is_empty());
        assert_eq!(index.edges.len(), 0);
        assert_eq!(index.nodes[ROOT as usize].first_child, NIL);
        index.insert("z", "z");
        assert_eq!(index.nodes.len(), 4, "freed slots are reused");
        assert!(index.heap_bytes() > 0);
    }
}
