//! Reconciliation on the local platform after a full offering: the three books agree; a
//! record the chain lost, and a deposit the Custody booked a cent short, are each one break
//! in the right pair, and gone once put right; what is in flight at the cut-off is a timing
//! difference until its grace runs out; transfers that keep flowing during a run do not
//! change its result.

use platform_tests::settle::{subscribed_investors, wait_for_chain, wait_for_state};
use platform_tests::{TestApp, on_both_stores};
use reqwest::StatusCode;
use shared::adapters::partners::{Fault, FaultKind};
use shared::app::mirror::{DELIVERED, Delivered};
use shared::app::reconcile::{RunVerdict, StoredRow};
use shared::domain::reconcile::{Class, Lifecycle, Pair, RowVerdict};
use shared::ports::Chain;
use shared::ports::custody::{Custody, CustodyTransfer};
use shared::ports::store::Query;

fn breaks(rows: &[StoredRow]) -> Vec<(String, Pair, i128)> {
    rows.iter()
        .filter(|r| r.verdict == RowVerdict::Break)
        .map(|r| (r.account.clone(), r.pair, r.difference.parse().unwrap()))
        .collect()
}

on_both_stores!(
    after_an_offering_the_books_agree_and_injected_differences_are_one_break_each,
    in_flight_items_are_timing_differences_until_their_grace_runs_out,
    a_run_while_transfers_flow_equals_a_quiet_run_of_the_same_cut_off,
);

