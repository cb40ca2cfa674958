//! One level of a topic or filter, stored compactly in a trie node.
//!
//! Most levels are short (`devices`, `42`, `telemetry`, a MAC address), so a
//! [`Level`] keeps up to [`INLINE_CAPACITY`] bytes inside the node and only
//! longer ones on the heap. That saves an allocation (32 bytes with glibc's
//! smallest chunk) for almost every node, which is most of what keeps an
//! exact subscription under 200 bytes.
//!
//! Levels are compared and hashed as bytes: they come from validated UTF-8
//! topics, and the trie never needs them back as `&str` on the hot path.

use std::fmt;

/// The longest level kept inside the node without a heap allocation.
pub(crate) const INLINE_CAPACITY: usize = 14;

/// A topic level: inline when short, boxed when long.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Level {
    /// `len` bytes at the front of `bytes`.
    Inline {
        /// Number of used bytes, at most [`INLINE_CAPACITY`].
        len: u8,
        /// The level, padded with zeros.
        bytes: [u8; INLINE_CAPACITY],
    },
    /// A long level. The double box keeps the pointer thin, so the enum
    /// stays 16 bytes.
    Long(Box<Box<[u8]>>),
}

impl Level {
    /// Stores `level`.
    pub(crate) fn new(level: &str) -> Self {
        let source = level.as_bytes();
        if source.len() > INLINE_CAPACITY {
            return Self::Long(Box::new(source.into()));
        }
        let mut bytes = [0; INLINE_CAPACITY];
        bytes[..source.len()].copy_from_slice(source);
        Self::Inline {
            // Bounded by INLINE_CAPACITY just above.
            len: source.len() as u8,
            bytes,
        }
    }

    /// The level's bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Long(bytes) => bytes,
        }
    }

    /// True if this level equals `level`.
    pub(crate) fn is(&self, level: &(impl AsRef<[u8]> + ?Sized)) -> bool {
        self.as_bytes() == level.as_ref()
    }

    /// True for the level of a `$SYS`-like topic, which wildcards at the
    /// first level never match.
    pub(crate) fn starts_with_dollar(&self) -> bool {
        self.as_bytes().first() == Some(&b'$')
    }

    /// Heap bytes owned by this level (not counting the node it sits in).
    pub(crate) fn heap_bytes(&self) -> usize {
        match self {
            Self::Inline { .. } => 0,
            Self::Long(bytes) => size_of::<Box<[u8]>>() + bytes.len(),
        }
    }

    /// The level as text, for `Debug` and for rebuilding filters. Levels are
    /// built from `&str`, so this is lossless.
    pub(crate) fn to_text(&self) -> String {
        String::from_utf8_lossy(self.as_bytes()).into_owned()
    }
}

impl fmt::Debug for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_text(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_level_is_sixteen_bytes() {
        assert_eq!(size_of::<Level>(), 16);
    }

    #[test]
    fn short_levels_stay_inline_and_long_ones_do_not() {
        for text in ["", "a", "telemetry", "sensor-1234567"] {
            let level = Level::new(text);
            assert!(matches!(level, Level::Inline { .. }), "{text}");
            assert!(level.is(text));
            assert_eq!(level.heap_bytes(), 0);
            assert_eq!(level.to_text(), text);
        }
        let long = "0123456789abcdef-long-level";
        let level = Level::new(long);
        assert!(matches!(level, Level::Long(_)));
        assert!(level.is(long));
        assert!(!level.is("0123456789abcdef"));
        assert!(level.heap_bytes() > long.len());
    }

    #[test]
    fn padding_does_not_make_levels_equal() {
        assert!(!Level::new("a").is("a\0"));
        assert!(!Level::new("").is("a"));
        assert_ne!(Level::new("ab"), Level::new("a"));
    }

    #[test]
    fn dollar_levels_are_recognised() {
        assert!(Level::new("$SYS").starts_with_dollar());
        assert!(!Level::new("SYS").starts_with_dollar());
        assert!(!Level::new("").starts_with_dollar());
    }
}
