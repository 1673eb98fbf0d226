//! Helpers for the allocation and settlement tests: investors made in process (thousands
//! of them, without logins), the checks every settled deal must pass, and a driver that
//! works the queues itself, killing workers mid-step.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use shared::Platform;
use shared::app::allocation::RunState;
use shared::app::consumer::BatchHandler;
use shared::app::deposits::DepositAccounts;
use shared::app::ledger::{Ledger, sortable};
use shared::app::subscriptions::SubscriptionStatus;
use shared::domain::allocation::{Request, allocate};
use shared::domain::ledger::{Account, Kind, SGD};
use shared::ports::Chain;
use shared::ports::bank::BankEvent;
use shared::ports::queue::{Message, QueueName};

/// What each in-process investor is funded with: 100,000.00.
pub const FUNDED: u64 = 10_000_000;

/// Units investor `i` asks for: spread over 10 to 1,000 (the deals' bounds).
pub fn units_for(i: usize) -> u64 {
    10 + (i as u64 * 7_919) % 991
}

/// Investors `inv-<i>` for `i` in `range`, each funded with [`FUNDED`] and subscribed to
/// `deal` for [`units_for`] units, ten at a time; answers their ids.
pub async fn subscribed_investors(platform: &Platform, deal: &str, range: std::ops::Range<usize>) -> Vec<String> {
    let deposits = Arc::new(platform.deposit_accounts());
    let subscriptions = Arc::new(platform.subscriptions(deposits.clone()));
    let ids: Vec<usize> = range.collect();
    let mut investors = Vec::with_capacity(ids.len());
    for chunk in ids.chunks(10) {
        let mut tasks = tokio::task::JoinSet::new();
        for &i in chunk {
            let (deposits, subscriptions, deal) = (deposits.clone(), subscriptions.clone(), deal.to_owned());
            tasks.spawn(async move {
                let id = format!("inv-{i:05}");
                deposit(&deposits, &id, &format!("dep-{id}"), "100000.00").await;
                let sub = subscriptions.subscribe(&id, &deal, "k", units_for(i)).await.unwrap();
                assert_eq!(sub.status, SubscriptionStatus::Live, "{sub:?}");
                id
            });
        }
        investors.extend(tasks.join_all().await);
    }
    investors
}

/// A deposit the bank notified, then confirmed, for `investor` (posted in the ledger).
pub async fn deposit(deposits: &DepositAccounts, investor: &str, deposit_id: &str, amount: &str) {
    let virtual_account = deposits.account_for(investor).await.unwrap().virtual_account;
    let received = BankEvent::DepositReceived {
        event_id: format!("in-{deposit_id}"),
        deposit_id: deposit_id.to_owned(),
        virtual_account: virtual_account.clone(),
        amount: amount.to_owned(),
    };
    deposits.receive(&received).await.unwrap();
    let confirmed = BankEvent::DepositConfirmed {
        event_id: format!("ok-{deposit_id}"),
        deposit_id: deposit_id.to_owned(),
        virtual_account,
        amount: amount.to_owned(),
    };
    deposits.receive(&confirmed).await.unwrap();
}

