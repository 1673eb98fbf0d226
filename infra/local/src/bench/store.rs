//! Stores: puts, gets, conditional updates, queries and transactions, under concurrency.

use super::*;

pub(super) async fn store_bench(
    backend: &str,
    store: Arc<dyn Store>,
    ops: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    // Sequential conditional puts: one request at a time, each its own commit.
    let sequential = ops.min(2_000);
    let started = Instant::now();
    for i in 0..sequential {
        store.put(item("SEQ", format!("{i:08}"))?, Condition::NotExists).await?;
    }
    report("store", backend, "put_if_absent", 1, sequential, started);

    let started = Instant::now();
    let s = store.clone();
    concurrently(ops, concurrency, move |i| {
        let s = s.clone();
        async move { Ok(s.put(item(&format!("P{}", i % 1024), format!("{i:08}"))?, Condition::NotExists).await?) }
    })
    .await?;
    report("store", backend, "put_if_absent", concurrency, ops, started);

    // Read-check-write: bump one version per item under a version condition.
    let started = Instant::now();
    let s = store.clone();
    concurrently(ops, concurrency, move |i| {
        let s = s.clone();
        async move {
            let key = Key::new(format!("P{}", i % 1024), format!("{i:08}"));
            let current = s.get(&key).await?.ok_or_else(|| anyhow::anyhow!("item {key} vanished"))?;
            Ok(s.put(item(&key.pk, key.sk.clone())?, Condition::VersionIs(current.version)).await?)
        }
    })
    .await?;
    report("store", backend, "get_then_put_if_version", concurrency, ops, started);

    let started = Instant::now();
    let s = store.clone();
    concurrently(ops, concurrency, move |i| {
        let s = s.clone();
        async move {
            s.get(&Key::new(format!("P{}", i % 1024), format!("{i:08}"))).await?;
            Ok(())
        }
    })
    .await?;
    report("store", backend, "get", concurrency, ops, started);

    let transactions = (ops / 1_000).clamp(20, 200);
    let started = Instant::now();
    for t in 0..transactions {
        let writes = (0..100)
            .map(|i| Ok(Write::put(item(&format!("TX{t}"), format!("{i:03}"))?, Condition::NotExists)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        store.transact(writes).await?;
    }
    report("store", backend, "transact_100_puts", 1, transactions, started);

    for chunk in 0..10 {
        let writes = (0..100)
            .map(|i| {
                Ok(Write::put(
                    item("Q", format!("{:05}", chunk * 100 + i))?.with_index("QI", format!("{i:05}")),
                    Condition::None,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        store.transact(writes).await?;
    }
    let queries = 50;
    let started = Instant::now();
    for _ in 0..queries {
        let page = store.query(&Query::partition("Q").limit(1_000)).await?;
        anyhow::ensure!(page.items.len() == 1_000, "expected 1,000 items, got {}", page.items.len());
    }
    report("store", backend, "query_1000_items", 1, queries, started);
    Ok(())
}
