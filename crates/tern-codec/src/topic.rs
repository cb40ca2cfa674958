//! Topic names, topic filters and the matching rule between them.
//!
//! A *topic name* is where a message is published (`devices/42/telemetry`);
//! it may not contain wildcards. A *topic filter* is what a client subscribes
//! to (`devices/+/telemetry`, `alerts/#`), optionally shared between the
//! members of a group (`$share/workers/jobs/#`). Both are validated here so
//! that every crate above the codec can assume they are well formed.

use std::fmt;

use bytestring::ByteString;
use thiserror::Error;

use crate::wire::contains_byte;

/// Prefix of a shared subscription filter.
pub const SHARED_PREFIX: &str = "$share/";

/// Why a string is not a valid topic name or topic filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum TopicError {
    /// Topic names and filters must be at least one character long.
    #[error("it is empty; topics need at least one character")]
    Empty,
    /// Longer than a UTF-8 string field can hold.
    #[error("it is longer than 65,535 bytes")]
    TooLong,
    /// Contains U+0000.
    #[error("it contains the null character U+0000")]
    NullCharacter,
    /// A topic name containing `+` or `#`.
    #[error("topic names cannot contain the wildcards '+' or '#'")]
    WildcardInName,
    /// `#` that is not a whole last level.
    #[error("'#' must be the last character and occupy a whole level, as in \"a/#\"")]
    MisplacedMultiLevelWildcard,
    /// `+` that is not a whole level.
    #[error("'+' must occupy a whole level, as in \"a/+/b\"")]
    MisplacedSingleLevelWildcard,
    /// `$share/` without a valid group name.
    #[error(
        "a shared subscription needs a group name without '/', '+' or '#': \"$share/GROUP/FILTER\""
    )]
    InvalidShareName,
    /// `$share/group` without a filter after it.
    #[error("a shared subscription needs a topic filter after the group: \"$share/GROUP/FILTER\"")]
    MissingSharedFilter,
}

/// Checks that `topic` is a valid topic name: non-empty, no wildcards, no
/// U+0000, at most 65,535 bytes.
pub fn validate_topic_name(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        return Err(TopicError::Empty);
    }
    if topic.len() > usize::from(u16::MAX) {
        return Err(TopicError::TooLong);
    }
    // Every PUBLISH passes here: one fast scan, and only an invalid topic
    // pays for a second pass to name the fault.
    if contains_byte(topic.as_bytes(), [b'+', b'#', 0]) {
        if topic.contains('\0') {
            return Err(TopicError::NullCharacter);
        }
        return Err(TopicError::WildcardInName);
    }
    Ok(())
}

/// Checks the wildcard placement of a plain (not shared) topic filter.
fn validate_plain_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('\0') {
            return Err(TopicError::NullCharacter);
        }
        if level.contains('#') && (level.len() != 1 || levels.peek().is_some()) {
            return Err(TopicError::MisplacedMultiLevelWildcard);
        }
        if level.contains('+') && level.len() != 1 {
            return Err(TopicError::MisplacedSingleLevelWildcard);
        }
    }
    Ok(())
}

/// A validated topic filter, possibly a shared subscription.
///
/// The full text (with any `$share/group/` prefix) is kept as received, so
/// encoding gives back the same bytes; [`TopicFilter::filter`] is the part
/// that matches topics.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter {
    text: ByteString,
    /// Byte offset of the matching filter in `text`: 0 unless shared.
    filter_start: u16,
}

impl TopicFilter {
    /// Validates `text` as a topic filter.
    pub fn new(text: impl Into<ByteString>) -> Result<Self, TopicError> {
        let text = text.into();
        if text.len() > usize::from(u16::MAX) {
            return Err(TopicError::TooLong);
        }
        let filter_start = match text.strip_prefix(SHARED_PREFIX) {
            None => 0,
            Some(rest) => {
                let (group, filter) = rest.split_once('/').ok_or(if rest.is_empty() {
                    TopicError::InvalidShareName
                } else {
                    TopicError::MissingSharedFilter
                })?;
                if group.is_empty() || group.contains(['+', '#']) {
                    return Err(TopicError::InvalidShareName);
                }
                if filter.is_empty() {
                    return Err(TopicError::MissingSharedFilter);
                }
                text.len() - filter.len()
            }
        };
        validate_plain_filter(&text[filter_start..])?;
        Ok(Self {
            // Bounded by the length check above.
            filter_start: filter_start as u16,
            text,
        })
    }

    /// The filter exactly as the client sent it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The filter as a shared, cheaply clonable string.
    pub fn as_byte_string(&self) -> &ByteString {
        &self.text
    }

