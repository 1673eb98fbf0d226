//! The embedded store against a model: after any sequence of conditional writes, every
//! read, range query and paged walk answers what a sorted map of the same writes answers,
//! and so does the same store reopened from its journal. A record the journal holds only
//! in part (a crash in mid-write) is dropped; damage before the end refuses to open.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use shared::adapters::clock::ManualClock;
use shared::adapters::embedded::EmbeddedStore;
use shared::ports::store::{Condition, Item, Key, Order, Query, Range, StoreError};
use shared::ports::{Clock, Store};

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

/// A query of the model's partitions: (partition, range, descending, page size).
type ModelQuery = (u8, Range, bool, usize);

/// Every modelled item reads back with its version and value, and every query walks
/// exactly the model's keys, page by page.
async fn agrees(store: &dyn Store, model: &Model, queries: &[ModelQuery]) {
    for ((pk, sk), (version, value)) in model {
        let item = store.get(&Key::new(pk.clone(), sk.clone())).await.unwrap().expect("modelled item");
        assert_eq!((item.version, item.decode::<u32>().unwrap()), (*version, *value));
    }
    for (pk, range, descending, limit) in queries {
        let pk = format!("P{pk}");
        let mut expected: Vec<String> =
            model.keys().filter(|(p, sk)| *p == pk && range.contains(sk)).map(|(_, sk)| sk.clone()).collect();
        if *descending {
            expected.reverse();
        }
        let mut walked = Vec::new();
        let mut cursor = None;
        loop {
            let mut query = Query::partition(pk.clone()).range(range.clone()).limit(*limit).after(cursor.take());
            query.order = if *descending { Order::Descending } else { Order::Ascending };
            let page = store.query(&query).await.unwrap();
            assert!(page.items.len() <= *limit);
            walked.extend(page.items.iter().map(|i| i.key.sk.clone()));
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(walked, expected, "{pk} {range:?} descending={descending} limit={limit}");
    }
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::at("2026-11-25T00:00:00Z".parse().unwrap()))
}

/// Opens the store in `folder`, waiting for a store dropped just before to let it go (its
/// writer thread ends on its own).
async fn reopen(folder: &Path) -> EmbeddedStore {
    reopen_with(folder, clock()).await
}

async fn reopen_with(folder: &Path, clock: Arc<ManualClock>) -> EmbeddedStore {
    for _ in 0..250 {
        match EmbeddedStore::open(folder, clock.clone()) {
            Ok(store) => return store,
            Err(e) if format!("{e:?}").contains("another process") => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    panic!("the store in {} was never let go", folder.display());
}

fn queries() -> impl Strategy<Value = Vec<ModelQuery>> {
    proptest::collection::vec((0u8..2, range(), any::<bool>(), 1usize..5), 1..8)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn reads_and_queries_agree_with_a_sorted_map(ops in proptest::collection::vec(op(), 1..60), queries in queries()) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let store = EmbeddedStore::temporary(clock()).unwrap();
            let mut model = Model::new();
            for (i, op) in ops.iter().enumerate() {
                apply(&store, &mut model, op, i as u32).await;
            }
            agrees(&store, &model, &queries).await;
        });
    }

    #[test]
    fn a_reopened_store_holds_what_it_committed(
        ops in proptest::collection::vec(op(), 1..60),
        split in 0usize..60,
        queries in queries(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let folder = tempfile::tempdir().unwrap();
            let mut model = Model::new();
            // Some writes, a reopen, the rest, a reopen: replay follows replay.
            let (before, after) = ops.split_at(split.min(ops.len()));
            for (part, ops) in [before, after].into_iter().enumerate() {
                let store = reopen(folder.path()).await;
                for (i, op) in ops.iter().enumerate() {
                    apply(&store, &mut model, op, (part * 100 + i) as u32).await;
                }
            }
            agrees(&reopen(folder.path()).await, &model, &queries).await;
        });
    }
}

/// The journal's length now.
fn journal_len(folder: &Path) -> u64 {
    std::fs::metadata(folder.join("journal")).unwrap().len()
}

async fn put(store: &dyn Store, sk: &str, value: u32) {
    store.put(Item::new(Key::new("P", sk), &value).unwrap(), Condition::None).await.unwrap();
}

async fn value(store: &dyn Store, sk: &str) -> Option<(u64, u32)> {
    store.get(&Key::new("P", sk)).await.unwrap().map(|item| (item.version, item.decode().unwrap()))
}

