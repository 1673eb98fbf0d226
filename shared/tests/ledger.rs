//! The ledger on the store, on both adapters: holds, exactly-once retries, and
//! concurrent transfers that conserve money and never overdraw.

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use shared::app::ledger::{Ledger, LedgerError};
use shared::domain::ledger::{Account, Limits, Phase, Refusal, Transfer};

struct Fixture {
    ledger: Arc<Ledger>,
    /// Transfers per task in the concurrency case (the emulator is slow).
    per_task: usize,
}

mod fixtures {
    use super::*;
    use shared::adapters::aws::DynamoStore;
    use shared::adapters::embedded::EmbeddedStore;

    pub async fn embedded() -> Fixture {
        let clock = support::clock();
        Fixture {
            ledger: Arc::new(Ledger::new(Arc::new(EmbeddedStore::in_memory(clock.clone()).unwrap()), clock)),
            per_task: 1_000,
        }
    }

    pub async fn aws() -> Fixture {
        let clock = support::clock();
        let client = aws_sdk_dynamodb::Client::new(&support::aws_config().await);
        let table = support::unique("ledger");
        DynamoStore::create_table(&client, &table).await.unwrap();
        Fixture {
            ledger: Arc::new(Ledger::new(Arc::new(DynamoStore::new(client, table, clock.clone())), clock)),
            per_task: 15,
        }
    }
}

contract!(holds_move_exactly_and_a_retried_id_applies_once, concurrent_transfers_conserve_money_and_never_overdraw);

const INVESTOR: Limits = Limits { debits_within_credits: true, credits_within_debits: false };

fn transfer(id: &str, debit: &str, credit: &str, amount: u64, phase: Phase, pending: Option<&str>) -> Transfer {
    Transfer {
        id: id.into(),
        debit: debit.into(),
        credit: credit.into(),
        amount,
        asset: "SGD".into(),
        code: 1,
        phase,
        pending_id: pending.map(String::from),
        reference: String::new(),
        timeout: None,
    }
}

async fn holds_move_exactly_and_a_retried_id_applies_once(f: Fixture) {
    let l = &f.ledger;
    l.open(Account::open("bank", "SGD", Limits::default())).await.unwrap();
    l.open(Account::open("escrow", "SGD", Limits::default())).await.unwrap();
    l.open(Account::open("inv", "SGD", INVESTOR)).await.unwrap();
    l.submit(&transfer("dep", "bank", "inv", 100_000, Phase::Single, None)).await.unwrap();
    l.submit(&transfer("hold", "inv", "escrow", 60_000, Phase::Pending, None)).await.unwrap();
    assert_eq!(l.account("inv").await.unwrap().unwrap().available(), 40_000);
    let over = l.submit(&transfer("over", "inv", "bank", 40_001, Phase::Single, None)).await.unwrap_err();
    assert!(matches!(over, LedgerError::Refused(Refusal::ExceedsLimit(_))), "{over:?}");
    assert_eq!(l.submit(&transfer("post", "inv", "escrow", 45_000, Phase::Post, Some("hold"))).await.unwrap(), 45_000);
    // Retried with the same fields: the first answer, nothing moves again.
    assert_eq!(l.submit(&transfer("post", "inv", "escrow", 45_000, Phase::Post, Some("hold"))).await.unwrap(), 45_000);
    let changed = l.submit(&transfer("post", "inv", "escrow", 1, Phase::Post, Some("hold"))).await.unwrap_err();
    assert!(matches!(changed, LedgerError::Refused(Refusal::IdReused("amount"))), "{changed:?}");
    let again = l.submit(&transfer("void", "inv", "escrow", 0, Phase::Void, Some("hold"))).await.unwrap_err();
    assert!(matches!(again, LedgerError::Refused(Refusal::AlreadyResolved("posted"))), "{again:?}");
    let inv = l.account("inv").await.unwrap().unwrap();
    assert_eq!((inv.posted_balance(), inv.available(), inv.debits_pending), (55_000, 55_000, 0));
    assert_eq!(l.account("escrow").await.unwrap().unwrap().posted_balance(), 45_000);
}

