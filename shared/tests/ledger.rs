//! The ledger on the store, on both adapters: holds, exactly-once retries, and
//! concurrent transfers that conserve money and never overdraw.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::Arc;

use shared::app::ledger::{Ledger, LedgerError};
use shared::domain::ledger::{Account, Limits, Phase, Refusal, Transfer};

struct Fixture {
    /// Without the in-process account locks: the tasks meet only at the store's version
    /// conditions, as separate Lambda instances do (the harder case).
    ledger: Arc<Ledger>,
    /// Transfers per task in the concurrency case (the emulator is slow).
    per_task: usize,
    clock: Arc<shared::adapters::clock::ManualClock>,
}

mod fixtures {
    use super::*;
    use shared::adapters::aws::DynamoStore;
    use shared::adapters::embedded::EmbeddedStore;

    pub async fn embedded() -> Fixture {
        let clock = support::clock();
        Fixture {
            ledger: Arc::new(
                Ledger::new(Arc::new(EmbeddedStore::temporary(clock.clone()).unwrap()), clock.clone())
                    .without_local_locks(),
            ),
            per_task: 1_000,
            clock,
        }
    }

    pub async fn aws() -> Fixture {
        let clock = support::clock();
        let client = aws_sdk_dynamodb::Client::new(&support::aws_config().await);
        let table = support::unique("ledger");
        DynamoStore::create_table(&client, &table).await.unwrap();
        Fixture {
            ledger: Arc::new(
                Ledger::new(Arc::new(DynamoStore::new(client, table, clock.clone())), clock.clone())
                    .without_local_locks(),
            ),
            // 8 tasks on 20 accounts still race for the same accounts' versions with 800
            // transfers; 8,000 took the emulator eleven minutes.
            per_task: 100,
            clock,
        }
    }
}

contract!(
    holds_move_exactly_and_a_retried_id_applies_once,
    concurrent_transfers_conserve_money_and_never_overdraw,
    balances_as_of_a_cut_off_stay_put_while_transfers_flow,
);

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

/// The ledger on the embedded store, against random histories of transfers, holds,
/// posts, voids and retries (ids come from a small pool, so retries are frequent).
mod properties {
    use proptest::prelude::*;
    use shared::adapters::embedded::EmbeddedStore;
    use shared::domain::ledger::Kind;

    use super::*;

    const IDS: [&str; 5] = ["bank", "escrow", "inv0", "inv1", "inv2"];

    fn step() -> impl Strategy<Value = Transfer> {
        (0usize..5, 0usize..5, 0u64..400, 0usize..4, 0usize..30, 0usize..30).prop_map(
            |(d, c, amount, phase, id, held)| {
                let phase = [Phase::Single, Phase::Pending, Phase::Post, Phase::Void][phase];
                let pending = matches!(phase, Phase::Post | Phase::Void).then(|| format!("t{held}"));
                transfer(&format!("t{id}"), IDS[d], IDS[c], amount, phase, pending.as_deref())
            },
        )
    }

    async fn snapshot(l: &Ledger) -> Vec<Account> {
        let mut accounts = Vec::new();
        for id in IDS {
            accounts.push(l.account(id).await.unwrap().unwrap());
        }
        accounts
    }

