//! The secondary market over random order streams on the embedded platform: places,
//! cancels, partial fills and closes, the matcher taking what is queued at random points
//! (so several commands share its steps). After every step the
//! book is not crossed, every trade is at the resting order's price within the incoming
//! order's limit, units and cash are conserved across investors, locks, holds and fees,
//! what is locked and held is exactly what the open orders say, and after a close no
//! lock or hold remains.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use proptest::prelude::*;
use shared::Platform;
use shared::adapters::clock::ManualClock;
use shared::app::consumer::{BatchHandler, pump_once};
use shared::app::ledger::Ledger;
use shared::app::trading::matching::{Matcher, MatchingHandler};
use shared::app::trading::{Market, OrderState, Placement, Trade, TradingError};
use shared::domain::ledger::{Account, Kind, SGD, Transfer, codes};
use shared::domain::market::{Rules, Side, trading_day};
use shared::ports::Store;
use shared::ports::queue::QueueName;
use shared::ports::store::{Condition, Item, Key, Page, Query, StoreError, Write};

const ASSET: &str = "DABS-prop";
const INVESTORS: usize = 4;
const UNITS_EACH: u64 = 200;
const CASH_EACH: u64 = 5_000_000;
/// 10.00 a unit.
const REFERENCE: u64 = 1_000;

#[derive(Debug, Clone)]
enum Op {
    Place {
        investor: usize,
        buy: bool,
        ticks: i64,
        quantity: u64,
    },
    Cancel {
        pick: usize,
    },
    /// The matcher takes what is queued (several commands share its steps).
    Match,
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0..INVESTORS, any::<bool>(), -8i64..=8, 1u64..=60)
            .prop_map(|(investor, buy, ticks, quantity)| Op::Place { investor, buy, ticks, quantity }),
        2 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
        3 => Just(Op::Match),
        1 => Just(Op::Close),
    ]
}

struct World {
    platform: Platform,
    clock: Arc<ManualClock>,
    handler: MatchingHandler,
    investors: Vec<String>,
    orders: Vec<(String, String)>,
    rules: Rules,
    _dir: tempfile::TempDir,
}

/// 11:00 Singapore time on Wednesday 2026-11-25.
fn morning() -> DateTime<Utc> {
    "2026-11-25T03:00:00Z".parse().unwrap()
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::at(morning()));
    let platform = Platform::ephemeral(dir.path(), clock.clone()).unwrap();
    let ledger = platform.ledger();
    let (bank, issuance) = (Account::of(Kind::Omnibus, "bank", SGD), Account::of(Kind::Issuance, ASSET, ASSET));
    ledger.open(bank.clone()).await.unwrap();
    ledger.open(issuance.clone()).await.unwrap();
    let mut investors = Vec::new();
    for n in 0..INVESTORS {
        let user = format!("usr_{n}");
        let (deposit, holding) = (Account::of(Kind::Deposit, &user, SGD), Account::of(Kind::Holding, &user, ASSET));
        ledger.open(deposit.clone()).await.unwrap();
        ledger.open(holding.clone()).await.unwrap();
        let fund = Transfer::single(format!("fund:{n}"), &bank.id, &deposit.id, CASH_EACH, SGD, codes::DEPOSIT);
        let issue =
            Transfer::single(format!("issue:{n}"), &issuance.id, &holding.id, UNITS_EACH, ASSET, codes::ISSUANCE);
        ledger.submit_linked(&[fund, issue]).await.unwrap();
        investors.push(user);
    }
    let rules = Rules { tick_cents: 5, lot_units: 1, band_bps: 1_000, fee_bps: 25, ..Rules::default() };
    let market = Market::opened(ASSET, "prop", "Property Test Tower", rules.clone(), REFERENCE, morning());
    platform.store.put(market.item().unwrap(), Condition::NotExists).await.unwrap();
    let handler = MatchingHandler { matcher: Arc::new(platform.matcher()), queue: platform.queue.clone() };
    World { platform, clock, handler, investors, orders: Vec::new(), rules, _dir: dir }
}

