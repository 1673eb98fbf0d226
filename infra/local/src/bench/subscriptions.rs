//! Subscriptions: holds placed concurrently on one deal, and the deal's book read back.

use super::*;

pub(super) async fn subscriptions_bench(
    backend: &str,
    platform: &shared::Platform,
    placed: usize,
    book: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    use shared::app::subscriptions::{Subscription, SubscriptionStatus, sub_item};
    use shared::domain::ledger::{Account, Kind, Transfer};

    let now = platform.clock.now();
    let ledger = platform.ledger();
    open_bench_deal(platform, "bench-deal").await?;

    // Investors with deposit accounts and money, then one subscription each, concurrently:
    // every hold credits the same escrow.
    let deposits = Arc::new(platform.deposit_accounts());
    let omnibus = Account::of(Kind::Omnibus, "bank", "SGD");
    let omnibus_id = omnibus.id.clone();
    ledger.open(omnibus).await?;
    for i in 0..placed {
        let investor = format!("inv{i}");
        let account = deposits.account_for(&investor).await?;
        ledger
            .submit(&Transfer::single(format!("fund{i}"), &omnibus_id, &account.account_id, 1_000_000, "SGD", 1))
            .await?;
    }
    let subscriptions = Arc::new(platform.subscriptions(deposits));
    let started = Instant::now();
    let subs = subscriptions.clone();
    concurrently(placed, concurrency, move |i| {
        let subs = subs.clone();
        async move {
            let sub = subs.subscribe(&format!("inv{i}"), "bench-deal", "bench", 10).await?;
            anyhow::ensure!(sub.status == SubscriptionStatus::Live, "not live: {sub:?}");
            Ok(())
        }
    })
    .await?;
    report("subscriptions", backend, "subscribe_one_deal", concurrency, placed, started);

    // Fill the book to `book` entries (written directly, 100 a transaction), then total it.
    let mut written = placed;
    while written < book {
        let writes = (written..book.min(written + 100))
            .map(|i| {
                let sub = Subscription {
                    id: format!("bulk{i:08}"),
                    deal_id: "bench-deal".into(),
                    investor_id: format!("bulk-investor{i}"),
                    units: 10,
                    amount: 1_000,
                    status: SubscriptionStatus::Live,
                    reason: None,
                    created_at: now,
                    updated_at: now,
                };
                Ok(Write::put(sub_item(&sub)?, Condition::None))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        written += writes.len();
        platform.store.transact(writes).await?;
    }
    let before = peak_rss_mb();
    let started = Instant::now();
    let totals = subscriptions.totals("bench-deal").await?;
    anyhow::ensure!(totals.live as usize == book.max(placed), "totals counted {} of {book}", totals.live);
    report("subscriptions", backend, &format!("totals_over_{book}"), 1, 1, started);
    println!(
        "{}",
        json!({"bench": "subscriptions", "case": "totals_peak_rss_growth_mb", "before_mb": before, "after_mb": peak_rss_mb()})
    );
    Ok(())
}

/// An open deal with its escrow account, written directly (no issuer, no approval): what
/// the subscription benches subscribe to.
pub(super) async fn open_bench_deal(platform: &shared::Platform, id: &str) -> anyhow::Result<()> {
    write_deal(platform, id, shared::domain::deal::DealState::Open, 1_000_000_000, 100).await?;
    Ok(())
}
