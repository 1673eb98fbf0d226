//! The embedded store against a model: after any sequence of conditional writes, every
//! read, range query and paged walk answers what a sorted map of the same writes answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use shared::adapters::clock::ManualClock;
use shared::adapters::embedded::EmbeddedStore;
use shared::ports::Store;
use shared::ports::store::{Condition, Item, Key, Order, Query, Range, StoreError};

#[derive(Debug, Clone)]
enum Op {
    Put { pk: u8, sk: String, condition: Cond },
    Delete { pk: u8, sk: String, condition: Cond },
}

#[derive(Debug, Clone, Copy)]
enum Cond {
    None,
    NotExists,
    Exists,
    /// The current version, or a stale one.
    Version(bool),
}

fn sort_key() -> impl Strategy<Value = String> {
    // A small alphabet so that prefixes and ranges overlap, with a multi-byte character.
    proptest::collection::vec(prop_oneof![Just('a'), Just('b'), Just('#'), Just('é')], 1..4)
        .prop_map(|chars| chars.into_iter().collect())
}

fn condition() -> impl Strategy<Value = Cond> {
    prop_oneof![Just(Cond::None), Just(Cond::NotExists), Just(Cond::Exists), any::<bool>().prop_map(Cond::Version)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..2, sort_key(), condition()).prop_map(|(pk, sk, condition)| Op::Put { pk, sk, condition }),
        1 => (0u8..2, sort_key(), condition()).prop_map(|(pk, sk, condition)| Op::Delete { pk, sk, condition }),
    ]
}

fn range() -> impl Strategy<Value = Range> {
    prop_oneof![
        Just(Range::All),
        sort_key().prop_map(Range::Prefix),
        (sort_key(), sort_key()).prop_map(|(a, b)| Range::Between(a.clone().min(b.clone()), a.max(b))),
        sort_key().prop_map(Range::AtLeast),
        sort_key().prop_map(Range::AtMost),
    ]
}

/// Model: (pk, sk) -> (version, value).
type Model = BTreeMap<(String, String), (u64, u32)>;

async fn apply(store: &dyn Store, model: &mut Model, op: &Op, value: u32) {
    let (pk, sk, cond) = match op {
        Op::Put { pk, sk, condition } | Op::Delete { pk, sk, condition } => (format!("P{pk}"), sk.clone(), *condition),
    };
    let current = model.get(&(pk.clone(), sk.clone())).copied();
    let (condition, holds) = match cond {
        Cond::None => (Condition::None, true),
        Cond::NotExists => (Condition::NotExists, current.is_none()),
        Cond::Exists => (Condition::Exists, current.is_some()),
        Cond::Version(fresh) => {
            let version = current.map_or(1, |(v, _)| v) + u64::from(!fresh);
            (Condition::VersionIs(version), current.is_some_and(|(v, _)| v == version))
        }
    };
    let key = Key::new(pk.clone(), sk.clone());
    let result = match op {
        Op::Put { .. } => store.put(Item::new(key, &value).unwrap(), condition).await,
        Op::Delete { .. } => store.delete(key, condition).await,
    };
    match (holds, result) {
        (true, Ok(())) => match op {
            Op::Put { .. } => {
                let version = current.map_or(1, |(v, _)| v + 1);
                model.insert((pk, sk), (version, value));
            }
            Op::Delete { .. } => {
                model.remove(&(pk, sk));
            }
        },
        (false, Err(StoreError::ConditionFailed { .. })) => {}
        (holds, result) => panic!("{op:?}: condition holds = {holds}, store said {result:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn reads_and_queries_agree_with_a_sorted_map(
        ops in proptest::collection::vec(op(), 1..60),
        queries in proptest::collection::vec((0u8..2, range(), any::<bool>(), 1usize..5), 1..8),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let clock = Arc::new(ManualClock::at("2026-11-25T00:00:00Z".parse().unwrap()));
            let store = EmbeddedStore::temporary(clock).unwrap();
            let mut model = Model::new();
            for (i, op) in ops.iter().enumerate() {
                apply(&store, &mut model, op, i as u32).await;
            }
            for ((pk, sk), (version, value)) in &model {
                let item = store.get(&Key::new(pk.clone(), sk.clone())).await.unwrap().expect("modelled item");
                assert_eq!((item.version, item.decode::<u32>().unwrap()), (*version, *value));
            }
            for (pk, range, descending, limit) in queries {
                let pk = format!("P{pk}");
                let mut expected: Vec<String> = model
                    .keys()
                    .filter(|(p, sk)| *p == pk && range.contains(sk))
                    .map(|(_, sk)| sk.clone())
                    .collect();
                if descending {
                    expected.reverse();
                }
                let mut walked = Vec::new();
                let mut cursor = None;
                loop {
                    let mut query = Query::partition(pk.clone()).range(range.clone()).limit(limit).after(cursor.take());
                    query.order = if descending { Order::Descending } else { Order::Ascending };
                    let page = store.query(&query).await.unwrap();
                    assert!(page.items.len() <= limit);
                    walked.extend(page.items.iter().map(|i| i.key.sk.clone()));
                    match page.next {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
                assert_eq!(walked, expected, "{pk} {range:?} descending={descending} limit={limit}");
            }
        });
    }
}