async fn after_an_offering_the_books_agree_and_injected_differences_are_one_break_each(app: TestApp) {
    let deal = app.open_deal("201912345K").await;
    let investors = subscribed_investors(&app.platform, &deal, 0..12).await;
    let (_, finance) = app.operator("fin@example.sg", &["finance"]).await;
    app.close_early(&deal, &finance).await;
    wait_for_state(&app.platform, &deal, "issued", 300).await;
    wait_for_chain(&app.platform).await;
    let reconciler = app.platform.reconciler();
    let tick = || app.clock.advance(chrono::TimeDelta::seconds(1));

    tick();
    let clean = reconciler.run(app.platform.clock.now()).await.unwrap();
    assert_eq!((clean.verdict, clean.breaks), (RunVerdict::Reconciled, 0), "{clean:?}");
    let matched = |class: Class, pair: Pair| {
        clean
            .counts
            .iter()
            .find(|c| c.class == class && c.pair == pair && c.verdict == RowVerdict::Matched)
            .map(|c| c.rows)
    };
    assert_eq!(matched(Class::Deposit, Pair::LedgerCustody), Some(investors.len() as u64));
    let holders = clean.counts.iter().find(|c| c.class == Class::Dabs && c.pair == Pair::LedgerChain).unwrap().rows;
    assert!(holders > 0 && holders <= investors.len() as u64);

    // The chain loses the record of a deposit to one investor; the Custody books a deposit
    // to another a cent short.
    let sims = app.platform.simulators.clone().unwrap();
    let (ann, ben) = (format!("deposit:{}:SGD", investors[1]), format!("deposit:{}:SGD", investors[2]));
    sims.chain.faults.inject(Fault { kind: FaultKind::Lose, times: 1, delay_ms: 0 });
    deposit(&app.platform, &investors[1], "250.00").await;
    wait_for_chain(&app.platform).await;
    assert!(sims.chain.calls().iter().any(|c| c.outcome == "lost (injected)"), "the chain lost a record");
    sims.custody.inject(Fault { kind: FaultKind::BookShort, times: 1, delay_ms: 0 });
    deposit(&app.platform, &investors[2], "100.00").await;
    wait_for_chain(&app.platform).await;
    tick();
    let broken = reconciler.run(app.platform.clock.now()).await.unwrap();
    assert_eq!((broken.verdict, broken.breaks), (RunVerdict::Breaks, 2), "{broken:?}");
    let (rows, _) = reconciler.rows(&broken.id, 100, None).await.unwrap();
    let mut expected = vec![(ann.clone(), Pair::LedgerChain, -25_000), (ben.clone(), Pair::LedgerCustody, -1)];
    expected.sort();
    assert_eq!(breaks(&rows), expected, "rows come in account order");
    assert!(rows.iter().all(|r| r.lifecycle == Some(Lifecycle::New)), "{rows:?}");
    let row = rows.iter().find(|r| r.account == ann).unwrap();
    let amount = |side: &Option<String>| side.as_deref().unwrap().parse::<i128>().unwrap();
    assert_eq!(amount(&row.other) - amount(&row.ledger), -25_000, "both sides are shown: {row:?}");

    // Finance reads the runs, the rows and the CSV; starts a run for a cut-off; others may not.
    let (status, runs) = app.get_as("/v1/admin/reconciliation/runs", &finance).await;
    assert_eq!(status, StatusCode::OK, "{runs}");
    assert_eq!(runs["items"][0]["id"], broken.id.as_str(), "the latest cut-off first");
    let (_, run) = app.get_as(&format!("/v1/admin/reconciliation/runs/{}", broken.id), &finance).await;
    assert_eq!((run["verdict"].as_str(), run["breaks"].as_u64()), (Some("breaks"), Some(2)), "{run}");
    let (_, rows) = app.get_as(&format!("/v1/admin/reconciliation/runs/{}/breaks", broken.id), &finance).await;
    assert_eq!(rows["items"].as_array().map(Vec::len), Some(2), "{rows}");
    let csv = app
        .client
        .get(app.url(&format!("/v1/admin/reconciliation/runs/{}/report.csv", broken.id)))
        .bearer_auth(&finance)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.headers()["content-type"], "text/csv; charset=utf-8");
    let text = csv.text().await.unwrap();
    assert!(text.lines().all(|l| l.starts_with('"') && l.ends_with('"')), "every field quoted: {text}");
    let mut reader = ::csv::Reader::from_reader(text.as_bytes());
    assert_eq!(reader.headers().unwrap().iter().take(4).collect::<Vec<_>>(), ["account", "asset", "pair", "class"]);
    let rows: Vec<::csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2, "two rows: {text}");
    let ann_row = rows.iter().find(|r| r[0] == *ann).expect("ann's row");
    assert_eq!((&ann_row[1], &ann_row[2], &ann_row[3]), ("SGD", "ledger_chain", "deposit"), "{text}");
    assert!(rows.iter().all(|r| (&r[7], &r[8]) == ("break", "new")), "{text}");
    let (_, deal_ops) = app.operator("deal-ops@example.sg", &["deal"]).await;
    assert_eq!(app.get_as("/v1/admin/reconciliation/runs", &deal_ops).await.0, StatusCode::FORBIDDEN);
    let future = (app.platform.clock.now() + chrono::TimeDelta::hours(1)).to_rfc3339();
    let (status, problem) =
        app.post_json_as("/v1/admin/reconciliation/runs", &finance, serde_json::json!({"cut_off": future})).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("cut_off")));
    let again = serde_json::json!({"cut_off": broken.cut_off.to_rfc3339()});
    let (status, queued) = app.post_json_as("/v1/admin/reconciliation/runs", &finance, again).await;
    assert_eq!((status, queued["status"].as_str()), (StatusCode::ACCEPTED, Some("queued")), "{queued}");
    // The reconcile function runs it: a new run of the same cut-off that names the previous one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let rerun = loop {
        assert!(std::time::Instant::now() < deadline, "the requested run did not happen");
        let (runs, _) = reconciler.list(10, None).await.unwrap();
        if let Some(rerun) = runs.into_iter().find(|r| r.cut_off == broken.cut_off && r.id != broken.id) {
            break rerun;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!((rerun.previous.as_deref(), rerun.breaks), (Some(broken.id.as_str()), 2), "{rerun:?}");
    assert_eq!(app.get_as("/v1/admin/reconciliation/runs/nope", &finance).await.0, StatusCode::NOT_FOUND);

    // Still there the next run: persisting.
    tick();
    let still = reconciler.run(app.platform.clock.now()).await.unwrap();
    let (rows, _) = reconciler.rows(&still.id, 100, None).await.unwrap();
    assert!(rows.iter().all(|r| r.lifecycle == Some(Lifecycle::Persisting)), "{rows:?}");
    assert_eq!(still.resolved, 0);

    // Finance accepts the chain's cent with a note; a second finance operator approves.
    let accept = serde_json::json!({"pair": "ledger_chain", "account": ann, "asset": "SGD", "note": ""});
    let (status, problem) = app.post_json_as("/v1/admin/reconciliation/breaks/accept", &finance, accept.clone()).await;
    assert_eq!((status, problem["errors"][0]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("note")));
    let mut accept = accept;
    accept["note"] = "test cent recorded by the chain operator; written off".into();
    let (status, request) = app.post_json_as("/v1/admin/reconciliation/breaks/accept", &finance, accept).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{request}");
    let approve = format!("/v1/admin/change-requests/{}/approve", request["id"].as_str().unwrap());
    assert_eq!(app.post_as(&approve, &finance, None).await, StatusCode::FORBIDDEN, "no self-approval");
    let (_, second) = app.operator("fin2@example.sg", &["finance"]).await;
    assert_eq!(app.post_as(&approve, &second, None).await, StatusCode::OK);
    let audit = shared::app::audit::AuditLog::new(app.platform.store.clone(), app.platform.clock.clone());
    let (entries, _) = audit.page(20, None).await.unwrap();
    let target = format!("reconciliation:chain:{ann}:SGD:accept");
    let trail: Vec<(&str, &str)> =
        entries.iter().filter(|e| e.target == target).map(|e| (e.action.as_str(), e.decision.as_str())).collect();
    assert_eq!(
        trail,
        [
            ("change-request.approve.accept-break", "approved"),
            ("change-request.approve.accept-break", "denied"),
            ("change-request.propose.accept-break", "proposed"),
        ],
        "newest first: the proposal, the maker's refused approval, the second operator's"
    );
    tick();
    let accepted = reconciler.run(app.platform.clock.now()).await.unwrap();
    assert_eq!((accepted.verdict, accepted.breaks), (RunVerdict::Breaks, 1), "only the Custody's cent: {accepted:?}");
    let (rows, _) = reconciler.rows(&accepted.id, 100, None).await.unwrap();
    let row = rows.iter().find(|r| r.account == ann).unwrap();
    assert_eq!((row.verdict, row.lifecycle), (RowVerdict::Accepted, Some(Lifecycle::Accepted)), "{row:?}");

    // Put right on each side: the next run reconciles again and resolves both.
    // The lost record is replayed to the chain; the missing cent is booked at the Custody.
    let delivered = app.platform.store.query(&Query::secondary(DELIVERED).limit(1_000)).await.unwrap();
    let lost = delivered
        .items
        .iter()
        .map(|i| i.decode::<Delivered>().unwrap().record)
        .find(|r| r.credit == ann && r.amount == 25_000)
        .unwrap();
    sims.chain.record(&lost).await.unwrap();
    let cent = CustodyTransfer {
        reference: "fix-1".into(),
        debit: "custody:bank:SGD".into(),
        credit: ben.clone(),
        asset: "SGD".into(),
        amount: 1,
    };
    sims.custody.transfer(&cent).await.unwrap();
    tick();
    let fixed = reconciler.run(app.platform.clock.now()).await.unwrap();
    assert_eq!((fixed.verdict, fixed.breaks, fixed.resolved), (RunVerdict::Reconciled, 0, 2), "{fixed:?}");

    // Finance hears of every run: one notice per run, written with it.
    let notices = app.platform.notices();
    for run in [&broken, &fixed] {
        let id = shared::app::notices::id_of(&format!("reconcile:{}", run.id));
        let (noted, _) = notices.get(&id).await.unwrap().expect("a notice of the run");
        match &noted.notice {
            shared::app::notices::Notice::ReconciliationFinished { run_id, verdict, breaks, .. } => {
                assert_eq!((run_id, *verdict, *breaks), (&run.id, run.verdict, run.breaks));
            }
            other => panic!("a run's notice reports the run: {other:?}"),
        }
        let finance = shared::app::notices::Audience::Operators(shared::domain::access::Role::Finance);
        assert_eq!(noted.audience, finance);
    }
}