async fn concurrent_transfers_conserve_money_and_never_overdraw(f: Fixture) {
    const ACCOUNTS: usize = 20;
    const TASKS: usize = 8;
    let l = &f.ledger;
    l.open(Account::open("bank", "SGD", Limits::default())).await.unwrap();
    for i in 0..ACCOUNTS {
        l.open(Account::open(format!("a{i}"), "SGD", INVESTOR)).await.unwrap();
        l.submit(&transfer(&format!("seed{i}"), "bank", &format!("a{i}"), 1_000, Phase::Single, None)).await.unwrap();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let ledger = f.ledger.clone();
        let per_task = f.per_task;
        tasks.spawn(async move {
            let mut acknowledged = Vec::new();
            let mut seed = task as u64 * 7919 + 1;
            let mut next = || {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                seed >> 33
            };
            for n in 0..per_task {
                let (d, c) = (next() as usize % ACCOUNTS, next() as usize % ACCOUNTS);
                if d == c {
                    continue;
                }
                let t = transfer(
                    &format!("t{task}-{n}"),
                    &format!("a{d}"),
                    &format!("a{c}"),
                    next() % 400 + 1,
                    Phase::Single,
                    None,
                );
                match ledger.submit(&t).await {
                    Ok(amount) => acknowledged.push((t, amount)),
                    Err(LedgerError::Refused(Refusal::ExceedsLimit(_))) => {}
                    Err(other) => panic!("{other:?}"),
                }
            }
            acknowledged
        });
    }
    let mut expected: HashMap<String, i128> = (0..ACCOUNTS).map(|i| (format!("a{i}"), 1_000)).collect();
    let mut count = 0;
    while let Some(done) = tasks.join_next().await {
        for (t, amount) in done.unwrap() {
            *expected.get_mut(&t.debit).unwrap() -= i128::from(amount);
            *expected.get_mut(&t.credit).unwrap() += i128::from(amount);
            // Present exactly once: a retry answers the same and moves nothing.
            assert_eq!(l.submit(&t).await.unwrap(), amount);
            count += 1;
        }
    }
    assert!(count > 0, "some transfers went through");
    let mut total = 0;
    for i in 0..ACCOUNTS {
        let account = l.account(&format!("a{i}")).await.unwrap().unwrap();
        assert!(account.available() >= 0);
        assert_eq!(account.posted_balance(), expected[&format!("a{i}")], "a{i}");
        total += account.posted_balance();
    }
    assert_eq!(total, 1_000 * ACCOUNTS as i128, "money is conserved among the investors");
}

mod linked {
    use super::*;

    /// Linked transfers on the embedded store: all or nothing, and a retry answers the same.
    #[tokio::test]
    async fn linked_transfers_apply_together_or_not_at_all() {
        let f = fixtures::embedded().await;
        let l = &f.ledger;
        for (id, limits) in [("bank", Limits::default()), ("escrow", Limits::default()), ("inv", INVESTOR)] {
            l.open(Account::open(id, "SGD", limits)).await.unwrap();
        }
        l.submit(&transfer("dep", "bank", "inv", 1_000, Phase::Single, None)).await.unwrap();
        // The second leg overdraws: neither applies, and the first id stays unused.
        let batch = [
            transfer("fee", "inv", "escrow", 300, Phase::Single, None),
            transfer("price", "inv", "escrow", 800, Phase::Single, None),
        ];
        let refused = l.submit_linked(&batch).await.unwrap_err();
        assert!(matches!(refused, LedgerError::Refused(Refusal::ExceedsLimit(_))), "{refused:?}");
        assert_eq!(l.account("inv").await.unwrap().unwrap().posted_balance(), 1_000);
        let fits = [
            transfer("fee", "inv", "escrow", 300, Phase::Single, None),
            transfer("price", "inv", "escrow", 700, Phase::Single, None),
        ];
        assert_eq!(l.submit_linked(&fits).await.unwrap(), [300, 700]);
        assert_eq!(l.submit_linked(&fits).await.unwrap(), [300, 700], "a retry moves nothing");
        assert_eq!(l.account("inv").await.unwrap().unwrap().posted_balance(), 0);
        assert_eq!(l.account("escrow").await.unwrap().unwrap().posted_balance(), 1_000);
        // Reusing one id of an applied batch in another batch is refused, in either position.
        let new = transfer("new", "bank", "inv", 5, Phase::Single, None);
        let fee = transfer("fee", "inv", "escrow", 300, Phase::Single, None);
        for mixed in [[fee.clone(), new.clone()], [new.clone(), fee.clone()]] {
            let refused = l.submit_linked(&mixed).await.unwrap_err();
            assert!(matches!(refused, LedgerError::Refused(Refusal::IdReused("batch"))), "{refused:?}");
        }
        assert_eq!(l.account("inv").await.unwrap().unwrap().posted_balance(), 0, "nothing moved");
    }
}
