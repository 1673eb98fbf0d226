//! The partner ports' contract, on the simulators in process and on the HTTP adapters
//! talking to the simulators behind the documented HTTP contracts (`docs/partners/`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use chrono::TimeDelta;
use shared::adapters::clock::ManualClock;
use shared::adapters::clock::UlidIds;
use shared::adapters::partners::{
    BankSimulator, ChainSimulator, CustodySimulator, Fault, FaultKind, HttpBank, HttpChain, HttpCustody, bank_router,
    chain_router, custody_router,
};
use shared::domain::allocation::Checksum;
use shared::ports::bank::Payout;
use shared::ports::chain::{ChainTransfer, Receipt};
use shared::ports::custody::{CustodyBalance, CustodyTransfer, Decision, Distribution, DistributionEntry};
use shared::ports::partner::PartnerError;
use shared::ports::{Bank, Chain, Clock, Custody};

struct Fixture {
    chain: Arc<dyn Chain>,
    bank: Arc<dyn Bank>,
    custody: Arc<dyn Custody>,
    /// The simulators behind each, for injecting faults.
    chain_sim: Arc<ChainSimulator>,
    bank_sim: Arc<BankSimulator>,
    custody_sim: Arc<CustodySimulator>,
    /// The Custody's clock.
    clock: Arc<ManualClock>,
}

fn simulators() -> Fixture {
    let bank = BankSimulator::new(b"secret".to_vec(), support::clock(), Arc::new(UlidIds::default()));
    let clock = Arc::new(ManualClock::at(support::start_time()));
    let (chain_sim, bank_sim) = (Arc::new(ChainSimulator::in_memory()), Arc::new(bank));
    let custody_sim = Arc::new(CustodySimulator::new(b"secret".to_vec(), clock.clone()));
    Fixture {
        chain: chain_sim.clone(),
        bank: bank_sim.clone(),
        custody: custody_sim.clone(),
        chain_sim,
        bank_sim,
        custody_sim,
        clock,
    }
}

async fn simulator() -> Fixture {
    simulators()
}