    /// The part that matches topics: without `$share/group/`.
    pub fn filter(&self) -> &str {
        &self.text[usize::from(self.filter_start)..]
    }

    /// The share group of a shared subscription.
    pub fn share_group(&self) -> Option<&str> {
        if self.filter_start == 0 {
            return None;
        }
        let group_end = usize::from(self.filter_start) - 1;
        Some(&self.text[SHARED_PREFIX.len()..group_end])
    }

    /// The same filter in its own allocation. A decoded filter shares the
    /// receive buffer it came in; one kept for the life of a session should
    /// not keep that whole buffer alive.
    pub fn detached(&self) -> Self {
        Self {
            text: ByteString::from(self.as_str()),
            filter_start: self.filter_start,
        }
    }

    /// True for `$share/...` filters.
    pub fn is_shared(&self) -> bool {
        self.filter_start != 0
    }

    /// True if the matching part contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.filter().contains(['+', '#'])
    }

    /// Whether a message published to `topic` matches this filter.
    pub fn matches(&self, topic: &str) -> bool {
        matches_filter(self.filter(), topic)
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<&str> for TopicFilter {
    type Error = TopicError;
    fn try_from(text: &str) -> Result<Self, TopicError> {
        Self::new(text)
    }
}

/// The matching rule of MQTT, written for clarity rather than speed: the
/// reference that faster matchers (the router's trie) are tested against.
///
/// `filter` must be a valid plain filter and `topic` a valid topic name.
/// `+` matches exactly one level (possibly empty), `#` matches the parent
/// level and everything below it, and a filter starting with a wildcard does
/// not match a topic starting with `$`.
pub fn matches_filter(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for filter_level in filter.split('/') {
        if filter_level == "#" {
            return true;
        }
        match topic_levels.next() {
            Some(level) if filter_level == "+" || filter_level == level => {}
            _ => return false,
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert_eq!(validate_topic_name("a/b/c"), Ok(()));
        assert_eq!(validate_topic_name("/"), Ok(()));
        assert_eq!(validate_topic_name(""), Err(TopicError::Empty));
        assert_eq!(
            validate_topic_name("a/+/c"),
            Err(TopicError::WildcardInName)
        );
        assert_eq!(validate_topic_name("a/#"), Err(TopicError::WildcardInName));
        assert_eq!(validate_topic_name("a\0b"), Err(TopicError::NullCharacter));
    }

    #[test]
    fn valid_filters() {
        for text in [
            "#",
            "+",
            "a/#",
            "a/+/b",
            "+/+",
            "/+",
            "a//b",
            "$SYS/#",
            "sport/tennis/+",
        ] {
            assert!(TopicFilter::new(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn invalid_filters() {
        use TopicError::*;
        for (text, error) in [
            ("", Empty),
            ("a/#/b", MisplacedMultiLevelWildcard),
            ("a#", MisplacedMultiLevelWildcard),
            ("a/b#", MisplacedMultiLevelWildcard),
            ("a+/b", MisplacedSingleLevelWildcard),
            ("a/+b", MisplacedSingleLevelWildcard),
            ("$share/", InvalidShareName),
            ("$share//a", InvalidShareName),
            ("$share/g+/a", InvalidShareName),
            ("$share/group", MissingSharedFilter),
            ("$share/group/", MissingSharedFilter),
            ("$share/group/a/#/b", MisplacedMultiLevelWildcard),
        ] {
            assert_eq!(TopicFilter::new(text), Err(error), "{text}");
        }
    }

    #[test]
    fn shared_filters_expose_group_and_filter() {
        let filter = TopicFilter::new("$share/workers/jobs/+").unwrap();
        assert!(filter.is_shared());
        assert_eq!(filter.share_group(), Some("workers"));
        assert_eq!(filter.filter(), "jobs/+");
        assert_eq!(filter.as_str(), "$share/workers/jobs/+");
        assert!(filter.matches("jobs/1"));

        let plain = TopicFilter::new("jobs/+").unwrap();
        assert_eq!(plain.share_group(), None);
        assert_eq!(plain.filter(), "jobs/+");
    }

    #[test]
    fn matching_rules_of_the_specification() {
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
            ("#", "$SYS/uptime", false),
            ("+/uptime", "$SYS/uptime", false),
            ("$SYS/#", "$SYS/uptime", true),
            ("a/b", "a/b", true),
            ("a/b", "a/b/c", false),
            ("a/b/c", "a/b", false),
        ];
        for (filter, topic, expected) in cases {
            assert_eq!(
                matches_filter(filter, topic),
                expected,
                "{filter} vs {topic}"
            );
        }
    }
}