async fn a_run_while_transfers_flow_equals_a_quiet_run_of_the_same_cut_off(app: TestApp) {
    let deal = app.open_deal("201912345K").await;
    subscribed_investors(&app.platform, &deal, 0..20).await;
    wait_for_chain(&app.platform).await;
    app.clock.advance(chrono::TimeDelta::seconds(1));
    let cut_off = app.platform.clock.now();
    app.clock.advance(chrono::TimeDelta::seconds(1));
    // More investors arrive and subscribe while the run reads.
    let platform = app.platform.clone();
    let deal_id = deal.clone();
    let flowing = tokio::spawn(async move { subscribed_investors(&platform, &deal_id, 20..40).await });
    let reconciler = app.platform.reconciler();
    let busy = reconciler.run(cut_off).await.unwrap();
    flowing.await.unwrap();
    wait_for_chain(&app.platform).await;
    let quiet = reconciler.run(cut_off).await.unwrap();
    assert_eq!(quiet.previous.as_deref(), Some(busy.id.as_str()), "a rerun names the run before it");
    assert_eq!((busy.verdict, &busy.counts), (quiet.verdict, &quiet.counts));
    assert_eq!(quiet.verdict, RunVerdict::Reconciled, "{quiet:?}");
}

/// A deposit the bank notified for `investor`, posted in the ledger.
async fn deposit(platform: &shared::Platform, investor: &str, amount: &str) {
    let deposits = platform.deposit_accounts();
    platform_tests::settle::deposit(&deposits, investor, &format!("dep-late-{investor}"), amount).await;
}

