//! Property tests of the retained index against a brute-force scan of every
//! retained topic with the reference matcher.

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use tern_codec::TopicFilter;
use tern_codec::topic::matches_filter;
use tern_router::RetainedIndex;

const TOPIC_LEVELS: &[&str] = &["a", "b", "", "$s", "a-level-longer-than-inline"];
const FILTER_LEVELS: &[&str] = &["a", "b", "", "$s", "+"];

fn topic() -> impl Strategy<Value = String> {
    common::topic(TOPIC_LEVELS, 5)
}

fn filter() -> impl Strategy<Value = String> {
    common::plain_filter(FILTER_LEVELS, 5)
}

#[derive(Debug, Clone)]
enum Op {
    Insert(String, u32),
    Remove(String),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (topic(), any::<u32>()).prop_map(|(t, v)| Op::Insert(t, v)),
        1 => topic().prop_map(Op::Remove),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn the_index_agrees_with_a_scan(
        ops in prop::collection::vec(op(), 0..40),
        filters in prop::collection::vec(filter(), 1..10),
    ) {
        let mut index = RetainedIndex::new();
        let mut model: BTreeMap<String, u32> = BTreeMap::new();
        for op in &ops {
            match op {
                Op::Insert(topic, value) => {
                    let stored = (topic.clone(), *value);
                    let old = index.insert(topic, stored).map(|(_, v)| v);
                    prop_assert_eq!(old, model.insert(topic.clone(), *value));
                }
                Op::Remove(topic) => {
                    let old = index.remove(topic).map(|(_, v)| v);
                    prop_assert_eq!(old, model.remove(topic));
                }
            }
            prop_assert_eq!(index.len(), model.len());
        }
        for (topic, value) in &model {
            prop_assert_eq!(index.get(topic).map(|(_, v)| *v), Some(*value));
        }
        for text in &filters {
            let filter = TopicFilter::new(text.as_str()).unwrap();
            let mut found: Vec<(String, u32)> = index.matching(&filter).into_iter().cloned().collect();
            found.sort();
            let expected: Vec<(String, u32)> = model
                .iter()
                .filter(|(topic, _)| matches_filter(text, topic))
                .map(|(topic, value)| (topic.clone(), *value))
                .collect();
            prop_assert_eq!(found, expected, "filter {:?}", text);
        }
        for topic in model.keys() {
            prop_assert!(index.remove(topic).is_some());
        }
        prop_assert!(index.is_empty());
        prop_assert_eq!(index.heap_bytes() > 0, true);
    }
}
