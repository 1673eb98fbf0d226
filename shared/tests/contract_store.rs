//! The `Store` contract, run against the embedded and DynamoDB adapters.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use chrono::TimeDelta;
use serde_json::{Value, json};
use shared::adapters::clock::ManualClock;
use shared::ports::store::{
    Condition, Item, Key, MAX_BODY_BYTES, MAX_TRANSACTION_OPS, Query, Range, StoreError, Write,
};
use shared::ports::{Clock, Store};

struct Fixture {
    store: Arc<dyn Store>,
    clock: Arc<ManualClock>,
}

mod fixtures {
    use super::*;
    use shared::adapters::aws::DynamoStore;
    use shared::adapters::embedded::EmbeddedStore;

    pub async fn embedded() -> Fixture {
        let clock = support::clock();
        Fixture { store: Arc::new(EmbeddedStore::temporary(clock.clone()).unwrap()), clock }
    }

    pub async fn aws() -> Fixture {
        let clock = support::clock();
        let client = aws_sdk_dynamodb::Client::new(&support::aws_config().await);
        let table = support::unique("store");
        DynamoStore::create_table(&client, &table).await.expect("create table in the emulator");
        Fixture { store: Arc::new(DynamoStore::new(client, table, clock.clone())), clock }
    }
}

contract!(
    put_if_absent_creates_version_1,
    put_if_absent_on_an_existing_item_fails_and_changes_nothing,
    version_condition_accepts_the_current_version_only,
    must_exist_refuses_a_missing_item,
    delete_honours_its_condition,
    a_transaction_with_one_failing_condition_writes_nothing_and_names_the_operation,
    a_transaction_of_the_most_operations_applies_all_of_them,
    malformed_transactions_are_refused_before_any_write,
    concurrent_compare_and_swap_writers_lose_no_increment,
    queries_select_by_prefix_and_range_in_both_orders,
    queries_page_with_a_cursor_until_exhausted,
    the_secondary_index_follows_every_write,
    expired_items_are_invisible_to_reads_and_conditions,
);

fn key(pk: &str, sk: &str) -> Key {
    Key::new(pk, sk)
}

fn item(pk: &str, sk: &str, value: Value) -> Item {
    Item::new(key(pk, sk), &value).unwrap()
}

fn sks(items: &[Item]) -> Vec<String> {
    items.iter().map(|i| i.key.sk.clone()).collect()
}

async fn put_if_absent_creates_version_1(f: Fixture) {
    f.store.put(item("ACC#1", "PROFILE", json!({"name": "Tan"})), Condition::NotExists).await.unwrap();
    let got = f.store.get(&key("ACC#1", "PROFILE")).await.unwrap().expect("the item");
    assert_eq!(got.version, 1);
    assert_eq!(got.decode::<Value>().unwrap(), json!({"name": "Tan"}));
    assert!(f.store.get(&key("ACC#1", "OTHER")).await.unwrap().is_none());
}

async fn put_if_absent_on_an_existing_item_fails_and_changes_nothing(f: Fixture) {
    f.store.put(item("A", "1", json!({"v": "first"})), Condition::NotExists).await.unwrap();
    let err = f.store.put(item("A", "1", json!({"v": "second"})), Condition::NotExists).await.unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed { index: 0, .. }), "{err:?}");
    let got = f.store.get(&key("A", "1")).await.unwrap().unwrap();
    assert_eq!((got.version, got.decode::<Value>().unwrap()), (1, json!({"v": "first"})));
}

async fn version_condition_accepts_the_current_version_only(f: Fixture) {
    f.store.put(item("A", "1", json!(1)), Condition::NotExists).await.unwrap();
    f.store.put(item("A", "1", json!(2)), Condition::VersionIs(1)).await.unwrap();
    let stale = f.store.put(item("A", "1", json!(3)), Condition::VersionIs(1)).await.unwrap_err();
    assert!(matches!(stale, StoreError::ConditionFailed { .. }), "{stale:?}");
    f.store.put(item("A", "1", json!(4)), Condition::None).await.unwrap();
    let got = f.store.get(&key("A", "1")).await.unwrap().unwrap();
    assert_eq!((got.version, got.decode::<Value>().unwrap()), (3, json!(4)));
    let missing = f.store.put(item("B", "1", json!(1)), Condition::VersionIs(1)).await.unwrap_err();
    assert!(matches!(missing, StoreError::ConditionFailed { .. }), "{missing:?}");
}

