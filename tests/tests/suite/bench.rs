//! The allocation benchmark's entry point works as documented on a small book: one JSON
//! line for close to allocated (and one for settlement), with the fields `docs/BENCHMARKS.md`
//! quotes, and a result that is the allocation's.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_allocation_bench_reports_a_complete_run_and_its_settlement() {
    let dir = tempfile::tempdir().unwrap();
    let platform = shared::Platform::embedded(dir.path()).unwrap();
    let lines = local::bench::allocation_bench("embedded", &platform, 250, None, true, 2).await.unwrap();
    let [allocation, settlement] = lines.as_slice() else { panic!("two lines: {lines:?}") };
    assert_eq!((allocation["bench"].as_str(), allocation["subscriptions"].as_u64()), (Some("allocation"), Some(250)));
    assert_eq!(allocation["batches"], 3);
    let supply = allocation["supply"].as_u64().unwrap();
    assert_eq!(allocation["allocated"], supply.to_string(), "oversubscribed by default: the whole supply");
    assert!(allocation["requested"].as_str().unwrap().parse::<u64>().unwrap() > supply);
    assert_eq!(allocation["checksum"].as_str().map(str::len), Some(32));
    for line in &lines {
        assert!(line["elapsed_s"].as_f64().is_some() && line["peak_rss_mb"].as_f64().unwrap() > 0.0, "{line}");
    }
    assert_eq!((settlement["bench"].as_str(), settlement["subscriptions"].as_u64()), (Some("settlement"), Some(250)));
    let deal = platform.deals().get("bench-deal").await.unwrap().unwrap();
    assert_eq!(deal.state.as_str(), "issued");
}

/// The reconciliation bench finds exactly the differences it injected, of every kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reconciliation_bench_finds_exactly_what_it_injected() {
    let dir = tempfile::tempdir().unwrap();
    let mut platform = shared::Platform::embedded(dir.path()).unwrap();
    let line = local::bench::reconcile::reconcile_bench(&mut platform, dir.path(), 3_000, 8).await.unwrap();
    assert_eq!(
        (line["accounts"].as_u64(), line["injected"].as_u64(), line["breaks"].as_u64()),
        (Some(3_000), Some(8), Some(8))
    );
    assert!(line["elapsed_s"].as_f64().is_some() && line["peak_rss_mb"].as_f64().unwrap() > 0.0, "{line}");
    let reconciler = platform.reconciler();
    let (runs, _) = reconciler.list(1, None).await.unwrap();
    let (rows, _) = reconciler.rows(&runs[0].id, 100, None).await.unwrap();
    let pairs: Vec<_> =
        rows.iter().map(|r| (r.pair, r.ledger.is_some(), r.other.is_some(), r.difference.as_str())).collect();
    use shared::domain::reconcile::Pair::{LedgerChain, LedgerCustody};
    let kinds = [(LedgerChain, true, true, "1"), (LedgerCustody, true, true, "-1")];
    for kind in kinds {
        assert_eq!(pairs.iter().filter(|p| **p == kind).count(), 2, "{kind:?} in {pairs:?}");
    }
    assert_eq!(pairs.iter().filter(|(p, l, o, _)| *p == LedgerChain && *l && !*o).count(), 2, "missing on the chain");
    assert_eq!(
        pairs.iter().filter(|(p, l, o, d)| *p == LedgerCustody && !*l && *o && *d == "1").count(),
        2,
        "extra at the Custody"
    );
}
