//! Settlement under faults: the Custody and the chain fail, time out after committing,
//! answer twice and approve late, and workers are killed mid-step (half of all
//! messages). The deal ends exactly where the fault-free run of the same book ends,
//! nothing is paid or issued twice, and no DABS reach the chain before the Custody's
//! approval.

use platform_tests::settle::{
    Dice, Settled, assert_issued_after_approval, assert_settled, drive, subscribed_investors,
};
use platform_tests::spawn_app;
use shared::adapters::partners::{Fault, FaultKind};

const INVESTORS: usize = 300;

fn fault(kind: FaultKind, times: u32, delay_ms: u64) -> Fault {
    Fault { kind, times, delay_ms }
}

/// One deal of [`INVESTORS`] subscriptions, closed and driven to issuance by the test's own
/// workers; with `seed`, under faults and kills. Answers the outcome and the kills.
async fn settle(seed: Option<u64>) -> (Settled, usize) {
    let mut app = spawn_app().await;
    let deal = app.open_deal("201912345K").await;
    app.running.stop_workers().await;
    let investors = subscribed_investors(&app.platform, &deal, 0..INVESTORS).await;
    let sims = app.platform.simulators.clone().unwrap();
    if seed.is_some() {
        for f in [
            fault(FaultKind::Fail, 2, 0),
            fault(FaultKind::TimeoutAfterCommit, 2, 0),
            fault(FaultKind::Duplicate, 1, 0),
            fault(FaultKind::Delay, 1, 20),
            fault(FaultKind::TimeoutAfterCommit, 1, 0),
            fault(FaultKind::ApproveLate, 1, 50),
        ] {
            sims.custody.inject(f);
        }
        for f in [
            fault(FaultKind::Fail, 5, 0),
            fault(FaultKind::TimeoutAfterCommit, 3, 0),
            fault(FaultKind::Duplicate, 2, 0),
        ] {
            sims.chain.faults.inject(f);
        }
    }
    let (_, finance) = app.operator("fin@example.sg", &["finance"]).await;
    app.close_early(&deal, &finance).await;
    let mut dice = Dice::new(seed.unwrap_or(1));
    let kills =
        drive(&app.platform, &app.clock, &deal, &["issued"], if seed.is_some() { 50 } else { 0 }, &mut dice).await;
    // The chain records that are still queued (the workers are stopped: the test sweeps).
    let (mirror, sweeper) = (app.platform.chain_mirror(), settlement::Sweeper::new(&app.platform));
    while mirror.pending().await.unwrap() {
        let _ = sweeper.run_once().await;
    }
    let settled = assert_settled(&app.platform, &deal, &investors).await;
    assert_issued_after_approval(&app.platform, &deal);

    // Paid once, approved once, each DABS recorded once.
    let calls = sims.custody.calls();
    let booked = calls.iter().filter(|c| c.reference == format!("{deal}:proceeds") && c.outcome == "booked").count();
    let approved = calls.iter().filter(|c| c.call == "decision" && c.outcome == "approved").count();
    assert_eq!((booked, approved), (1, 1), "{calls:?}");
    let mut recorded: Vec<String> =
        sims.chain.calls().into_iter().filter(|c| c.outcome == "recorded").map(|c| c.transfer_id).collect();
    let all = recorded.len();
    recorded.sort();
    recorded.dedup();
    assert_eq!(recorded.len(), all, "a transfer recorded twice on the chain");
    (settled, kills)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_killed_workers_end_where_the_fault_free_run_ends() {
    let (clean, _) = settle(None).await;
    let mut kills = 0;
    for seed in [7, 11, 2026] {
        let (faulty, killed) = settle(Some(seed)).await;
        eprintln!("seed {seed}: {killed} workers killed mid-step");
        assert_eq!(faulty, clean, "seed {seed}");
        kills += killed;
    }
    assert!(kills >= 8, "only {kills} workers were killed over three runs");
}
