//! Tern's in-memory matching engine: who receives a published message, and
//! which retained messages a new subscription gets.
//!
//! - [`SubscriptionTrie`] holds every subscription of this broker node:
//!   filters with `+` and `#`, the MQTT 5 options of each (maximum QoS, no
//!   local, retain as published, retain handling, subscription identifier)
//!   and shared groups (`$share/{group}/{filter}`). [`SubscriptionTrie::matches`]
//!   turns a topic into [`Matches`]: each subscriber once, at the highest
//!   granted QoS, with all its matching subscription identifiers, plus one
//!   member per matching shared group.
//! - [`Router`] is that trie shared by every core (see "Concurrency").
//! - [`RetainedIndex`] maps topics to the broker's retained messages and
//!   walks a filter to the ones it matches.
//!
//! ```
//! use tern_codec::{QoS, SubscriptionOptions, TopicFilter};
//! use tern_router::{Matches, RetainedIndex, Router, RouterConfig};
//!
//! let router = Router::<u64>::new(RouterConfig::default());
//! let filter = TopicFilter::new("devices/+/telemetry")?;
//! let options = SubscriptionOptions::with_qos(QoS::AtLeastOnce);
//! assert!(router.subscribe(1, &filter, options, None).is_new());
//!
//! let mut matches = Matches::new();
//! router.matches("devices/42/telemetry", Some(2), &mut matches);
//! let recipient = matches.iter().next().expect("subscriber 1 matches");
//! assert_eq!((recipient.subscriber, recipient.qos), (1, QoS::AtLeastOnce));
//!
//! let mut retained = RetainedIndex::new();
//! retained.insert("devices/42/telemetry", "21.5");
//! assert_eq!(retained.matching(&filter), [&"21.5"]);
//! # Ok::<(), tern_codec::TopicError>(())
//! ```
//!
//! # Invariants
//!
//! - **No tokio, no I/O, no sled, no clock.** This crate depends on
//!   tern-codec (for topics, QoS and options) and hashbrown only. Time never
//!   enters; the only randomness (the shared-group `Random` strategy) comes
//!   from a generator seeded by [`RouterConfig::seed`].
//! - Subscribers are small copyable ids chosen by the caller
//!   ([`SubscriberKey`]), never client-id strings: a session index, or an
//!   enum of local session and remote node.
//! - Removing a subscriber visits only its own subscriptions.
//! - Empty trie nodes are pruned at once; memory follows live data.
//!
//! # Concurrency
//!
//! [`Router`] is one `std::sync::RwLock` around the whole trie. Matching
//! takes the read lock and runs in parallel on every core; the only state
//! readers change (a group's round-robin counter, the random generator) is
//! atomic. Writes take the write lock for one filter's walk (about a
//! microsecond at 1M subscriptions, see docs/performance.md; re-subscribing
//! costs a walk of that subscriber's own subscriptions), and std's futex
//! lock makes new readers wait behind a waiting writer, so writers are not
//! starved.
//!
//! Why not something cleverer:
//! - *Sharding* by first level does not work for a trie: a filter such as
//!   `+/status` or `#` belongs to every shard, and a topic must see them all.
//! - *Copy-on-write snapshots* (an `ArcSwap` of the trie) make each
//!   subscribe copy a million-subscription structure, or need a persistent
//!   trie with many small allocations, which breaks the memory budget.
//! - A lock-free trie is neither safe (`unsafe_code` is denied) nor simple.
//!
//! The read lock costs one atomic read-modify-write on a shared cache line
//! per match, against 1–2 µs of cache misses for a match at a million
//! subscriptions. Measured at 1M subscriptions on the project's 2-core
//! machine (docs/performance.md): the on-CPU time per match is the same with one
//! reader, two readers, or two readers and a writer doing ~6k subscribe and
//! unsubscribe pairs a second, and two readers together matched 1.44 M
//! topics a second. If the lock ever dominates, the next step is batching
//! matches under one read guard ([`Router::read`]), not a new structure.
//!
//! # Memory
//!
//! Nodes, subscription records and groups live in `u32`-indexed arenas; all
//! edges of a trie share one flat hash table keyed by (parent, level) that
//! stores only the child's index and a hash tag; levels of up to 14 bytes
//! are stored inline. An exact subscription such as
//! `devices/{id}/telemetry` costs two 40-byte nodes, two 6-byte edge slots,
//! one 32-byte record and one entry in the subscriber map: 178 bytes per
//! subscription measured at 1M (docs/performance.md), 230 with 36-byte ids.

mod edges;
mod level;
mod matches;
mod retained;
mod router;
mod shared;
mod trie;

use std::fmt::Debug;
use std::hash::Hash;

pub use matches::{Matches, Recipient, SharedGroup};
pub use retained::RetainedIndex;
pub use router::Router;
pub use shared::{RouterConfig, SharedStrategy};
pub use trie::{SharedMember, SubscribeOutcome, SubscriptionInfo, SubscriptionTrie};

/// What identifies a subscriber: any small copyable, hashable, ordered
/// value, chosen by the caller (a `u32` session slot, a `u64` session id, a
/// newtype or an enum). Implemented for every such type.
///
/// `Ord` lets a match merge one subscriber's overlapping subscriptions by
/// sorting; `Hash` keys the per-subscriber index.
pub trait SubscriberKey: Copy + Eq + Hash + Ord + Debug {}

impl<T: Copy + Eq + Hash + Ord + Debug> SubscriberKey for T {}

/// "No node / no record": the null index of every arena list.
const NIL: u32 = u32::MAX;
