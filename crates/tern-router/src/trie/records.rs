//! Subscription records and the lists they sit in: the node lists (exact and
//! `#`), the members of shared groups, and each subscriber's own list.
//!
//! Every list is threaded through `u32` indices in the record arena; there
//! are no per-list allocations except a group's member vector.

use std::num::NonZeroU32;

use tern_codec::{QoS, RetainHandling, SubscriptionOptions};

use super::{NodeId, SubscriptionTrie};
use crate::shared::{Group, SubIndex};
use crate::{NIL, SubscriberKey};

/// Which list a record belongs to, and so what its `owner` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// Filter ends exactly at node `owner`.
    Exact,
    /// Filter is node `owner`'s prefix followed by `#`.
    Multi,
    /// Member of shared group `owner`.
    Shared,
    /// A free slot.
    Vacant,
}

/// [`SubscriptionOptions`] in one byte, laid out as in the SUBSCRIBE packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PackedOptions(u8);

impl PackedOptions {
    const NO_LOCAL: u8 = 0b0100;
    const RETAIN_AS_PUBLISHED: u8 = 0b1000;

    pub(super) fn pack(options: SubscriptionOptions) -> Self {
        let mut byte = options.qos.as_u8();
        if options.no_local {
            byte |= Self::NO_LOCAL;
        }
        if options.retain_as_published {
            byte |= Self::RETAIN_AS_PUBLISHED;
        }
        byte |= (options.retain_handling as u8) << 4;
        Self(byte)
    }

    pub(super) fn qos(self) -> QoS {
        match self.0 & 0b11 {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        }
    }

    pub(super) fn no_local(self) -> bool {
        self.0 & Self::NO_LOCAL != 0
    }

    pub(super) fn retain_as_published(self) -> bool {
        self.0 & Self::RETAIN_AS_PUBLISHED != 0
    }

    pub(super) fn unpack(self) -> SubscriptionOptions {
        SubscriptionOptions {
            qos: self.qos(),
            no_local: self.no_local(),
            retain_as_published: self.retain_as_published(),
            retain_handling: match self.0 >> 4 {
                0 => RetainHandling::SendAtSubscribe,
                1 => RetainHandling::SendIfNewSubscription,
                _ => RetainHandling::DoNotSend,
            },
        }
    }
}

/// One subscription (or one shared-group membership).
#[derive(Debug)]
pub(super) struct Sub<S> {
    pub(super) subscriber: S,
    /// The node (exact, multi) or the group (shared).
    pub(super) owner: u32,
    /// Exact and multi: the previous record in the node's list. Shared: the
    /// record's position in the group's member vector.
    pub(super) prev: u32,
    /// Exact and multi: the next record in the node's list.
    pub(super) next: SubIndex,
    /// The next record of the same subscriber.
    pub(super) next_of_subscriber: SubIndex,
    pub(super) identifier: Option<NonZeroU32>,
    pub(super) options: PackedOptions,
    pub(super) kind: Kind,
}

impl<S: SubscriberKey> SubscriptionTrie<S> {
    pub(super) fn alloc_record(&mut self, record: Sub<S>) -> SubIndex {
        match self.free_subs.pop() {
            Some(index) => {
                self.subs[index as usize] = record;
                index
            }
            None => {
                self.subs.push(record);
                (self.subs.len() - 1) as SubIndex
            }
        }
    }

    /// The record of `subscriber` with this kind and owner, and the record
    /// before it in the subscriber's list ([`NIL`] if it is the head).
    /// Costs one step per subscription of that subscriber.
    pub(super) fn find_record(
        &self,
        subscriber: S,
        kind: Kind,
        owner: u32,
    ) -> Option<(SubIndex, SubIndex)> {
        let mut previous = NIL;
        let mut index = self.subscribers.get(&subscriber).copied().unwrap_or(NIL);
        while index != NIL {
            let record = &self.subs[index as usize];
            if record.kind == kind && record.owner == owner {
                return Some((index, previous));
            }
            previous = index;
            index = record.next_of_subscriber;
        }
        None
    }

    fn head_mut(&mut self, kind: Kind, node: NodeId) -> &mut SubIndex {
        let node = &mut self.nodes[node as usize];
        match kind {
            Kind::Multi => &mut node.multi,
            _ => &mut node.exact,
        }
    }

