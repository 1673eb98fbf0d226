//! The batched allocation on the embedded store agrees with the whole-book rule, whatever
//! the order its batch messages arrive in and with every one of them delivered twice,
//! some at the same time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use shared::Platform;
use shared::adapters::clock::ManualClock;
use shared::app::allocation::{AllocationMessage, RunState};
use shared::app::deals::{Deal, deal_item};
use shared::app::ledger::sortable;
use shared::app::subscriptions::{Subscription, SubscriptionStatus, sub_item};
use shared::domain::allocation::{Checksum, Request, allocate};
use shared::domain::deal::{Building, BuildingType, DealState, Terms};
use shared::ports::queue::QueueName;
use shared::ports::store::{Condition, Write};

fn start() -> DateTime<Utc> {
    "2026-11-25T06:00:00Z".parse().unwrap()
}

/// A closed deal of `supply` units and a book of live subscriptions for `units`, written
/// straight to the store; answers the platform and the book as the rule sees it.
async fn closed_deal(supply: u64, units: &[u64], statuses: &[bool]) -> (Platform, Vec<Request>, tempfile::TempDir) {
    let clock = Arc::new(ManualClock::at(start() + TimeDelta::days(8)));
    closed_deal_at(clock, supply, units, statuses).await
}

async fn closed_deal_at(
    clock: Arc<ManualClock>,
    supply: u64,
    units: &[u64],
    statuses: &[bool],
) -> (Platform, Vec<Request>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let platform = Platform::ephemeral(dir.path(), clock).unwrap();
    let deal = Deal {
        id: "deal_prop".into(),
        issuer_id: "iss_prop".into(),
        terms: Terms {
            building: Building {
                name: "Harbour Point".into(),
                address: "2 Harbour Rd".into(),
                kind: BuildingType::Office,
                valuation: 100_000_000,
            },
            supply,
            unit_price: 10_000,
            min_units: 1,
            max_units: 10_000,
            opens_at: start(),
            closes_at: start() + TimeDelta::days(7),
            documents: vec![],
        },
        state: DealState::Closed,
        asset: "DABS-deal_prop".into(),
        escrow_account: "escrow:deal_prop:SGD".into(),
        created_by: "ops".into(),
        created_at: start(),
        updated_at: start(),
        holds_released: false,
    };
    platform.store.put(deal_item(&deal).unwrap(), Condition::NotExists).await.unwrap();
    let mut book = Vec::new();
    let mut writes = Vec::new();
    for (i, (&u, &live)) in units.iter().zip(statuses).enumerate() {
        // Few distinct times, so ties on time are common.
        let created_at = start() + TimeDelta::seconds((i % 7) as i64);
        let sub = Subscription {
            id: format!("sub_{i:05}"),
            deal_id: deal.id.clone(),
            investor_id: format!("inv_{i:05}"),
            units: u,
            amount: u * 10_000,
            status: if live { SubscriptionStatus::Live } else { SubscriptionStatus::Cancelled },
            reason: None,
            created_at,
            updated_at: created_at,
        };
        if live {
            book.push(Request { id: sub.id.clone(), created: sortable(created_at), units: u });
        }
        writes.push(Write::put(sub_item(&sub).unwrap(), Condition::NotExists));
        if writes.len() == 100 {
            platform.store.transact(std::mem::take(&mut writes)).await.unwrap();
        }
    }
    if !writes.is_empty() {
        platform.store.transact(writes).await.unwrap();
    }
    (platform, book, dir)
}

/// Every message waiting on the allocation queue.
async fn drain(platform: &Platform) -> Vec<AllocationMessage> {
    let mut out = Vec::new();
    loop {
        let got = platform.queue.receive(QueueName::Allocation, 10, std::time::Duration::ZERO).await.unwrap();
        if got.is_empty() {
            return out;
        }
        let receipts: Vec<String> = got.iter().map(|r| r.receipt.clone()).collect();
        out.extend(got.iter().map(|r| serde_json::from_str(&r.message.body).unwrap()));
        platform.queue.complete(QueueName::Allocation, &receipts).await.unwrap();
    }
}

