//! The partner ports' contract, on the simulators in process and on the HTTP adapters
//! talking to the simulators behind the documented HTTP contracts (`docs/partners/`).

mod support;

use std::sync::Arc;

use shared::adapters::clock::UlidIds;
use shared::adapters::partners::{
    BankSimulator, ChainSimulator, Fault, FaultKind, HttpBank, HttpChain, bank_router, chain_router,
};
use shared::ports::bank::Payout;
use shared::ports::chain::{ChainTransfer, Receipt};
use shared::ports::partner::PartnerError;
use shared::ports::{Bank, Chain};

struct Fixture {
    chain: Arc<dyn Chain>,
    bank: Arc<dyn Bank>,
    /// The simulators behind either, for injecting faults.
    chain_sim: Arc<ChainSimulator>,
    bank_sim: Arc<BankSimulator>,
}

fn simulators() -> (Arc<ChainSimulator>, Arc<BankSimulator>) {
    let bank = BankSimulator::new(b"secret".to_vec(), support::clock(), Arc::new(UlidIds::default()));
    (Arc::new(ChainSimulator::in_memory()), Arc::new(bank))
}

async fn simulator() -> Fixture {
    let (chain_sim, bank_sim) = simulators();
    Fixture { chain: chain_sim.clone(), bank: bank_sim.clone(), chain_sim, bank_sim }
}

async fn http() -> Fixture {
    let (chain_sim, bank_sim) = simulators();
    let router = chain_router(chain_sim.clone()).merge(bank_router(bank_sim.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Fixture {
        chain: Arc::new(HttpChain::new(&base, "chain-key")),
        bank: Arc::new(HttpBank::new(&base, "bank-key")),
        chain_sim,
        bank_sim,
    }
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
    assert!(matches!(reused, PartnerError::Refused(_)), "{reused:?}");
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
}