async fn in_flight_items_are_timing_differences_until_their_grace_runs_out(mut app: TestApp) {
    use shared::domain::reconcile::RuleId;

    let deal = app.open_deal("201912345K").await;
    let investors = subscribed_investors(&app.platform, &deal, 0..4).await;
    let (_, finance) = app.operator("fin@example.sg", &["finance"]).await;
    app.close_early(&deal, &finance).await;
    wait_for_state(&app.platform, &deal, "issued", 300).await;
    wait_for_chain(&app.platform).await;
    app.running.stop_workers().await;
    let (sims, mirror) = (app.platform.simulators.clone().unwrap(), app.platform.chain_mirror());
    let asset = app.platform.deals().get(&deal).await.unwrap().unwrap().asset;
    let reconciler = app.platform.reconciler();

    // A deposit the chain records and the Custody does not book yet; units locked in a sell order.
    let seller = &investors[3];
    let locks = app.platform.order_locks();
    let lock = locks.lock("ord-1", seller, &asset, 1).await.unwrap();
    assert_eq!(locks.lock("ord-1", seller, &asset, 1).await.unwrap(), lock, "locking again changes nothing");
    assert!(!mirror.drain(100).await.unwrap().stopped, "the chain records the lock");
    let late = "inv-late";
    deposit(&app.platform, late, "250.00").await;
    sims.custody.inject(Fault { kind: FaultKind::Fail, times: 1, delay_ms: 0 });
    assert!(mirror.drain(100).await.unwrap().stopped, "the Custody refused the booking once");
    assert!(mirror.pending().await.unwrap(), "the deposit waits for the Custody");
    let (deposit_account, holding) = (format!("deposit:{late}:SGD"), format!("holding:{seller}:{asset}"));
    assert_eq!(sims.chain.balance(&deposit_account, "SGD", None).await.unwrap(), 25_000, "the chain has it");

    app.clock.advance(chrono::TimeDelta::seconds(1));
    let pending = reconciler.run(app.platform.clock.now()).await.unwrap();
    assert_eq!(
        (pending.verdict, pending.breaks, pending.timing),
        (RunVerdict::ReconciledWithPending, 0, 2),
        "{pending:?}"
    );
    let (rows, _) = reconciler.rows(&pending.id, 100, None).await.unwrap();
    let timing = |rows: &[StoredRow]| -> Vec<(String, Pair, RowVerdict, Vec<RuleId>)> {
        rows.iter().map(|r| (r.account.clone(), r.pair, r.verdict, r.rules.clone())).collect()
    };
    let mut expected = vec![
        (deposit_account.clone(), Pair::LedgerCustody, RowVerdict::Timing, vec![RuleId::DepositNotYetAtCustody]),
        (holding.clone(), Pair::LedgerCustody, RowVerdict::Timing, vec![RuleId::DabsLockedInOrder]),
    ];
    expected.sort();
    assert_eq!(timing(&rows), expected, "only the Custody pair differs, each explained by its rule");
    assert_eq!(rows[0].difference, if rows[0].account == holding { "1" } else { "-25000" });

    // A day and an hour later neither has cleared: both are breaks naming the expired rule.
    app.clock.advance(chrono::TimeDelta::hours(25));
    let late_run = reconciler.run(app.platform.clock.now()).await.unwrap();
    assert_eq!((late_run.verdict, late_run.breaks, late_run.timing), (RunVerdict::Breaks, 2, 0), "{late_run:?}");
    let (rows, _) = reconciler.rows(&late_run.id, 100, None).await.unwrap();
    let expected: Vec<_> = expected.into_iter().map(|(a, p, _, r)| (a, p, RowVerdict::Break, r)).collect();
    assert_eq!(timing(&rows), expected);

    // The Custody books the deposit, the order returns at market close: all clear again.
    assert!(!mirror.drain(100).await.unwrap().stopped);
    locks.release("ord-1").await.unwrap();
    assert!(!mirror.drain(100).await.unwrap().stopped);
    app.clock.advance(chrono::TimeDelta::seconds(1));
    let cleared = reconciler.run(app.platform.clock.now()).await.unwrap();
    assert_eq!((cleared.verdict, cleared.resolved), (RunVerdict::Reconciled, 2), "{cleared:?}");
    // The earlier cut-off, run again now that everything has landed, finds what was in flight then.
    let again = reconciler.run(pending.cut_off).await.unwrap();
    assert_eq!((again.verdict, &again.counts), (pending.verdict, &pending.counts), "{again:?}");
}