/// Polls until the deal is in `state`; panics after `seconds`.
pub async fn wait_for_state(platform: &Platform, deal: &str, state: &str, seconds: u64) {
    let deals = platform.deals();
    let deadline = std::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let now = deals.get(deal).await.unwrap().unwrap().state;
        if now.as_str() == state {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "deal {deal} still {} after {seconds} s", now.as_str());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until every chain record of the outbox was delivered.
pub async fn wait_for_chain(platform: &Platform) {
    let mirror = platform.chain_mirror();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while mirror.pending().await.unwrap() {
        assert!(std::time::Instant::now() < deadline, "the chain outbox did not drain");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The outcome of a settled deal, to compare runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// Per investor: (deposit balance, units held).
    pub investors: HashMap<String, (i128, u64)>,
    pub checksum: String,
    pub charged: u128,
    pub units: u128,
}

async fn posted(ledger: &Ledger, id: &str) -> (i128, u128) {
    let account = ledger.account(id).await.unwrap().unwrap_or_else(|| Account::open(id, "", Default::default()));
    (account.posted_balance(), account.debits_pending + account.credits_pending)
}

/// Checks what every settled deal must show, and answers its outcome:
/// - each subscription got what the whole-book rule gives it;
/// - per asset the ledger sums to zero and nothing is pending; the escrow is empty;
/// - each investor's deposit account moved by exactly units x price, and holds the units;
/// - the DABS issued equal the units allocated;
/// - the chain and the Custody hold what the ledger does (deposit accounts and holdings).
pub async fn assert_settled(platform: &Platform, deal_id: &str, investors: &[String]) -> Settled {
    let deal = platform.deals().get(deal_id).await.unwrap().unwrap();
    assert_eq!(deal.state.as_str(), "issued");
    let allocations = platform.allocation_records();
    let run = allocations.run(deal_id).await.unwrap().unwrap();
    assert_eq!(run.state, RunState::Complete);
    let ledger = platform.ledger();

    // The rule, from the book.
    let deposits = Arc::new(platform.deposit_accounts());
    let subscriptions = platform.subscriptions(deposits);
    let (mut book, mut cursor) = (Vec::new(), None);
    loop {
        let (page, next) = subscriptions.book(deal_id, 1_000, cursor).await.unwrap();
        book.extend(
            page.into_iter().filter(|s| s.status == SubscriptionStatus::Live).map(|s| {
                (Request { id: s.id.clone(), created: sortable(s.created_at), units: s.units }, s.investor_id)
            }),
        );
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let requests: Vec<Request> = book.iter().map(|(r, _)| r.clone()).collect();
    let expected = allocate(deal.terms.supply, &requests);
    let mut allocated: HashMap<String, u64> = HashMap::new();
    for ((request, investor), units) in book.iter().zip(&expected) {
        let a = allocations.allocation(&request.id).await.unwrap().expect("an allocation");
        assert_eq!(a.units(), *units, "subscription {}", request.id);
        *allocated.entry(investor.clone()).or_default() += units;
    }
    let units: u128 = expected.iter().map(|&u| u128::from(u)).sum();
    assert_eq!(units, run.allocated());
    let requested: u128 = requests.iter().map(|r| u128::from(r.units)).sum();
    assert_eq!(units, requested.min(u128::from(deal.terms.supply)));

    // The ledger.
    for totals in ledger.totals().await.unwrap() {
        assert_eq!(totals.debits_posted, totals.credits_posted, "{totals:?}");
        assert_eq!((totals.debits_pending, totals.credits_pending), (0, 0), "{totals:?}");
    }
    assert_eq!(posted(&ledger, &deal.escrow_account).await, (0, 0), "the escrow is empty");
    let issuance = Account::id_of(Kind::Issuance, deal_id, &deal.asset);
    assert_eq!(posted(&ledger, &issuance).await.0, -(units as i128), "issued = allocated");
    let mut outcome = HashMap::new();
    let mut charged = 0u128;
    let mut held_units = 0u128;
    for investor in investors {
        let got = allocated.get(investor).copied().unwrap_or(0);
        let cost = i128::from(got * deal.terms.unit_price);
        let deposit = Account::id_of(Kind::Deposit, investor, SGD);
        let holding = Account::id_of(Kind::Holding, investor, &deal.asset);
        let (balance, pending) = posted(&ledger, &deposit).await;
        assert_eq!((balance, pending), (FUNDED as i128 - cost, 0), "{investor}: moved by exactly units x price");
        let (held, _) = posted(&ledger, &holding).await;
        assert_eq!(held, i128::from(got), "{investor}'s holding");
        charged += cost as u128;
        held_units += got as u128;
        outcome.insert(investor.clone(), (balance, got));
    }
    assert_eq!(held_units, units);
    let issuer = Account::id_of(Kind::IssuerSettlement, &deal.issuer_id, SGD);
    assert_eq!(posted(&ledger, &issuer).await.0, charged as i128);

    // The chain and the Custody agree.
    wait_for_chain(platform).await;
    let sims = platform.simulators.as_ref().expect("simulated partners");
    for investor in investors {
        for (account, asset) in [
            (Account::id_of(Kind::Deposit, investor, SGD), SGD),
            (Account::id_of(Kind::Holding, investor, &deal.asset), deal.asset.as_str()),
        ] {
            let chain = sims.chain.balance(&account, asset, None).await.unwrap();
            assert_eq!(chain, posted(&ledger, &account).await.0, "chain vs ledger: {account}");
        }
        let deposit = Account::id_of(Kind::Deposit, investor, SGD);
        assert_eq!(sims.custody.balance(&deposit, SGD), posted(&ledger, &deposit).await.0, "Custody: {deposit}");
        let holding = Account::id_of(Kind::Holding, investor, &deal.asset);
        assert_eq!(
            sims.custody.balance(&holding, &deal.asset),
            posted(&ledger, &holding).await.0,
            "Custody: {holding}"
        );
    }
    assert_eq!(sims.chain.balance(&issuer, SGD, None).await.unwrap(), charged as i128);
    assert_eq!(sims.custody.balance(&issuer, SGD), charged as i128, "the Custody booked the proceeds once");
    Settled { investors: outcome, checksum: run.checksum, charged, units }
}

/// DABS of `deal` reached the chain only after the Custody approved its distribution (by
/// the simulators' shared call order); answers how many were recorded.
pub fn assert_issued_after_approval(platform: &Platform, deal: &str) -> usize {
    let sims = platform.simulators.as_ref().expect("simulated partners");
    let reference = format!("{deal}:distribution");
    let approved = sims
        .custody
        .calls()
        .into_iter()
        .find(|c| c.reference == reference && c.call == "decision" && c.outcome == "approved")
        .expect("the Custody approved the distribution")
        .seq;
    let prefix = format!("settle:{deal}:");
    let issued: Vec<u64> = sims
        .chain
        .calls()
        .into_iter()
        .filter(|c| c.transfer_id.starts_with(&prefix) && c.transfer_id.ends_with(":issue"))
        .map(|c| c.seq)
        .collect();
    assert!(!issued.is_empty(), "DABS were recorded on the chain");
    assert!(issued.iter().all(|&seq| seq > approved), "a DABS record came before the approval");
    issued.len()
}

/// A small deterministic random source (xorshift), so a failing run can be replayed.
pub struct Dice(u64);

impl Dice {
    pub fn new(seed: u64) -> Self {
        // splitmix64 spreads a small seed over all the bits xorshift needs.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Self((z ^ (z >> 31)).max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// Works the allocation and settlement queues and the sweep in the test's own loop, as the
/// workers would, except that a message's worker is killed mid-step (its task aborted
/// after a random pause) `kill_percent` percent of the time; a killed message comes back
/// as it would after its visibility timeout. Runs until the deal reaches one of `until`.
pub async fn drive(
    platform: &Platform,
    clock: &shared::adapters::clock::ManualClock,
    deal: &str,
    until: &[&str],
    kill_percent: u64,
    dice: &mut Dice,
) -> usize {
    let handlers: [(QueueName, Arc<dyn BatchHandler>); 2] = [
        (QueueName::Allocation, allocation::handler(platform)),
        (QueueName::Settlement, settlement::handler(platform)),
    ];
    let sweeper = settlement::Sweeper::new(platform);
    let deals = platform.deals();
    let mut kills = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    loop {
        let state = deals.get(deal).await.unwrap().unwrap().state;
        if until.contains(&state.as_str()) {
            return kills;
        }
        assert!(std::time::Instant::now() < deadline, "deal {deal} stuck at {}", state.as_str());
        let mut idle = true;
        for (queue, handler) in &handlers {
            for received in platform.queue.receive(*queue, 10, Duration::ZERO).await.unwrap() {
                idle = false;
                let (handler, message) = (handler.clone(), received.message.clone());
                let work = tokio::spawn(async move { handler.handle(std::slice::from_ref::<Message>(&message)).await });
                let outcome = if dice.below(100) < kill_percent {
                    tokio::time::sleep(Duration::from_micros(dice.below(3_000))).await;
                    work.abort();
                    kills += 1;
                    None
                } else {
                    Some(work.await.unwrap())
                };
                let receipt = [received.receipt];
                match outcome {
                    Some(failed) if failed.is_empty() => platform.queue.complete(*queue, &receipt).await.unwrap(),
                    _ => platform.queue.release(*queue, &receipt).await.unwrap(),
                }
            }
        }
        if sweeper.run_once().await.is_err() {
            idle = false;
        }
        if idle {
            // Nothing in flight: let the sweep's nudges find what stood still.
            clock.advance(chrono::TimeDelta::seconds(11));
        }
    }
}
