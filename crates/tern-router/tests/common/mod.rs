//! Strategies shared by the property tests: topics and filters drawn from a
//! small alphabet of levels, so that matches actually happen.

use proptest::prelude::*;

/// A topic name of 1 to `max_levels - 1` levels from `levels`.
pub fn topic(levels: &'static [&'static str], max_levels: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(levels), 1..max_levels)
        .prop_map(|levels| levels.join("/"))
        .prop_filter("topic names are not empty", |topic| !topic.is_empty())
}

/// A plain filter: up to `max_levels - 1` levels from `levels`, maybe
/// followed by `#`, or `#` alone.
pub fn plain_filter(
    levels: &'static [&'static str],
    max_levels: usize,
) -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(levels), 0..max_levels),
        any::<bool>(),
    )
        .prop_map(|(mut levels, multi)| {
            if multi || levels.is_empty() {
                levels.push("#");
            }
            levels.join("/")
        })
        .prop_filter("filters are not empty", |filter| !filter.is_empty())
}
