//! The flat edge map shared by both tries: `(parent node, level) -> child`.
//!
//! Instead of a hash map inside every node (48 bytes empty, plus an
//! allocation as soon as it has a child), each trie keeps one hash table for
//! all its edges. The key `(parent, level)` is not stored: it is read back
//! from the child node, which holds its parent and level anyway (for
//! pruning). A slot is 6 bytes: the child's 4-byte index and 16 bits of the
//! key's hash, so a lookup touches one slot's cache line and then only the
//! node it is looking for, which the walk needs next anyway.
//!
//! This is why the table is written here rather than taken from hashbrown:
//! hashbrown keeps control bytes and slots in different cache lines, so a
//! lookup in a table larger than the cache costs one memory miss more, and
//! matching at a million subscriptions is bound by those misses.
//!
//! The table uses linear probing with at most 3/4 of the slots used, and
//! backward-shift deletion, so it has no tombstones. Slot value 0 means
//! empty: node 0 is a trie's root, which is never anyone's child.
//!
//! The callers pass a `key_of` closure that resolves a node index to its
//! `(parent, level)`; the table never sees the node arena itself.

use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder;

use crate::level::Level;

/// Index of a node in a trie's arena.
pub(crate) type NodeId = u32;

/// A child index and 16 bits of its key's hash, packed in 6 bytes.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Slot([u8; 6]);

const EMPTY: Slot = Slot([0; 6]);

/// The smallest table, once something is inserted.
const MIN_SLOTS: usize = 16;

impl Slot {
    fn new(child: NodeId, tag: u16) -> Self {
        let [c0, c1, c2, c3] = child.to_le_bytes();
        let [t0, t1] = tag.to_le_bytes();
        Self([c0, c1, c2, c3, t0, t1])
    }

    fn child(self) -> NodeId {
        let [c0, c1, c2, c3, _, _] = self.0;
        u32::from_le_bytes([c0, c1, c2, c3])
    }

    fn tag(self) -> u16 {
        u16::from_le_bytes([self.0[4], self.0[5]])
    }

    fn is_empty(self) -> bool {
        self == EMPTY
    }
}

/// The tag is taken from the bits that do not choose the slot.
fn tag_of(hash: u64) -> u16 {
    (hash >> 48) as u16
}

/// All edges of one trie, keyed by parent index and level bytes.
#[derive(Default)]
pub(crate) struct EdgeTable {
    /// A power of two long, or empty.
    slots: Vec<Slot>,
    len: usize,
    hasher: DefaultHashBuilder,
}

impl EdgeTable {
    fn hash(&self, parent: NodeId, level: &[u8]) -> u64 {
        self.hasher.hash_one((parent, level))
    }

    fn home(&self, hash: u64) -> usize {
        hash as usize & (self.slots.len() - 1)
    }

    fn next(&self, index: usize) -> usize {
        (index + 1) & (self.slots.len() - 1)
    }

    /// The child of `parent` at `level`, if any.
    ///
    /// `level` is text or bytes: a topic's levels are split as bytes, on
    /// `/`, which is cheaper than splitting the text by characters.
    pub(crate) fn find<'a>(
        &self,
        parent: NodeId,
        level: &(impl AsRef<[u8]> + ?Sized),
        key_of: impl Fn(NodeId) -> (NodeId, &'a Level),
    ) -> Option<NodeId> {
        if self.slots.is_empty() {
            return None;
        }
        let level = level.as_ref();
        let hash = self.hash(parent, level);
        let tag = tag_of(hash);
        let mut index = self.home(hash);
        // Terminates: at least a quarter of the slots are empty.
        loop {
            let slot = self.slots[index];
            if slot.is_empty() {
                return None;
            }
            if slot.tag() == tag {
                let (child_parent, child_level) = key_of(slot.child());
                if child_parent == parent && child_level.is(level) {
                    return Some(slot.child());
                }
            }
            index = self.next(index);
        }
    }

