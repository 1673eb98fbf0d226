//! Allocation (and settlement) of a closed deal with a large book.

use super::*;

/// Units the allocation bench's subscription `i` asks for: 10 to 1,000.
fn bench_units(i: usize) -> u64 {
    10 + (i as u64 * 7_919) % 991
}

/// The allocation bench on `platform`: prints its JSON lines and answers them.
pub async fn allocation_bench(
    backend: &str,
    platform: &shared::Platform,
    count: usize,
    supply: Option<u64>,
    settle: bool,
    workers: usize,
) -> anyhow::Result<Vec<serde_json::Value>> {
    use shared::app::allocation::{self, RunState};
    use shared::app::consumer::pump_once;

    use shared::app::subscriptions::{Subscription, SubscriptionStatus, hold_of, sub_item};
    use shared::domain::deal::DealState;
    use shared::domain::ledger::{Account, Kind, SGD, Transfer};
    use shared::ports::queue::QueueName;

    let deal_id = "bench-deal";
    let now = platform.clock.now();
    let requested: u64 = (0..count).map(bench_units).sum();
    let supply = supply.unwrap_or((requested / 5).max(1));
    let unit_price = 100;
    let deal = write_deal(platform, deal_id, DealState::Closed, supply, unit_price).await?;
    let ledger = platform.ledger();
    ledger.open(Account::of(Kind::Omnibus, "bank", SGD)).await?;

    // The book, 100 subscriptions a transaction; with `settle`, each one's deposit account,
    // money and hold in the ledger too.
    let setup = Instant::now();
    for start in (0..count).step_by(100) {
        let subs: Vec<Subscription> = (start..count.min(start + 100))
            .map(|i| Subscription {
                id: format!("sub{i:08}"),
                deal_id: deal_id.into(),
                investor_id: format!("inv{i:08}"),
                units: bench_units(i),
                amount: bench_units(i) * unit_price,
                status: SubscriptionStatus::Live,
                reason: None,
                created_at: now + chrono::TimeDelta::milliseconds(i as i64),
                updated_at: now,
            })
            .collect();
        if settle {
            for sub in &subs {
                ledger.open(Account::of(Kind::Deposit, &sub.investor_id, SGD)).await?;
            }
            for chunk in subs.chunks(7) {
                let mut transfers = Vec::with_capacity(2 * chunk.len());
                for sub in chunk {
                    let deposit = Account::id_of(Kind::Deposit, &sub.investor_id, SGD);
                    transfers.push(Transfer::single(
                        format!("fund-{}", sub.id),
                        "omnibus:bank:SGD",
                        &deposit,
                        sub.amount,
                        SGD,
                        1,
                    ));
                    transfers.push(hold_of(&sub.id, &sub.investor_id, &deal.escrow_account, sub.amount));
                }
                ledger.submit_linked(&transfers).await?;
            }
        }
        let writes = subs
            .iter()
            .map(|s| Ok(Write::put(sub_item(s)?, Condition::NotExists)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        platform.store.transact(writes).await?;
    }
    eprintln!("book of {count} written in {:.1} s", setup.elapsed().as_secs_f64());

    // Close to allocated: the start message, then workers on the queues until the run completes.
    let started = Instant::now();
    allocation::request_start(platform.queue.as_ref(), deal_id).await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    let mut queues: Vec<(QueueName, Arc<dyn shared::app::consumer::BatchHandler>, usize)> =
        vec![(QueueName::Allocation, ::allocation::handler(platform), workers)];
    if settle {
        queues.push((QueueName::Settlement, settlement::handler(platform), 1));
    }
    for (queue, handler, n) in queues {
        for _ in 0..n {
            let (q, handler, stop) = (platform.queue.clone(), handler.clone(), stop.clone());
            tasks.spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Err(error) =
                        pump_once(q.as_ref(), queue, handler.as_ref(), std::time::Duration::from_millis(50)).await
                    {
                        eprintln!("queue: {error}");
                    }
                }
            });
        }
    }
    let allocations = platform.allocation_records();
    let run = loop {
        if let Some(run) = allocations.run(deal_id).await?.filter(|r| r.state == RunState::Complete) {
            break run;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let allocated_in = started.elapsed().as_secs_f64();
    let mut lines = vec![json!({
        "bench": "allocation", "backend": backend, "subscriptions": run.subscriptions, "supply": run.supply,
        "requested": run.requested.to_string(), "allocated": run.allocated().to_string(), "batches": run.batches,
        "leftover_units": run.leftover, "ratio": run.ratio, "elapsed_s": (allocated_in * 1000.0).round() / 1000.0,
        "peak_rss_mb": (peak_rss_mb() * 10.0).round() / 10.0, "checksum": run.checksum,
    })];
    if settle {
        let deals = platform.deals();
        let settling = Instant::now();
        while deals.get(deal_id).await?.map(|d| d.state) != Some(DealState::Issued) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let seconds = settling.elapsed().as_secs_f64();
        lines.push(json!({
            "bench": "settlement", "backend": backend, "subscriptions": run.subscriptions,
            "elapsed_s": (seconds * 1000.0).round() / 1000.0,
            "subscriptions_per_s": (run.subscriptions as f64 / seconds).round(),
            "close_to_issued_s": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            "peak_rss_mb": (peak_rss_mb() * 10.0).round() / 10.0,
        }));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    for line in &lines {
        println!("{line}");
    }
    Ok(lines)
}