async fn http() -> Fixture {
    let sims = simulators();
    let router = chain_router(sims.chain_sim.clone())
        .merge(bank_router(sims.bank_sim.clone()))
        .nest("/custody", custody_router(sims.custody_sim.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Fixture {
        chain: Arc::new(HttpChain::new(&base, key("chain-key"))),
        bank: Arc::new(HttpBank::new(&base, key("bank-key"))),
        custody: Arc::new(HttpCustody::new(format!("{base}/custody"), key("custody-key"))),
        ..sims
    }
}

fn key(api_key: &str) -> Arc<dyn shared::ports::partner_keys::PartnerKeys> {
    use shared::ports::partner_keys::{FixedKeys, PartnerSecret};
    FixedKeys::shared(PartnerSecret { api_key: api_key.to_owned(), ..PartnerSecret::default() })
}

macro_rules! partner_contract {
    ($($case:ident),* $(,)?) => {
        mod simulator {
            $( #[tokio::test] async fn $case() { super::$case(super::simulator().await).await; } )*
        }
        mod over_http {
            $( #[tokio::test] async fn $case() { super::$case(super::http().await).await; } )*
        }
    };
}

partner_contract!(
    the_chain_records_a_transfer_once_and_answers_balances_as_of_a_height,
    a_chain_fault_is_an_error_to_retry_and_the_retry_records_once,
    a_payout_reference_is_taken_once,
    only_a_business_refusal_is_final_and_a_throttled_payout_may_be_retried,
    the_chain_answers_balances_as_of_the_block_at_a_cut_off_paged_by_account,
    the_custody_books_a_reference_once_and_answers_balances_as_of_a_time,
    a_distribution_is_approved_only_when_its_pages_add_up,
    custody_faults_are_errors_to_retry_and_decisions_can_be_rejected_or_late,
);

fn transfer(id: &str, debit: &str, credit: &str, amount: u64) -> ChainTransfer {
    ChainTransfer {
        transfer_id: id.into(),
        debit: debit.into(),
        credit: credit.into(),
        asset: "SGD".into(),
        amount,
        code: 1,
        at: support::start_time(),
    }
}

async fn the_chain_records_a_transfer_once_and_answers_balances_as_of_a_height(f: Fixture) {
    let c = &f.chain;
    assert_eq!(c.height().await.unwrap(), 0);
    assert_eq!(c.record(&transfer("t1", "omnibus:bank:SGD", "deposit:u1:SGD", 500)).await.unwrap().height, 1);
    let second = c.record(&transfer("t2", "deposit:u1:SGD", "escrow:d1:SGD", 200)).await.unwrap();
    assert_eq!(second, Receipt { height: 2, duplicate: false });
    assert_eq!(
        c.record(&transfer("t1", "omnibus:bank:SGD", "deposit:u1:SGD", 500)).await.unwrap(),
        Receipt { height: 1, duplicate: true }
    );
    let reused = c.record(&transfer("t1", "omnibus:bank:SGD", "deposit:u1:SGD", 501)).await.unwrap_err();
    assert!(matches!(reused, PartnerError::Conflict(_)), "{reused:?}");
    assert_eq!(c.balance("deposit:u1:SGD", "SGD", Some(1)).await.unwrap(), 500);
    assert_eq!(c.balance("deposit:u1:SGD", "SGD", None).await.unwrap(), 300);
    assert_eq!(c.balance("omnibus:bank:SGD", "SGD", None).await.unwrap(), -500);
    assert_eq!(c.balance("deposit:u1:SGD", "DABS-D1", None).await.unwrap(), 0, "per asset");
    assert_eq!(c.height().await.unwrap(), 2);
}

async fn a_chain_fault_is_an_error_to_retry_and_the_retry_records_once(f: Fixture) {
    let c = &f.chain;
    f.chain_sim.faults.inject(Fault { kind: FaultKind::Fail, times: 1, delay_ms: 0 });
    let failed = c.record(&transfer("t1", "a", "b", 10)).await.unwrap_err();
    assert!(matches!(failed, PartnerError::Unavailable(_)), "{failed:?}");
    assert_eq!(c.height().await.unwrap(), 0, "nothing recorded");
    f.chain_sim.faults.inject(Fault { kind: FaultKind::TimeoutAfterCommit, times: 1, delay_ms: 0 });
    let lost = c.record(&transfer("t1", "a", "b", 10)).await.unwrap_err();
    assert!(matches!(lost, PartnerError::Timeout | PartnerError::Unavailable(_)), "a retryable error: {lost:?}");
    assert_eq!(c.record(&transfer("t1", "a", "b", 10)).await.unwrap(), Receipt { height: 1, duplicate: true });
    f.chain_sim.faults.inject(Fault { kind: FaultKind::Duplicate, times: 1, delay_ms: 0 });
    c.record(&transfer("t2", "a", "b", 5)).await.unwrap();
    assert_eq!(c.balance("b", "SGD", None).await.unwrap(), 15, "a record delivered twice counts once");
}

async fn a_payout_reference_is_taken_once(f: Fixture) {
    let payout = Payout {
        reference: "wd_1".into(),
        virtual_account: "880100000001".into(),
        amount: "10.00".into(),
        currency: "SGD".into(),
    };
    f.bank_sim.faults.inject(Fault { kind: FaultKind::TimeoutAfterCommit, times: 1, delay_ms: 0 });
    let lost = f.bank.instruct_payout(&payout).await.unwrap_err();
    assert!(matches!(lost, PartnerError::Timeout | PartnerError::Unavailable(_)), "{lost:?}");
    let again = f.bank.instruct_payout(&payout).await.unwrap();
    assert_eq!((again.reference.as_str(), again.status.as_str()), ("wd_1", "accepted"));
    assert_eq!(f.bank.instruct_payout(&payout).await.unwrap(), again);
    assert_eq!(f.bank.find_payout("wd_1").await.unwrap(), Some(again));
    assert_eq!(f.bank.find_payout("wd_2").await.unwrap(), None);
}

async fn only_a_business_refusal_is_final_and_a_throttled_payout_may_be_retried(f: Fixture) {
    let payout = |reference: &str| Payout {
        reference: reference.into(),
        virtual_account: "880100000001".into(),
        amount: "10.00".into(),
        currency: "SGD".into(),
    };
    let fault = |kind| Fault { kind, times: 1, delay_ms: 0 };
    f.bank_sim.faults.inject(fault(FaultKind::Throttle));
    let throttled = f.bank.instruct_payout(&payout("wd_1")).await.unwrap_err();
    assert_eq!(throttled, PartnerError::Throttled);
    assert!(throttled.is_retryable());
    assert_eq!(f.bank.find_payout("wd_1").await.unwrap(), None, "nothing taken");
    f.bank_sim.faults.inject(fault(FaultKind::Conflict));
    let conflict = f.bank.instruct_payout(&payout("wd_1")).await.unwrap_err();
    assert!(matches!(conflict, PartnerError::Conflict(_)) && !conflict.is_retryable(), "{conflict:?}");
    f.bank_sim.faults.inject(fault(FaultKind::Refuse));
    let refused = f.bank.instruct_payout(&payout("wd_2")).await.unwrap_err();
    assert!(matches!(refused, PartnerError::Refused(_)), "{refused:?}");
    assert_eq!(f.bank.find_payout("wd_2").await.unwrap(), None, "a refused payout is not taken");
    assert!(f.bank.instruct_payout(&payout("wd_1")).await.is_ok());
}

fn money(reference: &str, amount: u64) -> CustodyTransfer {
    CustodyTransfer {
        reference: reference.into(),
        debit: "escrow:d1:SGD".into(),
        credit: "issuer:i1:SGD".into(),
        asset: "SGD".into(),
        amount,
    }
}

async fn the_custody_books_a_reference_once_and_answers_balances_as_of_a_time(f: Fixture) {
    let c = &f.custody;
    let before = f.clock.now();
    f.clock.advance(TimeDelta::seconds(10));
    let first = c.transfer(&money("d1:proceeds", 5_000)).await.unwrap();
    assert!(!first.duplicate);
    let again = c.transfer(&money("d1:proceeds", 5_000)).await.unwrap();
    assert_eq!((again.duplicate, again.at), (true, first.at));
    let reused = c.transfer(&money("d1:proceeds", 5_001)).await.unwrap_err();
    assert!(matches!(reused, PartnerError::Conflict(_)), "{reused:?}");
    assert_eq!(c.find_transfer("d1:proceeds").await.unwrap().map(|r| r.at), Some(first.at));
    assert_eq!(c.find_transfer("d2:proceeds").await.unwrap(), None);
    f.clock.advance(TimeDelta::seconds(10));
    c.transfer(&CustodyTransfer { reference: "d2:proceeds".into(), ..money("", 700) }).await.unwrap();
    let now = f.clock.now();
    let line = |account: &str, balance: i128| CustodyBalance { account: account.into(), balance };
    assert_eq!(c.balances("SGD", before, None, 10).await.unwrap(), [], "nothing booked yet");
    assert_eq!(
        c.balances("SGD", first.at, None, 10).await.unwrap(),
        [line("escrow:d1:SGD", -5_000), line("issuer:i1:SGD", 5_000)]
    );
    assert_eq!(c.balances("SGD", now, Some("escrow:d1:SGD"), 10).await.unwrap(), [line("issuer:i1:SGD", 5_700)]);
    assert_eq!(c.balances("SGD", now, None, 1).await.unwrap(), [line("escrow:d1:SGD", -5_700)], "paged");
}

fn entries(units: &[u64]) -> Vec<DistributionEntry> {
    units
        .iter()
        .enumerate()
        .map(|(i, &u)| DistributionEntry {
            subscription_id: format!("sub_{i}"),
            account: format!("holding:inv{i}:DABS-D1"),
            units: u,
        })
        .collect()
}

fn distribution(reference: &str, units: &[u64]) -> Distribution {
    let mut checksum = Checksum::default();
    for e in entries(units) {
        checksum.add(&e.subscription_id, e.units);
    }
    Distribution {
        reference: reference.into(),
        asset: "DABS-D1".into(),
        pages: 2,
        entries: units.len() as u64,
        units: units.iter().sum(),
        checksum: checksum.hex(),
    }
}

async fn a_distribution_is_approved_only_when_its_pages_add_up(f: Fixture) {
    let c = &f.custody;
    let units = [3, 0, 5];
    let all = entries(&units);
    for reference in ["good", "bad"] {
        c.put_entries(reference, 0, &all[..2]).await.unwrap();
        c.put_entries(reference, 1, &all[2..]).await.unwrap();
        c.put_entries(reference, 1, &all[2..]).await.unwrap();
    }
    assert_eq!(c.decision("good").await.unwrap(), None, "not submitted yet");
    let tampered = Distribution { checksum: Checksum::default().hex(), ..distribution("bad", &units) };
    assert!(matches!(c.submit(&tampered).await.unwrap(), Decision::Rejected { .. }));
    assert_eq!(c.submit(&distribution("good", &units)).await.unwrap(), Decision::Approved);
    assert_eq!(c.submit(&distribution("good", &units)).await.unwrap(), Decision::Approved, "asked again");
    assert_eq!(c.decision("good").await.unwrap(), Some(Decision::Approved));
    let late = c.put_entries("good", 2, &all[..1]).await.unwrap_err();
    assert!(matches!(late, PartnerError::Conflict(_)), "{late:?}");
    let held = c.balances("DABS-D1", f.clock.now(), None, 10).await.unwrap();
    let held: Vec<(String, i128)> = held.into_iter().map(|b| (b.account, b.balance)).collect();
    assert_eq!(
        held,
        [
            ("custody:issuance:DABS-D1".to_owned(), -8),
            ("holding:inv0:DABS-D1".into(), 3),
            ("holding:inv2:DABS-D1".into(), 5)
        ]
    );
}

async fn custody_faults_are_errors_to_retry_and_decisions_can_be_rejected_or_late(f: Fixture) {
    let c = &f.custody;
    f.custody_sim.inject(Fault { kind: FaultKind::Fail, times: 1, delay_ms: 0 });
    let failed = c.transfer(&money("r1", 10)).await.unwrap_err();
    assert!(matches!(failed, PartnerError::Unavailable(_)), "{failed:?}");
    assert_eq!(c.find_transfer("r1").await.unwrap(), None, "nothing booked");
    f.custody_sim.inject(Fault { kind: FaultKind::TimeoutAfterCommit, times: 1, delay_ms: 0 });
    let lost = c.transfer(&money("r1", 10)).await.unwrap_err();
    assert!(matches!(lost, PartnerError::Timeout | PartnerError::Unavailable(_)), "{lost:?}");
    assert!(c.find_transfer("r1").await.unwrap().is_some(), "it landed: look it up");
    assert!(c.transfer(&money("r1", 10)).await.unwrap().duplicate);

    let units = [1, 2];
    for reference in ["rejected", "late"] {
        c.put_entries(reference, 0, &entries(&units)[..1]).await.unwrap();
        c.put_entries(reference, 1, &entries(&units)[1..]).await.unwrap();
    }
    f.custody_sim.inject(Fault { kind: FaultKind::Reject, times: 1, delay_ms: 0 });
    assert!(matches!(c.submit(&distribution("rejected", &units)).await.unwrap(), Decision::Rejected { .. }));
    f.custody_sim.inject(Fault { kind: FaultKind::ApproveLate, times: 1, delay_ms: 50 });
    assert_eq!(c.submit(&distribution("late", &units)).await.unwrap(), Decision::Pending);
    assert_eq!(c.decision("late").await.unwrap(), Some(Decision::Pending));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(c.decision("late").await.unwrap(), Some(Decision::Approved));
    let calls = f.custody_sim.calls();
    assert!(calls.windows(2).all(|w| w[0].seq < w[1].seq), "the call log is in order");
}

async fn the_chain_answers_balances_as_of_the_block_at_a_cut_off_paged_by_account(f: Fixture) {
    let c = &f.chain;
    let at = |minutes: i64| support::start_time() + TimeDelta::minutes(minutes);
    let record = |id: &str, credit: &str, amount: u64, minutes: i64| ChainTransfer {
        at: at(minutes),
        ..transfer(id, "omnibus:bank:SGD", credit, amount)
    };
    c.record(&record("t1", "deposit:b:SGD", 50, 1)).await.unwrap();
    c.record(&record("t2", "deposit:a:SGD", 100, 2)).await.unwrap();
    c.record(&ChainTransfer { asset: "DABS-D1".into(), ..record("t3", "holding:a:DABS-D1", 4, 3) }).await.unwrap();
    c.record(&record("t4", "deposit:a:SGD", 7, 5)).await.unwrap();
    assert_eq!(c.height_at(at(0)).await.unwrap(), 0);
    assert_eq!(c.height_at(at(4)).await.unwrap(), 3, "the block at the cut-off");
    assert_eq!(c.height_at(at(9)).await.unwrap(), 4);
    let sgd = |list: &[(&str, i128)]| list.iter().map(|(a, b)| ((*a).to_owned(), *b)).collect::<Vec<_>>();
    assert_eq!(
        c.balances("SGD", 3, None, 10).await.unwrap(),
        sgd(&[("deposit:a:SGD", 100), ("deposit:b:SGD", 50), ("omnibus:bank:SGD", -150)]),
        "sorted by account, as of the height, one asset"
    );
    assert_eq!(c.balances("SGD", 4, Some("deposit:a:SGD"), 1).await.unwrap(), sgd(&[("deposit:b:SGD", 50)]));
    assert_eq!(c.balances("SGD", 4, None, 1).await.unwrap(), sgd(&[("deposit:a:SGD", 107)]));
    assert_eq!(c.balances("SGD", 1, None, 10).await.unwrap(), sgd(&[("deposit:b:SGD", 50), ("omnibus:bank:SGD", -50)]));
    assert_eq!(
        c.balances("DABS-D1", 4, None, 10).await.unwrap(),
        sgd(&[("holding:a:DABS-D1", 4), ("omnibus:bank:SGD", -4)])
    );
}