async fn must_exist_refuses_a_missing_item(f: Fixture) {
    let err = f.store.put(item("A", "1", json!(1)), Condition::Exists).await.unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed { .. }), "{err:?}");
    assert!(f.store.get(&key("A", "1")).await.unwrap().is_none());
    f.store.put(item("A", "1", json!(1)), Condition::NotExists).await.unwrap();
    f.store.put(item("A", "1", json!(2)), Condition::Exists).await.unwrap();
    assert_eq!(f.store.get(&key("A", "1")).await.unwrap().unwrap().version, 2);
}

async fn delete_honours_its_condition(f: Fixture) {
    f.store.put(item("A", "1", json!(1)), Condition::NotExists).await.unwrap();
    let stale = f.store.delete(key("A", "1"), Condition::VersionIs(7)).await.unwrap_err();
    assert!(matches!(stale, StoreError::ConditionFailed { .. }), "{stale:?}");
    assert!(f.store.get(&key("A", "1")).await.unwrap().is_some());
    f.store.delete(key("A", "1"), Condition::VersionIs(1)).await.unwrap();
    assert!(f.store.get(&key("A", "1")).await.unwrap().is_none());
    let gone = f.store.delete(key("A", "1"), Condition::Exists).await.unwrap_err();
    assert!(matches!(gone, StoreError::ConditionFailed { .. }), "{gone:?}");
}

async fn a_transaction_with_one_failing_condition_writes_nothing_and_names_the_operation(f: Fixture) {
    f.store.put(item("ACC", "B", json!("existing")), Condition::NotExists).await.unwrap();
    let writes = vec![
        Write::put(item("ACC", "A", json!("new")), Condition::NotExists),
        Write::put(item("ACC", "B", json!("changed")), Condition::VersionIs(1)),
        Write::put(item("ACC", "C", json!("new")), Condition::NotExists),
        Write::check(key("ACC", "D"), Condition::Exists),
    ];
    let err = f.store.transact(writes).await.unwrap_err();
    match err {
        StoreError::ConditionFailed { index, key: failed } => assert_eq!((index, failed), (3, key("ACC", "D"))),
        other => panic!("expected a failed condition, got {other:?}"),
    }
    assert!(f.store.get(&key("ACC", "A")).await.unwrap().is_none());
    assert!(f.store.get(&key("ACC", "C")).await.unwrap().is_none());
    let b = f.store.get(&key("ACC", "B")).await.unwrap().unwrap();
    assert_eq!((b.version, b.decode::<Value>().unwrap()), (1, json!("existing")));
}

/// 100 operations on DynamoDB, the store's own limit (more) on the embedded store.
async fn a_transaction_of_the_most_operations_applies_all_of_them(f: Fixture) {
    let most = f.store.max_transaction_ops();
    assert!(most >= MAX_TRANSACTION_OPS, "every store takes what DynamoDB takes");
    f.store.put(item("T", "0000", json!(0)), Condition::NotExists).await.unwrap();
    let mut writes = vec![Write::put(item("T", "0000", json!(1)), Condition::VersionIs(1))];
    writes.extend((1..most).map(|i| Write::put(item("T", &format!("{i:04}"), json!(i)), Condition::NotExists)));
    f.store.transact(writes).await.unwrap();
    // More than one page holds on the embedded store: walked a page at a time.
    let mut versions = Vec::with_capacity(most);
    shared::ports::store::each(f.store.as_ref(), &Query::partition("T"), |item| {
        versions.push(item.version);
        Ok(())
    })
    .await
    .unwrap();
    assert_eq!(versions.len(), most);
    assert_eq!(versions[0], 2);
    assert!(versions[1..].iter().all(|v| *v == 1));
}