/// Runs a deal's allocation with its batches in the order `order` picks, each delivered
/// twice (pairs at the same time); answers each subscription's units and the checksum.
async fn allocate_in_batches(platform: &Platform, order: &[usize]) -> (Vec<(String, u64)>, String, u128) {
    let allocator = Arc::new(platform.allocator());
    allocator.start("deal_prop", false).await.unwrap();
    let mut messages = drain(platform).await;
    // A permutation from the strategy's numbers.
    let mut shuffled = Vec::with_capacity(messages.len());
    for pick in order.iter().cycle().take(messages.len()) {
        shuffled.push(messages.remove(pick % messages.len()));
    }
    shuffled.append(&mut messages);
    for message in shuffled {
        let (a, b) = (allocator.clone(), allocator.clone());
        let (m1, m2) = (message.clone(), message);
        let (r1, r2) = tokio::join!(a.handle(m1), b.handle(m2));
        r1.unwrap();
        r2.unwrap();
    }
    // The leftover pass may hand over to new messages.
    loop {
        let more = drain(platform).await;
        if more.is_empty() {
            break;
        }
        for message in more {
            allocator.handle(message.clone()).await.unwrap();
            allocator.handle(message).await.unwrap();
        }
    }
    let run = allocator.records().run("deal_prop").await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Complete);
    let mut units = Vec::new();
    let mut cursor = None;
    loop {
        let (page, next) = allocator.records().allocations("deal_prop", 100, cursor).await.unwrap();
        units.extend(page.into_iter().map(|a| (a.subscription_id.clone(), a.units())));
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    units.sort();
    let allocated = run.allocated();
    (units, run.checksum, allocated)
}

fn book() -> impl Strategy<Value = (u64, Vec<u64>, Vec<bool>, Vec<usize>)> {
    (1usize..320).prop_flat_map(|n| {
        (
            1u64..20_000,
            prop::collection::vec(1u64..400, n),
            prop::collection::vec(prop::bool::weighted(0.9), n),
            prop::collection::vec(0usize..1_000, 1..8),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn batched_allocation_equals_the_whole_book_rule_in_any_order_and_twice((supply, units, live, order) in book()) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let (platform, book, _dir) = closed_deal(supply, &units, &live).await;
            let (got, checksum, allocated) = allocate_in_batches(&platform, &order).await;
            let expected = allocate(supply, &book);
            let mut want: Vec<(String, u64)> = book.iter().map(|r| r.id.clone()).zip(expected.iter().copied()).collect();
            want.sort();
            assert_eq!(got, want);
            let mut sum = Checksum::default();
            for (id, u) in &want {
                sum.add(id, *u);
            }
            assert_eq!(checksum, sum.hex());
            let requested: u128 = book.iter().map(|r| u128::from(r.units)).sum();
            assert_eq!(allocated, requested.min(u128::from(supply)));
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_book_completes_with_nothing_allocated() {
    let (platform, _, _dir) = closed_deal(100, &[], &[]).await;
    let (units, checksum, allocated) = allocate_in_batches(&platform, &[0]).await;
    assert!(units.is_empty());
    assert_eq!((checksum, allocated), (Checksum::default().hex(), 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_batches_were_lost_is_resumed_by_the_sweep_nudge() {
    let clock = Arc::new(ManualClock::at(start() + TimeDelta::days(8)));
    let units: Vec<u64> = (0..450).map(|i| 1 + (i * 37) % 200).collect();
    let (platform, book, _dir) = closed_deal_at(clock.clone(), 5_000, &units, &vec![true; units.len()]).await;
    let allocator = platform.allocator();
    allocator.start("deal_prop", false).await.unwrap();
    let batches = drain(&platform).await;
    assert_eq!(batches.len(), 5);
    // Two batches are handled; three are lost (say, left in the dead-letter queue).
    for message in &batches[..2] {
        allocator.handle(message.clone()).await.unwrap();
    }
    assert_eq!(allocator.nudge_stale().await.unwrap(), 0, "not standing still yet");
    clock.advance(TimeDelta::seconds(11));
    assert_eq!(allocator.nudge_stale().await.unwrap(), 1);
    assert_eq!(allocator.nudge_stale().await.unwrap(), 0, "nudged once per interval, however often the sweep runs");
    let resume = drain(&platform).await;
    assert!(matches!(resume.as_slice(), [AllocationMessage::Resume { .. }]), "{resume:?}");
    allocator.handle(resume[0].clone()).await.unwrap();
    loop {
        let more = drain(&platform).await;
        if more.is_empty() {
            break;
        }
        for message in more {
            allocator.handle(message).await.unwrap();
        }
    }
    let run = allocator.records().run("deal_prop").await.unwrap().unwrap();
    assert_eq!((run.state, run.batches_done), (RunState::Complete, 5));
    let expected = allocate(5_000, &book);
    let mut sum = Checksum::default();
    for (request, units) in book.iter().zip(&expected) {
        assert_eq!(allocator.records().allocation(&request.id).await.unwrap().unwrap().units(), *units);
        sum.add(&request.id, *units);
    }
    assert_eq!(run.checksum, sum.hex());
}