/// The local runner keeps all three books in its data folder: after a restart they still agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_platforms_three_books_still_agree_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let reconciled = |platform: shared::Platform| async move {
        let run = platform.reconciler().run(platform.clock.now()).await.unwrap();
        let matched = run
            .counts
            .iter()
            .find(|c| c.pair == Pair::LedgerCustody && c.verdict == RowVerdict::Matched)
            .map(|c| c.rows);
        (run.verdict, matched)
    };
    {
        let platform = shared::Platform::embedded(dir.path()).unwrap();
        deposit(&platform, "inv-restart", "80.00").await;
        assert!(!platform.chain_mirror().drain(100).await.unwrap().stopped);
        assert_eq!(reconciled(platform).await, (RunVerdict::Reconciled, Some(1)));
    }
    // The store's writer thread lets go of the store's lock once the last handle is dropped.
    let mut tries = 0;
    let reopened = loop {
        match shared::Platform::embedded(dir.path()) {
            Ok(platform) => break platform,
            Err(e) if tries < 100 => {
                tries += 1;
                assert!(format!("{e:?}").contains("open in another process"), "{e:?}");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(reconciled(reopened).await, (RunVerdict::Reconciled, Some(1)), "the Custody's books came back too");
}

/// Works the allocation and settlement queues by hand until `done` says so.
async fn work_queues_until(app: &TestApp, what: &str, done: impl AsyncFn() -> bool) {
    use shared::app::consumer::pump_once;
    use shared::ports::queue::QueueName;
    let handlers = [
        (QueueName::Allocation, allocation::handler(&app.platform)),
        (QueueName::Settlement, settlement::handler(&app.platform)),
    ];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !done().await {
        assert!(std::time::Instant::now() < deadline, "{what} did not happen");
        for (queue, handler) in &handlers {
            pump_once(app.platform.queue.as_ref(), *queue, handler.as_ref(), std::time::Duration::ZERO).await.unwrap();
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Between the Custody's approval of a distribution and the ledger's issuance, the Custody
/// holds units the ledger does not: settlement legs pending, then breaks past their grace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn units_the_custody_approved_are_pending_until_the_ledger_issues_them() {
    use shared::adapters::partners::{Fault, FaultKind};

    use shared::app::settlement::Phase;
    use shared::domain::reconcile::RuleId;

    let mut app = platform_tests::spawn_app().await;
    let deal = app.open_deal("201912345K").await;
    let investors = subscribed_investors(&app.platform, &deal, 0..4).await;
    wait_for_chain(&app.platform).await;
    app.running.stop_workers().await;
    let sims = app.platform.simulators.clone().unwrap();
    // The Custody answers "pending", then approves and calls back a moment later.
    sims.custody.inject(Fault { kind: FaultKind::ApproveLate, times: 1, delay_ms: 50 });
    let (_, finance) = app.operator("fin@example.sg", &["finance"]).await;
    app.close_early(&deal, &finance).await;
    // The sweep would start the allocation; with the workers stopped, the test does.
    shared::app::allocation::request_start(app.platform.queue.as_ref(), &deal).await.unwrap();
    let settlements = app.platform.settlements();
    let phase = async || settlements.state(&deal).await.unwrap().map(|s| s.phase);
    work_queues_until(&app, "the distribution's approval", async || phase().await == Some(Phase::Issuing)).await;
    let mirror = app.platform.chain_mirror();
    assert!(!mirror.drain(10_000).await.unwrap().stopped);
    assert_eq!(settlements.state(&deal).await.unwrap().unwrap().issued, 0, "nothing issued yet");

    let reconciler = app.platform.reconciler();
    app.clock.advance(chrono::TimeDelta::seconds(1));
    let pending = reconciler.run(app.platform.clock.now()).await.unwrap();
    assert_eq!((pending.verdict, pending.breaks), (RunVerdict::ReconciledWithPending, 0), "{pending:?}");
    let (rows, _) = reconciler.rows(&pending.id, 100, None).await.unwrap();
    let holders = rows.len();
    assert!(holders > 0 && holders <= investors.len(), "{rows:?}");
    for row in &rows {
        assert!(row.account.starts_with("holding:"), "{row:?}");
        assert_eq!((row.pair, row.rules.as_slice()), (Pair::LedgerCustody, &[RuleId::SettlementLegPending][..]));
        assert_eq!((row.ledger.as_deref(), row.verdict), (None, RowVerdict::Timing), "{row:?}");
    }

    // Past the leg's fifteen minutes, still not issued: breaks.
    app.clock.advance(chrono::TimeDelta::minutes(16));
    let late = reconciler.run(app.platform.clock.now()).await.unwrap();
    assert_eq!((late.verdict, late.breaks as usize, late.timing), (RunVerdict::Breaks, holders, 0), "{late:?}");

    // Issued: the books agree again and the breaks are resolved.
    let deals = app.platform.deals();
    let issued = async || deals.get(&deal).await.unwrap().unwrap().state.as_str() == "issued";
    work_queues_until(&app, "the issuance", issued).await;
    assert!(!mirror.drain(10_000).await.unwrap().stopped);
    app.clock.advance(chrono::TimeDelta::seconds(1));
    let agreed = reconciler.run(app.platform.clock.now()).await.unwrap();
    assert_eq!((agreed.verdict, agreed.resolved as usize), (RunVerdict::Reconciled, holders), "{agreed:?}");
    // The cut-off inside the window, run again now: the same answer.
    let again = reconciler.run(pending.cut_off).await.unwrap();
    assert_eq!((again.verdict, &again.counts), (pending.verdict, &pending.counts), "{again:?}");
}

/// Two runs of one cut-off never run at once; another cut-off is not held up; once the
/// first is done, running the cut-off again is a new run naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_of_one_cut_off_never_run_at_once() {
    use shared::adapters::partners::{Fault, FaultKind};
    use shared::app::reconcile::ReconcileError;

    let dir = tempfile::tempdir().unwrap();
    let platform =
        shared::Platform::ephemeral(dir.path(), std::sync::Arc::new(shared::adapters::clock::SystemClock)).unwrap();
    platform.deposit_accounts().account_for("u1").await.unwrap();
    // The Custody answers the first run's balance page slowly, so it holds its cut-off a while.
    platform.simulators.as_ref().unwrap().custody.inject(Fault { kind: FaultKind::Delay, times: 1, delay_ms: 500 });
    let cut_off = platform.clock.now();
    let first = {
        let platform = platform.clone();
        tokio::spawn(async move { platform.reconciler().run(cut_off).await })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let reconciler = platform.reconciler();
    assert!(matches!(reconciler.run(cut_off).await, Err(ReconcileError::AlreadyRunning)));
    let other = reconciler.run(cut_off - chrono::TimeDelta::seconds(1)).await.unwrap();
    assert_eq!(other.verdict, RunVerdict::Reconciled);
    let first = first.await.unwrap().unwrap();
    assert!(first.finished_at > other.finished_at, "the first was still running");
    let again = reconciler.run(cut_off).await.unwrap();
    assert_eq!(again.previous.as_deref(), Some(first.id.as_str()));
}
