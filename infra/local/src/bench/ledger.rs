//! The ledger: transfers and holds, spread and contended on one account.

use super::*;

pub(super) async fn ledger_bench(
    backend: &str,
    store: Arc<dyn Store>,
    transfers: usize,
    accounts: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    use shared::app::ledger::{Ledger, MAX_LINKED};
    use shared::domain::ledger::{Account, Kind, Transfer};

    let ledger = Arc::new(Ledger::new(store, Arc::new(SystemClock)));
    let (omnibus, escrow) = (Account::of(Kind::Omnibus, "bank", "SGD"), Account::of(Kind::Escrow, "bench-deal", "SGD"));
    let (omnibus_id, escrow_id) = (omnibus.id.clone(), escrow.id.clone());
    ledger.open(omnibus).await?;
    ledger.open(escrow).await?;
    let (omnibus, escrow) = (omnibus_id, escrow_id);
    let investor = |i: usize| Account::id_of(Kind::Deposit, &format!("inv{i}"), "SGD");
    for i in 0..accounts {
        ledger.open(Account::of(Kind::Deposit, &format!("inv{i}"), "SGD")).await?;
        ledger.submit(&Transfer::single(format!("fund{i}"), &omnibus, &investor(i), 1_000_000_000, "SGD", 1)).await?;
    }
    // Spread: investor i pays investor i+1, so concurrent transfers rarely share an account.
    let sequential = transfers.min(2_000);
    let started = Instant::now();
    for i in 0..sequential {
        let t =
            Transfer::single(format!("seq{i}"), &investor(i % accounts), &investor((i + 1) % accounts), 100, "SGD", 9);
        ledger.submit(&t).await?;
    }
    report("ledger", backend, "single_transfer", 1, sequential, started);

    let started = Instant::now();
    let l = ledger.clone();
    concurrently(transfers, concurrency, move |i| {
        let l = l.clone();
        async move {
            let t = Transfer::single(
                format!("par{i}"),
                &investor(i % accounts),
                &investor((i + 7) % accounts),
                100,
                "SGD",
                9,
            );
            l.submit(&t).await?;
            Ok(())
        }
    })
    .await?;
    report("ledger", backend, "single_transfer", concurrency, transfers, started);

    // Contended: every transfer credits the same escrow (as subscriptions to one deal do).
    let contended = transfers.min(5_000);
    let started = Instant::now();
    let (l, to) = (ledger.clone(), escrow.clone());
    concurrently(contended, concurrency, move |i| {
        let (l, to) = (l.clone(), to.clone());
        async move {
            l.submit(&Transfer::single(format!("hot{i}"), &investor(i % accounts), &to, 100, "SGD", 10)).await?;
            Ok(())
        }
    })
    .await?;
    report("ledger", backend, "single_transfer_one_escrow", concurrency, contended, started);

    // Linked batches of the largest size, each all-or-nothing in one store transaction.
    let batches = (transfers / MAX_LINKED).max(1);
    let started = Instant::now();
    let l = ledger.clone();
    concurrently(batches, concurrency, move |b| {
        let l = l.clone();
        async move {
            let batch: Vec<Transfer> = (0..MAX_LINKED)
                .map(|k| {
                    let from = (b * MAX_LINKED + k) % accounts;
                    Transfer::single(
                        format!("link{b}-{k}"),
                        &investor(from),
                        &investor((from + 13) % accounts),
                        100,
                        "SGD",
                        9,
                    )
                })
                .collect();
            l.submit_linked(&batch).await?;
            Ok(())
        }
    })
    .await?;
    report(
        "ledger",
        backend,
        &format!("linked_batch_of_{MAX_LINKED}_transfers"),
        concurrency,
        batches * MAX_LINKED,
        started,
    );
    Ok(())
}