    proptest! {
        /// Sort keys of times: RFC 3339 with nine fraction digits, so that text order is
        /// time order (from year 0 to 9999, to the nanosecond).
        #[test]
        fn sortable_times_order_as_the_times_do(a in 0i64..253_402_300_799, b in 0i64..253_402_300_799, na in 0u32..1_000_000_000, nb in 0u32..1_000_000_000) {
            use shared::app::ledger::sortable;
            let at = |s, n| chrono::DateTime::from_timestamp(s - 62_167_219_200, n).unwrap();
            let (x, y) = (at(a, na), at(b, nb));
            prop_assert_eq!(sortable(x), x.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string());
            prop_assert_eq!(sortable(x).cmp(&sortable(y)), x.cmp(&y));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn every_step_balances_never_overdraws_and_applies_an_id_once(
            deposits in proptest::collection::vec(1u64..1_000, 3),
            steps in proptest::collection::vec(step(), 1..60),
        ) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                let clock = support::clock();
                let l = Ledger::new(Arc::new(EmbeddedStore::temporary(clock.clone()).unwrap()), clock);
                l.open(Account::open("bank", "SGD", Limits::default())).await.unwrap();
                l.open(Account::open("escrow", "SGD", Limits::default())).await.unwrap();
                for (i, amount) in deposits.iter().enumerate() {
                    let investor = Account { kind: Kind::Deposit, ..Account::open(format!("inv{i}"), "SGD", INVESTOR) };
                    l.open(investor).await.unwrap();
                    l.submit(&transfer(&format!("dep{i}"), "bank", &format!("inv{i}"), *amount, Phase::Single, None)).await.unwrap();
                }
                let mut first: HashMap<String, (Transfer, u64)> = HashMap::new();
                for step in steps {
                    let before = snapshot(&l).await;
                    let result = l.submit(&step).await;
                    let after = snapshot(&l).await;
                    match (&result, first.get(&step.id)) {
                        (Ok(amount), Some((original, applied))) => {
                            prop_assert_eq!(original, &step, "only an identical retry is answered");
                            prop_assert_eq!(amount, applied, "a retry answers the first result");
                            prop_assert_eq!(&before, &after, "a retry moved money");
                        }
                        (Ok(amount), None) => {
                            first.insert(step.id.clone(), (step.clone(), *amount));
                        }
                        (Err(_), _) => prop_assert_eq!(&before, &after, "a refused transfer changed the book"),
                    }
                    prop_assert_eq!(after.iter().map(Account::posted_balance).sum::<i128>(), 0);
                    prop_assert_eq!(after.iter().map(|a| a.debits_pending).sum::<u128>(), after.iter().map(|a| a.credits_pending).sum::<u128>());
                    for investor in after.iter().filter(|a| a.kind == Kind::Deposit) {
                        prop_assert!(investor.available() >= 0, "{} below zero", investor.id);
                    }
                }
                // Each account's statement has one entry per change, and its last running
                // balance is the account's balance.
                for account in snapshot(&l).await {
                    let (entries, _) = l.statement(&account.id, 1000, None).await.unwrap();
                    prop_assert_eq!(entries.len() as u64, account.entries);
                    if let Some(newest) = entries.first() {
                        prop_assert_eq!(newest.balance, account.posted_balance());
                        prop_assert_eq!(newest.available, account.available());
                    }
                }
                Ok(())
            })?;
        }
    }
}

mod features {
    use shared::app::ledger::CHAIN_OUTBOX;
    use shared::domain::ledger::{Kind, codes};
    use shared::ports::Store;
    use shared::ports::store::Query;

    use super::*;

    /// A hold with a timeout cannot be posted once it passed, and the sweep voids it.
    #[tokio::test]
    async fn a_hold_past_its_timeout_cannot_be_posted_and_is_voided_by_the_sweep() {
        let clock = support::clock();
        let l = Ledger::new(
            Arc::new(shared::adapters::embedded::EmbeddedStore::temporary(clock.clone()).unwrap()),
            clock.clone(),
        );
        l.open(Account::open("bank", "SGD", Limits::default())).await.unwrap();
        l.open(Account::open("inv", "SGD", INVESTOR)).await.unwrap();
        l.submit(&transfer("dep", "bank", "inv", 500, Phase::Single, None)).await.unwrap();
        let hold = Transfer::pending("hold", "inv", "bank", 200, "SGD", codes::WITHDRAWAL).with_timeout(60);
        l.submit(&hold).await.unwrap();
        let early = Transfer::pending("early", "inv", "bank", 100, "SGD", codes::WITHDRAWAL).with_timeout(600);
        l.submit(&early).await.unwrap();
        assert_eq!(l.expire_due(10).await.unwrap().tried, 0, "nothing is due yet");
        clock.advance(chrono::TimeDelta::seconds(61));
        let late = l.submit(&Transfer::post("post", &hold, 200)).await.unwrap_err();
        assert!(matches!(late, LedgerError::Refused(Refusal::Expired)), "{late:?}");
        let expired = l.expire_due(10).await.unwrap();
        assert_eq!((expired.tried, expired.failed.len()), (1, 0));
        assert_eq!(l.expire_due(10).await.unwrap().tried, 0, "voided once");
        let inv = l.account("inv").await.unwrap().unwrap();
        assert_eq!((inv.available(), inv.debits_pending), (400, 100), "the expired hold released, the other kept");
        // A timeout belongs to holds only.
        let wrong = transfer("x", "inv", "bank", 1, Phase::Single, None).with_timeout(5);
        assert!(matches!(l.submit(&wrong).await.unwrap_err(), LedgerError::Refused(Refusal::TimeoutNotPending)));
    }

