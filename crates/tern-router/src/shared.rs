//! Shared subscriptions (`$share/{group}/{filter}`): the groups themselves and
//! the choice of the one member that receives each message.
//!
//! A group is identified by its share name *and* its filter, as MQTT 5 says:
//! `$share/g/a/+` and `$share/g/b` are two groups. The choice never reads a
//! clock or an operating-system random source: round robin uses a counter per
//! group, random uses a generator seeded from [`RouterConfig::seed`], and
//! sticky hashes the publisher's id with that seed. Tests therefore see the
//! same choices on every run.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::edges::NodeId;

/// How a shared group chooses the member that receives a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SharedStrategy {
    /// Members take turns, one message each (EMQX's `round_robin`).
    #[default]
    RoundRobin,
    /// A member drawn at random from a generator seeded by
    /// [`RouterConfig::seed`] (EMQX's `random`).
    Random,
    /// A member chosen by a hash of the publisher's id, so one publisher's
    /// messages keep going to the same member while the group's membership
    /// is unchanged (EMQX's `hash_clientid`). Messages without a publisher
    /// all hash alike.
    Sticky,
}

/// Settings of a router, chosen once at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouterConfig {
    /// How every shared group of this router picks its receiver.
    pub shared_strategy: SharedStrategy,
    /// Seed of the random choice and of the sticky hash. Fix it in tests;
    /// the broker may pass anything, for example a value from its config.
    pub seed: u64,
}

/// Chooses a member index; shared by every group of one trie.
pub(crate) struct Picker {
    strategy: SharedStrategy,
    /// Hashes publisher ids for [`SharedStrategy::Sticky`]. Built from the
    /// seed, so the hash is the same on every run.
    sticky_hasher: std::hash::BuildHasherDefault<std::hash::DefaultHasher>,
    seed: u64,
    /// State of a SplitMix64 generator: one atomic add per draw, so readers
    /// holding only `&self` can draw concurrently.
    random_state: AtomicU64,
}

/// The increment of SplitMix64 (the golden ratio in 64 bits).
const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The output function of SplitMix64.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Maps a uniformly distributed `u64` onto `0..len` without a division.
fn reduce(value: u64, len: usize) -> usize {
    ((u128::from(value) * len as u128) >> 64) as usize
}

impl Picker {
    pub(crate) fn new(config: RouterConfig) -> Self {
        Self {
            strategy: config.shared_strategy,
            sticky_hasher: Default::default(),
            seed: config.seed,
            random_state: AtomicU64::new(config.seed),
        }
    }

    pub(crate) fn strategy(&self) -> SharedStrategy {
        self.strategy
    }

    /// The index in `0..len` of the member that receives the next message.
    /// `len` must not be zero.
    pub(crate) fn pick<S: Hash>(
        &self,
        cursor: &AtomicU32,
        publisher: Option<S>,
        len: usize,
    ) -> usize {
        debug_assert!(len > 0, "a shared group is never empty");
        match self.strategy {
            SharedStrategy::RoundRobin => cursor.fetch_add(1, Ordering::Relaxed) as usize % len,
            SharedStrategy::Random => {
                let state = self
                    .random_state
                    .fetch_add(GOLDEN_GAMMA, Ordering::Relaxed)
                    .wrapping_add(GOLDEN_GAMMA);
                reduce(mix64(state), len)
            }
            SharedStrategy::Sticky => {
                let hash = self.sticky_hasher.hash_one((self.seed, publisher));
                reduce(mix64(hash), len)
            }
        }
    }
}

/// Index of a subscription record in the trie's record arena.
pub(crate) type SubIndex = u32;

/// One shared group at one trie node.
pub(crate) struct Group {
    /// The share name (between `$share/` and the filter).
    pub(crate) name: Box<str>,
    /// The node of the filter, without a trailing `#`.
    pub(crate) node: NodeId,
    /// Whether the filter ends in `#`.
    pub(crate) multi: bool,
    /// Neighbours in the node's list of groups.
    pub(crate) prev_at_node: u32,
    pub(crate) next_at_node: u32,
    /// The members' subscription records. Each record remembers its
    /// position here, so leaving is O(1) (`swap_remove`).
    pub(crate) members: Vec<SubIndex>,
    /// Round-robin position, advanced by readers.
    pub(crate) cursor: AtomicU32,
}

impl Group {
    pub(crate) fn new(name: &str, node: NodeId, multi: bool) -> Self {
        Self {
            name: name.into(),
            node,
            multi,
            prev_at_node: crate::NIL,
            next_at_node: crate::NIL,
            members: Vec::new(),
            cursor: AtomicU32::new(0),
        }
    }

    /// Bytes this group owns on the heap.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.name.len() + self.members.capacity() * size_of::<SubIndex>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picker(strategy: SharedStrategy, seed: u64) -> Picker {
        Picker::new(RouterConfig {
            shared_strategy: strategy,
            seed,
        })
    }

    #[test]
    fn round_robin_takes_turns() {
        let picker = picker(SharedStrategy::RoundRobin, 0);
        let cursor = AtomicU32::new(0);
        let picks: Vec<usize> = (0..7)
            .map(|_| picker.pick(&cursor, Some(1u64), 3))
            .collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn random_is_reproducible_from_the_seed_and_covers_every_member() {
        let draw = |seed| {
            let picker = picker(SharedStrategy::Random, seed);
            let cursor = AtomicU32::new(0);
            (0..200)
                .map(|_| picker.pick(&cursor, None::<u64>, 4))
                .collect::<Vec<_>>()
        };
        let first = draw(7);
        assert_eq!(first, draw(7));
        assert_ne!(first, draw(8));
        for member in 0..4 {
            assert!(first.contains(&member));
        }
        assert!(first.iter().all(|&index| index < 4));
    }

    #[test]
    fn sticky_keeps_a_publisher_on_one_member() {
        let picker = picker(SharedStrategy::Sticky, 3);
        let cursor = AtomicU32::new(0);
        let mut seen = std::collections::HashSet::new();
        for publisher in 0..64u64 {
            let first = picker.pick(&cursor, Some(publisher), 5);
            for _ in 0..10 {
                assert_eq!(picker.pick(&cursor, Some(publisher), 5), first);
            }
            seen.insert(first);
        }
        assert_eq!(seen.len(), 5, "64 publishers spread over all members");
    }

    #[test]
    fn reduce_stays_in_range() {
        for value in [0, 1, u64::MAX / 2, u64::MAX] {
            assert!(reduce(value, 3) < 3);
        }
        assert_eq!(reduce(u64::MAX, 1), 0);
    }
}