#[tokio::test]
async fn a_record_cut_short_by_a_crash_is_dropped_and_the_store_goes_on_after_the_last_whole_one() {
    let folder = tempfile::tempdir().unwrap();
    let whole = {
        let store = reopen(folder.path()).await;
        put(&store, "a", 1).await;
        let whole = journal_len(folder.path());
        put(&store, "b", 2).await;
        whole
    };
    // The second record loses its last byte, as a crash in mid-write leaves it.
    let file = std::fs::OpenOptions::new().write(true).open(folder.path().join("journal")).unwrap();
    file.set_len(journal_len(folder.path()) - 1).unwrap();
    drop(file);

    let store = reopen(folder.path()).await;
    assert_eq!((value(&store, "a").await, value(&store, "b").await), (Some((1, 1)), None));
    assert_eq!(journal_len(folder.path()), whole, "the partial record is cut off");
    put(&store, "c", 3).await;
    drop(store);
    let store = reopen(folder.path()).await;
    assert_eq!((value(&store, "a").await, value(&store, "c").await), (Some((1, 1)), Some((1, 3))));
}

#[tokio::test]
async fn a_journal_damaged_before_its_end_refuses_to_open() {
    let folder = tempfile::tempdir().unwrap();
    {
        let store = reopen(folder.path()).await;
        put(&store, "a", 1).await;
        put(&store, "b", 2).await;
    }
    let path = folder.path().join("journal");
    let mut bytes = std::fs::read(&path).unwrap();
    // The first record's last byte (a byte of the value 1), so its checksum fails.
    let first = 8 + u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    bytes[first - 1] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();

    let error = loop {
        match EmbeddedStore::open(folder.path(), clock()) {
            Err(e) if format!("{e:?}").contains("another process") => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => break other.err().expect("a damaged journal must not open"),
        }
    };
    assert!(format!("{error:?}").contains("damaged at byte 0"), "{error:?}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing of the journal is cut");
}

#[tokio::test]
async fn a_folder_holds_one_open_store_at_a_time() {
    let folder = tempfile::tempdir().unwrap();
    let first = reopen(folder.path()).await;
    put(&first, "a", 1).await;
    let refused = EmbeddedStore::open(folder.path(), clock()).err().expect("a second open is refused");
    assert!(format!("{refused:?}").contains("open in another process"), "{refused:?}");
    drop(first);
    let second = reopen(folder.path()).await;
    assert_eq!(value(&second, "a").await, Some((1, 1)));
}

#[tokio::test]
async fn index_entries_and_expiry_are_replayed_too() {
    let folder = tempfile::tempdir().unwrap();
    let clock = clock();
    let later = clock.now() + chrono::TimeDelta::seconds(60);
    {
        let store = reopen_with(folder.path(), clock.clone()).await;
        let session =
            Item::new(Key::new("SESSION", "s1"), &1u32).unwrap().with_index("USER#1", "s1").expiring_at(later);
        store.put(session, Condition::NotExists).await.unwrap();
        let kept = Item::new(Key::new("SESSION", "s2"), &2u32).unwrap().with_index("USER#1", "s2");
        store.put(kept, Condition::NotExists).await.unwrap();
        // Moved to another index partition: the old entry must not come back on replay.
        let moved = Item::new(Key::new("SESSION", "s2"), &3u32).unwrap().with_index("USER#2", "s2");
        store.put(moved, Condition::VersionIs(1)).await.unwrap();
    }
    let store = reopen_with(folder.path(), clock.clone()).await;
    let indexed = |pk: &'static str| {
        let store = store.clone();
        async move {
            let page = store.query(&Query::secondary(pk)).await.unwrap();
            page.items.iter().map(|item| (item.key.sk.clone(), item.version)).collect::<Vec<_>>()
        }
    };
    assert_eq!(indexed("USER#1").await, [("s1".to_owned(), 1)]);
    assert_eq!(indexed("USER#2").await, [("s2".to_owned(), 2)]);
    let session = store.get(&Key::new("SESSION", "s1")).await.unwrap().unwrap();
    assert_eq!(session.expires_at, Some(later.timestamp()));
    clock.advance(chrono::TimeDelta::seconds(61));
    assert!(store.get(&Key::new("SESSION", "s1")).await.unwrap().is_none());
    assert!(indexed("USER#1").await.is_empty());
}

#[tokio::test]
async fn a_folder_of_another_store_without_a_journal_is_refused_not_emptied() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("version"), b"an earlier engine's files").unwrap();
    let refused = EmbeddedStore::open(folder.path(), clock()).err().expect("a foreign folder is refused");
    assert!(format!("{refused:?}").contains("files of another store (version)"), "{refused:?}");
    assert_eq!(std::fs::read(folder.path().join("version")).unwrap(), b"an earlier engine's files");
    assert!(!folder.path().join("journal").exists());
}