impl World {
    /// Runs the matcher until its queue is empty.
    async fn settle(&self) {
        while pump_once(self.platform.queue.as_ref(), QueueName::Matching, &self.handler, Duration::ZERO).await.unwrap()
            > 0
        {}
        assert!(self.platform.queue.dead_letters(QueueName::Matching, 1).await.unwrap().is_empty(), "dead-lettered");
    }

    async fn posted(&self, account: &str) -> i128 {
        self.platform.ledger().account(account).await.unwrap().map_or(0, |a| a.posted_balance())
    }

    async fn step(&mut self, n: usize, op: &Op) {
        let trading = self.platform.trading();
        match op {
            Op::Place { investor, buy, ticks, quantity } => {
                let price = u64::try_from(REFERENCE as i64 + ticks * 5).unwrap();
                let side = if *buy { Side::Buy } else { Side::Sell };
                let owner = &self.investors[*investor];
                match trading
                    .place(owner, ASSET, &format!("k{n}"), &Placement { side, price, quantity: *quantity })
                    .await
                {
                    Ok(order) => self.orders.push((owner.clone(), order.id)),
                    // Off the band after the reference moved, or not covered: nothing locked.
                    Err(TradingError::Refused(_) | TradingError::Uncovered { .. }) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            Op::Cancel { pick } if !self.orders.is_empty() => {
                let (owner, id) = &self.orders[pick % self.orders.len()];
                match trading.cancel(owner, id).await {
                    Ok(_) | Err(TradingError::NotOpen(_)) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            Op::Cancel { .. } => {}
            Op::Match => {
                self.settle().await;
                self.check_booked().await;
            }
            Op::Close => {
                let today = trading_day(self.platform.clock.now());
                self.clock.set(self.rules.close_of(today) + TimeDelta::seconds(1));
                assert_eq!(trading.close_due().await.unwrap(), [ASSET]);
                self.settle().await;
                self.check_closed().await;
                // The next business day, 11:00 (a Friday's close skips the weekend).
                let mut next = self.platform.clock.now() + TimeDelta::hours(18);
                while self.rules.session_at(next).is_none() {
                    next += TimeDelta::days(1);
                }
                self.clock.set(next);
            }
        }
    }

    async fn check(&self) {
        let trading = self.platform.trading();
        let (market, _) = trading.market(ASSET).await.unwrap();
        if let (Some(bid), Some(ask)) = (market.bids.first(), market.asks.first()) {
            assert!(bid.price < ask.price, "crossed: {bid:?} {ask:?}");
        }
        let (mut units, mut cash) = (0i128, 0i128);
        let mut orders: HashMap<String, shared::app::trading::Order> = HashMap::new();
        for user in &self.investors {
            for o in trading.orders_of(user, 1_000, None).await.unwrap().0 {
                orders.insert(o.id.clone(), o);
            }
        }
        for user in &self.investors {
            let ledger = self.platform.ledger();
            let deposit = ledger.account(&Account::id_of(Kind::Deposit, user, SGD)).await.unwrap().unwrap();
            assert!(deposit.available() >= 0, "{deposit:?}");
            let lock = self.posted(&Account::id_of(Kind::OrderLock, user, ASSET)).await;
            let holding = self.posted(&Account::id_of(Kind::Holding, user, ASSET)).await;
            assert!(holding >= 0 && lock >= 0);
            assert_eq!(
                self.posted(&Account::id_of(Kind::OrderLock, user, SGD)).await,
                0,
                "a buyer's lock empties in its step"
            );
            units += holding + lock;
            cash += deposit.posted_balance();
            let open = orders.values().filter(|o| &o.owner == user && o.state == OrderState::Open);
            let (locked, held): (u64, u64) = open.fold((0, 0), |(l, h), o| match o.side {
                Side::Sell => (l + o.remaining(), h),
                Side::Buy => (l, h + o.held.map_or(0, |x| x.amount)),
            });
            assert_eq!(i128::from(locked), lock, "{user}: locked units are the open sells' remainders");
            assert_eq!(u128::from(held), deposit.debits_pending, "{user}: held cash is the open buys' holds");
        }
        let fees = self.posted(&format!("fees:{ASSET}:SGD")).await;
        assert_eq!(units, (INVESTORS as u64 * UNITS_EACH) as i128, "units are conserved");
        assert_eq!(cash + fees, (INVESTORS as u64 * CASH_EACH) as i128, "cash is conserved, fees included");
        // Every trade: at the resting order's price, within the incoming order's limit.
        let mut trades: HashMap<String, Trade> = HashMap::new();
        for user in &self.investors {
            for t in trading.trades_of(user, 1_000, None).await.unwrap().0 {
                trades.insert(t.id.clone(), t);
            }
        }
        let mut fee_total = 0;
        for t in trades.values() {
            let (buy, sell) = (&orders[&t.buy_order], &orders[&t.sell_order]);
            let (maker, taker) = if t.maker_side == Side::Buy { (buy, sell) } else { (sell, buy) };
            assert_eq!(t.price, maker.price, "{t:?}");
            assert!(maker.seq < taker.seq.or(Some(u64::MAX)), "the maker rested first: {t:?}");
            assert!(t.price <= buy.price && t.price >= sell.price, "{t:?}");
            assert_ne!(t.buyer, t.seller, "no self-trade");
            fee_total += t.buyer_fee + t.seller_fee;
        }
        assert_eq!(i128::from(fee_total), fees, "the fee account holds every trade's fees");
    }

    /// Once the matcher has taken every command, every open order rests in the book with
    /// its place, and the book the market shows holds exactly their remainders.
    async fn check_booked(&self) {
        let (market, _) = self.platform.trading().market(ASSET).await.unwrap();
        let (mut bids, mut asks) = (0, 0);
        for user in &self.investors {
            for o in self.platform.trading().orders_of(user, 1_000, None).await.unwrap().0 {
                if o.state == OrderState::Open {
                    assert!(o.seq.is_some(), "open and not booked: {o:?}");
                    match o.side {
                        Side::Buy => bids += o.remaining(),
                        Side::Sell => asks += o.remaining(),
                    }
                }
            }
        }
        // The market shows ten levels a side: compare when the book is that small.
        if market.bids.len() < 10 && market.asks.len() < 10 {
            let shown = |levels: &[shared::domain::market::Level]| levels.iter().map(|l| l.quantity).sum::<u64>();
            assert_eq!((shown(&market.bids), shown(&market.asks)), (bids, asks), "the depth shown is the book");
        }
    }

    async fn check_closed(&self) {
        assert!(
            self.platform.order_locks().open_at(self.platform.clock.now()).await.unwrap().is_empty(),
            "a lock is open"
        );
        for user in &self.investors {
            let deposit =
                self.platform.ledger().account(&Account::id_of(Kind::Deposit, user, SGD)).await.unwrap().unwrap();
            assert_eq!(deposit.debits_pending, 0, "{user}: a hold remains after the close");
            assert_eq!(self.posted(&Account::id_of(Kind::OrderLock, user, ASSET)).await, 0);
            for o in self.platform.trading().orders_of(user, 1_000, None).await.unwrap().0 {
                assert_ne!(o.state, OrderState::Open, "{o:?}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_order_streams_conserve_units_and_cash_and_leave_nothing_locked_after_the_close(
        ops in prop::collection::vec(op(), 1..40)
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let mut world = world().await;
            for (n, op) in ops.iter().enumerate() {
                world.step(n, op).await;
                world.check().await;
            }
            world.step(ops.len(), &Op::Match).await;
            world.check().await;
            world.step(ops.len() + 1, &Op::Close).await;
            world.check().await;
        });
    }
}

/// A step too large for one transaction is split: one buy sweeping many small offers.
/// On the embedded store (4,000 operations a transaction, about 20 a fill of this buy)
/// 400 fills are several steps, each written while the next is worked out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buy_that_sweeps_many_offers_settles_in_several_steps_and_conserves_everything() {
    sweep(true, 400).await;
}

/// The same for a sell (about 35 operations a fill: each buy offer's hold is posted), whose
/// order and lock are read across the steps: 190 of the seller's 200 units.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sell_that_sweeps_many_offers_settles_in_several_steps_and_conserves_everything() {
    sweep(false, 190).await;
}

/// `offers` offers of one unit from investors 0 to 2, then one order of investor 3 on the
/// other side that takes them all, matched on a store whose writes land late.
async fn sweep(buy: bool, offers: usize) {
    let mut world = world().await;
    let side = |ticks: i64| if buy { ticks } else { -ticks };
    for n in 0..offers {
        world.step(n, &Op::Place { investor: n % 3, buy: !buy, ticks: side((n % 5) as i64), quantity: 1 }).await;
        world.step(n, &Op::Match).await;
    }
    let market_version = async |world: &World| {
        world.platform.store.get(&shared::app::trading::market_key(ASSET)).await.unwrap().unwrap().version
    };
    let before = market_version(&world).await;
    // The matcher's writes take a while to land, as over a network: the next step is
    // worked out before the one before it has landed, and reads its orders and locks from
    // that step.
    let slow: Arc<dyn Store> = Arc::new(SlowWrites(world.platform.store.clone()));
    let clock = world.platform.clock.clone();
    let matcher = Matcher::new(slow.clone(), clock.clone(), Ledger::new(slow, clock));
    world.handler = MatchingHandler { matcher: Arc::new(matcher), queue: world.platform.queue.clone() };
    world.step(offers, &Op::Place { investor: 3, buy, ticks: side(8), quantity: offers as u64 }).await;
    // The sweep's one command, matched at the first attempt: no step fails for reading
    // what the step before it wrote from the store before it landed.
    let queue = world.platform.queue.clone();
    let batch = queue.receive(QueueName::Matching, 10, Duration::ZERO).await.unwrap();
    assert_eq!(batch.len(), 1);
    let messages: Vec<_> = batch.iter().map(|r| r.message.clone()).collect();
    assert_eq!(world.handler.handle(&messages).await, Vec::<String>::new(), "the run failed");
    queue.complete(QueueName::Matching, &[batch[0].receipt.clone()]).await.unwrap();
    world.step(offers + 1, &Op::Match).await;
    let steps = market_version(&world).await - before;
    assert!(steps >= 2, "the sweep was written in {steps} step(s)");
    world.check().await;
    let (id, taker) = {
        let (_, id) = world.orders.last().unwrap();
        (id.clone(), world.platform.trading().get(id).await.unwrap().unwrap())
    };
    assert_eq!((taker.state, taker.filled), (OrderState::Filled, offers as u64), "{id}");
    let mut trades = 0;
    let mut cursor = None;
    loop {
        let (page, next) = world.platform.trading().trades_of("usr_3", 100, cursor).await.unwrap();
        trades += page.len();
        match next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(trades, offers);
    world.step(offers + 2, &Op::Close).await;
    world.check().await;
}

/// A store whose transactions land 20 ms after they are asked for.
struct SlowWrites(Arc<dyn Store>);

#[async_trait::async_trait]
impl Store for SlowWrites {
    fn max_transaction_ops(&self) -> usize {
        self.0.max_transaction_ops()
    }

    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        self.0.get(key).await
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.0.transact(writes).await
    }

    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        self.0.query(query).await
    }
}

/// A book command lost after the order was recorded: the retry with the same key sends it
/// again, and the order reaches the book once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_with_the_same_key_sends_a_lost_book_command_again() {
    let world = world().await;
    let trading = world.platform.trading();
    let placement = Placement { side: Side::Sell, price: REFERENCE, quantity: 5 };
    let order = trading.place("usr_0", ASSET, "k", &placement).await.unwrap();
    // The command is lost: taken off the queue and never handled.
    let queue = world.platform.queue.clone();
    let lost = queue.receive(QueueName::Matching, 10, Duration::ZERO).await.unwrap();
    assert_eq!(lost.len(), 1);
    queue.complete(QueueName::Matching, &lost.iter().map(|r| r.receipt.clone()).collect::<Vec<_>>()).await.unwrap();
    world.settle().await;
    assert_eq!(trading.get(&order.id).await.unwrap().unwrap().seq, None, "not booked");

    let again = trading.place("usr_0", ASSET, "k", &placement).await.unwrap();
    assert_eq!(again.id, order.id, "the same order");
    world.settle().await;
    assert!(trading.get(&order.id).await.unwrap().unwrap().seq.is_some(), "booked");
    trading.place("usr_0", ASSET, "k", &placement).await.unwrap();
    world.settle().await;
    let (market, _) = trading.market(ASSET).await.unwrap();
    assert_eq!((market.asks.len(), market.asks[0].quantity), (1, 5), "booked once");
    world.check().await;
}

/// Two matchers of one asset at once (a command back while another instance still runs):
/// each commit is conditioned on the market's version, so the one behind reads the book
/// again; nothing fills twice, and locks, holds and the book stay exactly the orders'.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_matchers_of_one_asset_never_fill_an_order_twice() {
    let mut world = world().await;
    for n in 0..80 {
        let (buy, ticks) = (n % 2 == 0, (n % 9) as i64 - 4);
        world.step(n, &Op::Place { investor: n % INVESTORS, buy, ticks, quantity: 5 + (n % 7) as u64 }).await;
        if n % 10 == 9 {
            world.step(n, &Op::Cancel { pick: n * 7 }).await;
        }
    }
    let second = MatchingHandler { matcher: Arc::new(world.platform.matcher()), queue: world.platform.queue.clone() };
    let queue = world.platform.queue.clone();
    let pump = |handler: MatchingHandler| {
        let queue = queue.clone();
        tokio::spawn(async move {
            while pump_once(queue.as_ref(), QueueName::Matching, &handler, Duration::from_millis(50)).await.unwrap() > 0
            {
            }
        })
    };
    let first = MatchingHandler { matcher: Arc::new(world.platform.matcher()), queue: world.platform.queue.clone() };
    let (a, b) = (pump(first), pump(second));
    a.await.unwrap();
    b.await.unwrap();
    world.settle().await;
    assert!(world.platform.trading().market(ASSET).await.unwrap().0.stats.is_some(), "orders traded");
    world.check().await;
    world.check_booked().await;
    world.step(100, &Op::Close).await;
    world.check().await;
}

/// A market halted while orders are on their way to the book: they are cancelled there
/// and what they locked returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_on_their_way_to_a_halted_book_are_cancelled_and_their_locks_return() {
    let mut world = world().await;
    world.step(0, &Op::Place { investor: 0, buy: false, ticks: 0, quantity: 10 }).await;
    world.step(1, &Op::Place { investor: 1, buy: true, ticks: 0, quantity: 10 }).await;
    let trading = world.platform.trading();
    let (mut market, _) = trading.market(ASSET).await.unwrap();
    market.halted = true;
    world.platform.store.put(market.item().unwrap(), Condition::Exists).await.unwrap();
    world.step(2, &Op::Match).await;
    for (_, id) in &world.orders {
        let order = trading.get(id).await.unwrap().unwrap();
        assert_eq!(order.state, OrderState::Cancelled, "{order:?}");
        assert!(order.reason.as_deref().unwrap().contains("halted"), "{order:?}");
    }
    assert!(trading.trades_of("usr_1", 10, None).await.unwrap().0.is_empty(), "nothing traded");
    world.check().await;
}