async fn malformed_transactions_are_refused_before_any_write(f: Fixture) {
    let twice =
        vec![Write::put(item("D", "1", json!(1)), Condition::None), Write::check(key("D", "1"), Condition::Exists)];
    assert!(matches!(f.store.transact(twice).await, Err(StoreError::Invalid(_))));
    let too_many: Vec<_> = (0..=f.store.max_transaction_ops())
        .map(|i| Write::put(item("D", &i.to_string(), json!(i)), Condition::None))
        .collect();
    assert!(matches!(f.store.transact(too_many).await, Err(StoreError::Invalid(_))));
    assert!(matches!(f.store.transact(vec![]).await, Err(StoreError::Invalid(_))));
    let huge = item("D", "big", json!("x".repeat(MAX_BODY_BYTES)));
    assert!(matches!(f.store.put(huge, Condition::None).await, Err(StoreError::Invalid(_))));
    assert!(matches!(f.store.put(item("D", "a\0b", json!(1)), Condition::None).await, Err(StoreError::Invalid(_))));
    let page = f.store.query(&Query::partition("D")).await.unwrap();
    assert!(page.items.is_empty(), "nothing was written: {:?}", sks(&page.items));
}

async fn concurrent_compare_and_swap_writers_lose_no_increment(f: Fixture) {
    const WRITERS: u64 = 8;
    const EACH: u64 = 10;
    f.store.put(item("COUNTER", "1", json!(0)), Condition::NotExists).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..WRITERS {
        let store = f.store.clone();
        tasks.spawn(async move {
            let mut conflicts = 0u64;
            for _ in 0..EACH {
                loop {
                    let current = store.get(&key("COUNTER", "1")).await.unwrap().unwrap();
                    let value: u64 = current.decode().unwrap();
                    match store.put(item("COUNTER", "1", json!(value + 1)), Condition::VersionIs(current.version)).await
                    {
                        Ok(()) => break,
                        Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => conflicts += 1,
                        Err(other) => panic!("{other:?}"),
                    }
                }
            }
            conflicts
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let counter = f.store.get(&key("COUNTER", "1")).await.unwrap().unwrap();
    assert_eq!(counter.decode::<u64>().unwrap(), WRITERS * EACH);
    assert_eq!(counter.version, WRITERS * EACH + 1);
}

async fn seed(store: &dyn Store, pk: &str, sks: &[&str]) {
    let writes = sks.iter().map(|sk| Write::put(item(pk, sk, json!(sk)), Condition::NotExists)).collect();
    store.transact(writes).await.unwrap();
}

async fn queries_select_by_prefix_and_range_in_both_orders(f: Fixture) {
    seed(f.store.as_ref(), "DEAL#1", &["SUB#001", "SUB#002", "SUB#010", "SUBX", "TOTAL", "ALLOC#1"]).await;
    seed(f.store.as_ref(), "DEAL#2", &["SUB#001"]).await;
    let run = |q: Query| {
        let store = f.store.clone();
        async move { sks(&store.query(&q).await.unwrap().items) }
    };
    assert_eq!(run(Query::partition("DEAL#1")).await, ["ALLOC#1", "SUB#001", "SUB#002", "SUB#010", "SUBX", "TOTAL"]);
    assert_eq!(
        run(Query::partition("DEAL#1").range(Range::Prefix("SUB#".into()))).await,
        ["SUB#001", "SUB#002", "SUB#010"]
    );
    assert_eq!(
        run(Query::partition("DEAL#1").range(Range::Prefix("SUB#".into())).descending()).await,
        ["SUB#010", "SUB#002", "SUB#001"]
    );
    assert_eq!(
        run(Query::partition("DEAL#1").range(Range::Between("SUB#002".into(), "SUBX".into()))).await,
        ["SUB#002", "SUB#010", "SUBX"]
    );
    assert_eq!(run(Query::partition("DEAL#1").range(Range::AtLeast("SUBX".into()))).await, ["SUBX", "TOTAL"]);
    assert_eq!(
        run(Query::partition("DEAL#1").range(Range::AtMost("SUB#001".into())).descending()).await,
        ["SUB#001", "ALLOC#1"]
    );
    assert!(run(Query::partition("DEAL#3")).await.is_empty());
}

async fn queries_page_with_a_cursor_until_exhausted(f: Fixture) {
    let all: Vec<String> = (0..25).map(|i| format!("E#{i:03}")).collect();
    seed(f.store.as_ref(), "P", &all.iter().map(String::as_str).collect::<Vec<_>>()).await;
    for descending in [false, true] {
        let mut seen = Vec::new();
        let mut cursor = None;
        let mut pages = Vec::new();
        loop {
            let mut query = Query::partition("P").limit(10).after(cursor.take());
            if descending {
                query = query.descending();
            }
            let page = f.store.query(&query).await.unwrap();
            pages.push(page.items.len());
            seen.extend(sks(&page.items));
            // The cursor travels as text through the API.
            match page.next {
                Some(next) => cursor = Some(shared::ports::store::Cursor::decode(&next.encode()).unwrap()),
                None => break,
            }
        }
        let mut expected = all.clone();
        if descending {
            expected.reverse();
        }
        assert_eq!(seen, expected);
        assert_eq!(pages, [10, 10, 5]);
    }
    // A page that ends exactly at the last item says there is no next page.
    let exact = f.store.query(&Query::partition("P").limit(25)).await.unwrap();
    assert_eq!((exact.items.len(), exact.next.is_none()), (25, true));
}

async fn the_secondary_index_follows_every_write(f: Fixture) {
    let indexed = |sk: &str, score: &str| item("SUB", sk, json!(sk)).with_index("RANK#1", score);
    f.store.put(indexed("a", "0003"), Condition::NotExists).await.unwrap();
    f.store.put(indexed("b", "0001"), Condition::NotExists).await.unwrap();
    f.store.put(indexed("c", "0002"), Condition::NotExists).await.unwrap();
    f.store.put(item("SUB", "d", json!("d")), Condition::NotExists).await.unwrap();
    let ranked = |q: Query| {
        let store = f.store.clone();
        async move { sks(&store.query(&q).await.unwrap().items) }
    };
    assert_eq!(ranked(Query::secondary("RANK#1")).await, ["b", "c", "a"]);
    assert_eq!(ranked(Query::secondary("RANK#1").descending().limit(2)).await, ["a", "c"]);
    // Moving an item's index key moves it; removing the key removes it from the index.
    f.store.put(indexed("a", "0000"), Condition::VersionIs(1)).await.unwrap();
    f.store.put(item("SUB", "c", json!("c")), Condition::VersionIs(1)).await.unwrap();
    assert_eq!(ranked(Query::secondary("RANK#1")).await, ["a", "b"]);
    assert_eq!(ranked(Query::secondary("RANK#1").range(Range::AtLeast("0001".into()))).await, ["b"]);
    // Paging over the index.
    let first = f.store.query(&Query::secondary("RANK#1").limit(1)).await.unwrap();
    assert_eq!(sks(&first.items), ["a"]);
    let second = f.store.query(&Query::secondary("RANK#1").limit(1).after(first.next)).await.unwrap();
    assert_eq!((sks(&second.items), second.next.is_none()), (vec!["b".to_owned()], true));
    f.store.delete(key("SUB", "b"), Condition::Exists).await.unwrap();
    assert_eq!(ranked(Query::secondary("RANK#1")).await, ["a"]);
}

async fn expired_items_are_invisible_to_reads_and_conditions(f: Fixture) {
    let now = f.clock.now();
    let session =
        item("SESSION", "s1", json!("live")).with_index("USER#1", "s1").expiring_at(now + TimeDelta::seconds(60));
    f.store.put(session, Condition::NotExists).await.unwrap();
    f.store.put(item("SESSION", "s2", json!("forever")), Condition::NotExists).await.unwrap();
    assert!(f.store.get(&key("SESSION", "s1")).await.unwrap().is_some());

    f.clock.advance(TimeDelta::seconds(61));
    assert!(f.store.get(&key("SESSION", "s1")).await.unwrap().is_none());
    assert_eq!(sks(&f.store.query(&Query::partition("SESSION")).await.unwrap().items), ["s2"]);
    assert!(f.store.query(&Query::secondary("USER#1")).await.unwrap().items.is_empty());
    let err = f.store.put(item("SESSION", "s1", json!("x")), Condition::Exists).await.unwrap_err();
    assert!(matches!(err, StoreError::ConditionFailed { .. }), "{err:?}");
    // An expired item counts as absent: it can be created again, from version 1.
    f.store.put(item("SESSION", "s1", json!("again")), Condition::NotExists).await.unwrap();
    let again = f.store.get(&key("SESSION", "s1")).await.unwrap().unwrap();
    assert_eq!((again.version, again.expires_at), (1, None));
}