    /// Puts an exact or multi record at the head of its node's list.
    pub(super) fn link_at_node(&mut self, index: SubIndex) {
        let (kind, node) = {
            let record = &self.subs[index as usize];
            (record.kind, record.owner)
        };
        let head = *self.head_mut(kind, node);
        if head != NIL {
            self.subs[head as usize].prev = index;
        }
        let record = &mut self.subs[index as usize];
        record.prev = NIL;
        record.next = head;
        *self.head_mut(kind, node) = index;
    }

    fn unlink_from_node(&mut self, index: SubIndex) {
        let record = &self.subs[index as usize];
        let (kind, node, prev, next) = (record.kind, record.owner, record.prev, record.next);
        if prev == NIL {
            *self.head_mut(kind, node) = next;
        } else {
            self.subs[prev as usize].next = next;
        }
        if next != NIL {
            self.subs[next as usize].prev = prev;
        }
    }

    /// The shared group `name` at `node` (with `#` if `multi`), if any.
    pub(super) fn find_group(&self, node: NodeId, multi: bool, name: &str) -> Option<u32> {
        let mut index = self.nodes[node as usize].groups;
        while index != NIL {
            let group = &self.groups[index as usize];
            if group.multi == multi && *group.name == *name {
                return Some(index);
            }
            index = group.next_at_node;
        }
        None
    }

    /// The shared group `name` at `node`, and whether it was created.
    pub(super) fn ensure_group(&mut self, node: NodeId, multi: bool, name: &str) -> (u32, bool) {
        if let Some(group) = self.find_group(node, multi, name) {
            return (group, false);
        }
        let mut group = Group::new(name, node, multi);
        let head = self.nodes[node as usize].groups;
        group.next_at_node = head;
        let index = match self.free_groups.pop() {
            Some(index) => {
                self.groups[index as usize] = group;
                index
            }
            None => {
                self.groups.push(group);
                (self.groups.len() - 1) as u32
            }
        };
        if head != NIL {
            self.groups[head as usize].prev_at_node = index;
        }
        self.nodes[node as usize].groups = index;
        (index, true)
    }

    pub(super) fn join_group(&mut self, index: SubIndex) {
        let group = &mut self.groups[self.subs[index as usize].owner as usize];
        self.subs[index as usize].prev = group.members.len() as u32;
        group.members.push(index);
    }

    fn leave_group(&mut self, index: SubIndex) {
        let (group_index, position) = {
            let record = &self.subs[index as usize];
            (record.owner, record.prev as usize)
        };
        let group = &mut self.groups[group_index as usize];
        debug_assert_eq!(group.members.get(position), Some(&index));
        group.members.swap_remove(position);
        if let Some(&moved) = group.members.get(position) {
            self.subs[moved as usize].prev = position as u32;
        }
        if group.members.is_empty() {
            self.free_group(group_index);
        }
    }

    fn free_group(&mut self, index: u32) {
        let group = &self.groups[index as usize];
        let (node, prev, next) = (group.node, group.prev_at_node, group.next_at_node);
        if prev == NIL {
            self.nodes[node as usize].groups = next;
        } else {
            self.groups[prev as usize].next_at_node = next;
        }
        if next != NIL {
            self.groups[next as usize].prev_at_node = prev;
        }
        self.groups[index as usize] = Group::new("", NIL, false);
        self.free_groups.push(index);
        self.prune(node);
    }

    /// Takes a record out of its node list or group, prunes what became
    /// unused and frees the record. The caller has already taken it out of
    /// its subscriber's list.
    pub(super) fn detach(&mut self, index: SubIndex) {
        let record = &self.subs[index as usize];
        match record.kind {
            Kind::Exact | Kind::Multi => {
                let node = record.owner;
                self.unlink_from_node(index);
                self.prune(node);
            }
            Kind::Shared => self.leave_group(index),
            Kind::Vacant => unreachable!("detach of a free record"),
        }
        self.subs[index as usize].kind = Kind::Vacant;
        self.free_subs.push(index);
        self.len -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_round_trip_through_one_byte() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for retain_handling in [
                RetainHandling::SendAtSubscribe,
                RetainHandling::SendIfNewSubscription,
                RetainHandling::DoNotSend,
            ] {
                for (no_local, retain_as_published) in
                    [(false, false), (true, false), (false, true), (true, true)]
                {
                    let options = SubscriptionOptions {
                        qos,
                        no_local,
                        retain_as_published,
                        retain_handling,
                    };
                    assert_eq!(PackedOptions::pack(options).unpack(), options);
                }
            }
        }
    }

    #[test]
    fn a_record_of_a_u64_subscriber_is_32_bytes() {
        assert_eq!(size_of::<Sub<u64>>(), 32);
    }
}