    /// Records `child` under its own `(parent, level)`, which `key_of` must
    /// already return. The caller guarantees the edge does not exist yet.
    pub(crate) fn insert<'a>(
        &mut self,
        child: NodeId,
        key_of: impl Fn(NodeId) -> (NodeId, &'a Level),
    ) {
        debug_assert_ne!(child, 0, "the root is nobody's child");
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow(&key_of);
        }
        let (parent, level) = key_of(child);
        let hash = self.hash(parent, level.as_bytes());
        self.place(Slot::new(child, tag_of(hash)), hash);
        self.len += 1;
    }

    fn place(&mut self, slot: Slot, hash: u64) {
        let mut index = self.home(hash);
        while !self.slots[index].is_empty() {
            index = self.next(index);
        }
        self.slots[index] = slot;
    }

    fn grow<'a>(&mut self, key_of: &impl Fn(NodeId) -> (NodeId, &'a Level)) {
        let size = (self.slots.len() * 2).max(MIN_SLOTS);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; size]);
        for slot in old.into_iter().filter(|slot| !slot.is_empty()) {
            let (parent, level) = key_of(slot.child());
            let hash = self.hash(parent, level.as_bytes());
            self.place(slot, hash);
        }
    }

    /// Forgets the edge leading to `child`, whose key `key_of` must still
    /// return. Returns whether it existed.
    pub(crate) fn remove<'a>(
        &mut self,
        child: NodeId,
        key_of: impl Fn(NodeId) -> (NodeId, &'a Level),
    ) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let (parent, level) = key_of(child);
        let mut hole = self.home(self.hash(parent, level.as_bytes()));
        loop {
            let slot = self.slots[hole];
            if slot.is_empty() {
                return false;
            }
            if slot.child() == child {
                break;
            }
            hole = self.next(hole);
        }
        // Backward shift: move later entries of the run into the hole when
        // their home position allows it, so no probe sequence is broken.
        let mask = self.slots.len() - 1;
        let mut index = hole;
        loop {
            index = self.next(index);
            let slot = self.slots[index];
            if slot.is_empty() {
                break;
            }
            let (parent, level) = key_of(slot.child());
            let home = self.home(self.hash(parent, level.as_bytes()));
            let from_home = index.wrapping_sub(home) & mask;
            let from_hole = index.wrapping_sub(hole) & mask;
            if from_home >= from_hole {
                self.slots[hole] = slot;
                hole = index;
            }
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
        true
    }

    /// Number of edges.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Bytes allocated by the table.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Slot>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_are_found_by_parent_and_level() {
        let nodes = [
            (crate::NIL, Level::new("")),
            (0, Level::new("a")),
            (0, Level::new("b")),
            (1, Level::new("a")),
        ];
        let key_of = |id: NodeId| (nodes[id as usize].0, &nodes[id as usize].1);
        let mut edges = EdgeTable::default();
        for child in 1..4 {
            edges.insert(child, key_of);
        }
        assert_eq!(edges.len(), 3);
        assert_eq!(edges.find(0, "a", key_of), Some(1));
        assert_eq!(edges.find(0, "b", key_of), Some(2));
        assert_eq!(edges.find(1, "a", key_of), Some(3));
        assert_eq!(edges.find(1, "b", key_of), None);
        assert_eq!(edges.find(2, "a", key_of), None);

        assert!(edges.remove(1, key_of));
        assert!(!edges.remove(1, key_of));
        assert_eq!(edges.find(0, "a", key_of), None);
        assert_eq!(edges.find(1, "a", key_of), Some(3));
        assert!(edges.heap_bytes() > 0);
    }

    #[test]
    fn many_edges_survive_growth_and_removal() {
        // Node n > 0 is child "n % 7" of parent n / 7: a dense little tree.
        let nodes: Vec<(NodeId, Level)> = (0..5000u32)
            .map(|n| (n / 7, Level::new(&(n % 7).to_string())))
            .collect();
        let key_of = |id: NodeId| (nodes[id as usize].0, &nodes[id as usize].1);
        let mut edges = EdgeTable::default();
        for child in 1..5000 {
            edges.insert(child, key_of);
        }
        assert_eq!(edges.len(), 4999);
        assert!(edges.slots.len() * 3 >= edges.len() * 4);
        for child in (1..5000).filter(|child| child % 3 == 0) {
            assert!(edges.remove(child, key_of));
        }
        for child in 1..5000u32 {
            let (parent, level) = key_of(child);
            let expected = (child % 3 != 0).then_some(child);
            let found = edges.find(parent, level.as_bytes(), key_of);
            assert_eq!(found, expected, "child {child}");
        }
        assert_eq!(edges.find(4, "8", key_of), None);
    }

    #[test]
    fn a_slot_packs_child_and_tag() {
        assert_eq!(size_of::<Slot>(), 6);
        let slot = Slot::new(0x0102_0304, 0xBEEF);
        assert_eq!(slot.child(), 0x0102_0304);
        assert_eq!(slot.tag(), 0xBEEF);
        assert!(!slot.is_empty());
        assert!(EMPTY.is_empty());
    }
}
