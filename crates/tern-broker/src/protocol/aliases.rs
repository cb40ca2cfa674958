//! Topic aliases the broker assigns in the PUBLISH packets it sends to an
//! MQTT 5 client (MQTT 5 §3.3.2.3.4), when `max_topic_alias_outbound` and
//! the client's Topic Alias Maximum are both above 0; the lower of the
//! two applies, for the life of the connection.
//!
//! The first PUBLISH of a topic carries the topic and a fresh alias; the
//! next ones carry the alias and an empty topic. When every alias is in
//! use, the least recently used one is given to the new topic (sent in
//! full, which rebinds the alias on the client's side). Only packets that
//! are sent go through here: a dropped message never binds an alias.

use std::collections::{BTreeMap, HashMap};

use tern_codec::{ByteString, Publish};

/// The aliases of one connection; see the module docs.
#[derive(Debug, Default)]
pub(super) struct OutboundAliases {
    /// Most aliases; 0 disables them.
    max: u16,
    /// Topic to its alias and the tick it was last used.
    by_topic: HashMap<ByteString, (u16, u64)>,
    /// Last use to topic, oldest first: the next to be reassigned.
    by_use: BTreeMap<u64, ByteString>,
    /// Counts uses; never repeats within a connection.
    tick: u64,
}

impl OutboundAliases {
    /// Up to `max` aliases (0: none).
    pub(super) fn new(max: u16) -> Self {
        Self {
            max,
            ..Self::default()
        }
    }

    /// Gives `publish` its alias: the topic is replaced by a known alias,
    /// or sent with a new (or reassigned) one.
    pub(super) fn apply(&mut self, publish: &mut Publish) {
        if self.max == 0 || publish.topic.is_empty() {
            return;
        }
        self.tick += 1;
        let tick = self.tick;
        if let Some((alias, last_used)) = self.by_topic.get_mut(&publish.topic) {
            let alias = *alias;
            let previous = std::mem::replace(last_used, tick);
            let topic = std::mem::take(&mut publish.topic);
            self.by_use.remove(&previous);
            self.by_use.insert(tick, topic);
            publish.properties_mut().topic_alias = Some(alias);
            return;
        }
        let alias = if self.by_topic.len() < usize::from(self.max) {
            // Aliases 1..=max, handed out in order until all are used.
            u16::try_from(self.by_topic.len() + 1).unwrap_or(self.max)
        } else {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                return;
            };
            match self.by_topic.remove(&oldest) {
                Some((alias, _)) => alias,
                None => return,
            }
        };
        self.by_topic.insert(publish.topic.clone(), (alias, tick));
        self.by_use.insert(tick, publish.topic.clone());
        publish.properties_mut().topic_alias = Some(alias);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The (topic, alias) of each PUBLISH sent for `topics`.
    fn sent(aliases: &mut OutboundAliases, topics: &[&str]) -> Vec<(String, Option<u16>)> {
        topics
            .iter()
            .map(|topic| {
                let mut publish = Publish::new(*topic, "x");
                aliases.apply(&mut publish);
                (publish.topic.to_string(), publish.properties().topic_alias)
            })
            .collect()
    }

    #[test]
    fn least_recently_used_alias_is_reassigned() {
        let mut aliases = OutboundAliases::new(2);
        let got = sent(&mut aliases, &["a", "a", "b", "c", "a", "b"]);
        let expected = [
            ("a", Some(1)),
            ("", Some(1)),
            ("b", Some(2)),
            ("c", Some(1)), // a was used least recently
            ("a", Some(2)), // b was
            ("b", Some(1)), // c was
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(topic, alias)| ((*topic).to_owned(), *alias))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn no_aliases_when_disabled() {
        let mut aliases = OutboundAliases::new(0);
        let got = sent(&mut aliases, &["a", "a"]);
        assert_eq!(got, [("a".to_owned(), None), ("a".to_owned(), None)]);
    }
}