    /// Posted transfers touching an investor's or issuer's account go to the chain outbox
    /// in the same transaction; holds and system-only transfers do not. Totals balance.
    #[tokio::test]
    async fn posted_transfers_on_mirrored_accounts_are_in_the_outbox_and_totals_balance() {
        let clock = support::clock();
        let store = Arc::new(shared::adapters::embedded::EmbeddedStore::temporary(clock.clone()).unwrap());
        let l = Ledger::new(store.clone(), clock);
        for account in [
            Account::of(Kind::Omnibus, "bank", "SGD"),
            Account::of(Kind::Escrow, "deal1", "SGD"),
            Account::of(Kind::Deposit, "u1", "SGD"),
        ] {
            l.open(account).await.unwrap();
        }
        let (bank, escrow, u1) = ("omnibus:bank:SGD", "escrow:deal1:SGD", "deposit:u1:SGD");
        l.submit(&Transfer::single("a", bank, u1, 1_000, "SGD", codes::DEPOSIT)).await.unwrap();
        let hold = Transfer::pending("b", u1, escrow, 400, "SGD", 10);
        l.submit(&hold).await.unwrap();
        l.submit(&Transfer::post("c", &hold, 300)).await.unwrap();
        l.submit(&Transfer::single("d", bank, escrow, 50, "SGD", 11)).await.unwrap();
        let outbox = store.query(&Query::secondary(CHAIN_OUTBOX)).await.unwrap();
        let ids: Vec<String> = outbox
            .items
            .iter()
            .map(|i| i.decode::<serde_json::Value>().unwrap()["transfer_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(ids, ["a", "c"]);
        assert_eq!(l.accounts_of("u1").await.unwrap().len(), 1);
        let totals = l.totals().await.unwrap();
        assert_eq!(totals.len(), 1);
        let sgd = &totals[0];
        assert_eq!((sgd.accounts, sgd.debits_posted, sgd.credits_posted), (3, 1_350, 1_350));
        assert_eq!((sgd.debits_pending, sgd.credits_pending), (0, 0));
    }
}

/// Balances as of a cut-off come from the statements: what was applied after it, even
/// while they are read, does not move them; pages follow account order.
async fn balances_as_of_a_cut_off_stay_put_while_transfers_flow(f: Fixture) {
    use shared::domain::ledger::Kind;
    use shared::ports::Clock;
    let l = &f.ledger;
    l.open(Account::of(Kind::Omnibus, "bank", "SGD")).await.unwrap();
    for who in ["a", "b", "c"] {
        l.open(Account::of(Kind::Deposit, who, "SGD")).await.unwrap();
    }
    let pay = |id: String, to: &str, amount: u64| {
        Transfer::single(id, "omnibus:bank:SGD", &format!("deposit:{to}:SGD"), amount, "SGD", 1)
    };
    l.submit(&pay("t1".into(), "a", 100)).await.unwrap();
    l.submit(&pay("t2".into(), "b", 50)).await.unwrap();
    l.submit(&pay("t3".into(), "a", 5)).await.unwrap();
    f.clock.advance(chrono::TimeDelta::minutes(1));
    let cut_off = f.clock.now();
    f.clock.advance(chrono::TimeDelta::minutes(1));
    l.submit(&pay("t4".into(), "a", 7)).await.unwrap();
    l.submit(&pay("t5".into(), "c", 9)).await.unwrap();

    let before = vec![("deposit:a:SGD".to_owned(), 105), ("deposit:b:SGD".to_owned(), 50)];
    // Transfers keep flowing while the balances are read.
    let flowing = {
        let l = l.clone();
        tokio::spawn(async move {
            for i in 0..30 {
                let to = ["a", "b", "c"][i % 3];
                l.submit(&pay(format!("flow{i}"), to, 1)).await.unwrap();
            }
        })
    };
    assert_eq!(l.balances_as_of("SGD", "deposit:", cut_off, None, 10).await.unwrap(), before, "c had nothing yet");
    flowing.await.unwrap();
    assert_eq!(l.balances_as_of("SGD", "deposit:", cut_off, None, 10).await.unwrap(), before, "the same when quiet");
    assert_eq!(l.balances_as_of("SGD", "deposit:", cut_off, None, 1).await.unwrap(), before[..1]);
    assert_eq!(l.balances_as_of("SGD", "deposit:", cut_off, Some("deposit:a:SGD"), 5).await.unwrap(), before[1..]);
    assert_eq!(l.balances_as_of("SGD", "deposit:", cut_off, Some("deposit:b:SGD"), 5).await.unwrap(), []);
    let now = l.balances_as_of("SGD", "deposit:", f.clock.now(), None, 10).await.unwrap();
    assert_eq!(
        now,
        [("deposit:a:SGD".to_owned(), 122), ("deposit:b:SGD".to_owned(), 60), ("deposit:c:SGD".to_owned(), 19)]
    );
    let omnibus = l.balances_as_of("SGD", "omnibus:", cut_off, None, 10).await.unwrap();
    assert_eq!(omnibus, [("omnibus:bank:SGD".to_owned(), -155)], "another prefix");
}
