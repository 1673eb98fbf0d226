//! The matcher: one asset's commands in sequence, against the book kept in memory.
//!
//! Every commit writes the market's item conditioned on the version the matcher last
//! wrote, so two matchers of one asset (a Lambda still running when its message came back,
//! a second runner) cannot both commit: the loser drops its book, reads the store again and
//! runs its commands again. Running a command again is harmless: a booked order has its
//! `seq`, a cancelled one its state, a closed day its `closed_day`.
//!
//! The matcher keeps the resting orders and their locks as it last committed them, so a
//! fill reads neither from the store: only the matcher writes an order or a lock once it
//! is placed, and its commits hold the market's version, so nothing else changes them.
//!
//! A step is handed to the store and the matcher works out the next one while it is
//! written ([`InFlight`]); the next is handed over only once the one before has landed, so
//! each step's condition is the version the one before wrote. Until it lands, the orders
//! and locks a step writes are read from the step, not from the store. A step that fails
//! fails the run: the book is read again and the run starts over, as when a commit is lost.
//!
//! The commands of a batch share their commits, each as large as one transaction of the
//! store in use ([`Store::max_transaction_ops`]): orders booked without trading are written
//! together; each group of fills is one linked ledger batch (at most
//! [`Ledger::max_linked`] transfers) with its orders, locks, trades and notices. An order
//! is written booked (with its `seq`) only in the last step of its command, so a reader
//! of the store never sees it resting while it could still trade.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::{Command, Held, Market, Order, OrderState, Trade, TradingError, fee_account, open_partition, order_key};
use crate::app::consumer::{BatchHandler, after_failure};
use crate::app::failure::Failure;
use crate::app::ledger::{Ledger, LedgerError, MAX_LINKED, OPS_PER_TRANSFER};
use crate::app::notices::{self, Audience, Notice};
use crate::app::orders::{LockFill, OrderLock, lock_key};
use crate::domain::ledger::{Account, Kind, SGD, Transfer, codes};
use crate::domain::market::{Book, DayStats, Incoming, Resting, Side};
use crate::ports::queue::Message;
use crate::ports::store::{self, Condition, Query, StoreError, Write};
use crate::ports::{Clock, Queue, Store};

/// Times a run starts over after losing the market's version to another writer.
const ATTEMPTS: u32 = 20;
/// The most one fill adds to a step: transfers (the units and the proceeds; a buy order's
/// post, fee and next hold) and other writes (two orders, a lock, the trade's two copies
/// and two notices).
const FILL_ROOM: Room = Room { transfers: 5, writes: 7 };
/// The most ending one order adds: its release, the order and its lock.
const END_ROOM: Room = Room { transfers: 1, writes: 2 };
/// An order arriving at the book: its own write.
const ORDER_ROOM: Room = Room { transfers: 0, writes: 1 };

/// What a step must still have room for.
#[derive(Clone, Copy)]
struct Room {
    transfers: usize,
    writes: usize,
}

impl Room {
    const NONE: Self = Self { transfers: 0, writes: 0 };
}

/// A book and the market item as this matcher last handed them to the store, with the
/// resting orders and the locks of the resting sell orders as its last step to land left
/// them (a step in flight holds newer ones: see [`InFlight`]).
struct Cached {
    market: Market,
    /// The market item's version once every step handed to the store has landed.
    version: u64,
    book: Book,
    orders: HashMap<String, Order>,
    locks: HashMap<String, OrderLock>,
    in_flight: Option<InFlight>,
}

impl Cached {
    /// Takes in what a step that landed wrote: orders still resting (and their locks) are
    /// kept, the ones that ended are dropped.
    fn committed(&mut self, orders: HashMap<String, Order>, locks: HashMap<String, OrderLock>) {
        for (id, order) in orders {
            if order.state == OrderState::Open && order.seq.is_some() {
                self.orders.insert(id, order);
            } else {
                self.orders.remove(&id);
            }
        }
        for (id, lock) in locks {
            if lock.released_at.is_none() {
                self.locks.insert(id, lock);
            } else {
                self.locks.remove(&id);
            }
        }
    }
}

/// A step handed to the store and not answered yet, with the orders and locks it writes:
/// until it lands they are read from here, before the book's and the store's, and once it
/// lands they move to the book's. The matcher works out the next step meanwhile, and hands
/// it over only once this one has landed, so each step is written against the market's
/// version the one before it wrote, as without the overlap. If a step fails, the book was
/// taken past it: the run drops the book and starts over.
struct InFlight {
    task: tokio::task::JoinHandle<Result<(), Stop>>,
    orders: HashMap<String, Order>,
    locks: HashMap<String, OrderLock>,
}

/// Why a run stopped.
enum Stop {
    /// Another writer committed first: read the store again and run again.
    Lost,
    Failed(TradingError),
}

impl From<TradingError> for Stop {
    fn from(e: TradingError) -> Self {
        Self::Failed(e)
    }
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Self::Failed(e.into())
    }
}

/// The fills of one step and what they move.
#[derive(Default, Clone)]
struct Step {
    trades: Vec<Trade>,
    /// Per buy order: what its hold pays out in this step (notional and its fee), and the
    /// fees of both sides that go to the fee account.
    paid: BTreeMap<String, (u64, u64)>,
    /// Orders whose rest returns now (cancelled or expired): their release.
    released: Vec<Transfer>,
}

/// A run's working state: the orders and locks it changed, and the fills and releases,
/// not committed yet. Commands of a run share steps: a commit takes what fits.
#[derive(Default, Clone)]
struct Run {
    orders: HashMap<String, Order>,
    locks: HashMap<String, OrderLock>,
    step: Step,
}

impl Run {
    fn is_empty(&self) -> bool {
        self.orders.is_empty() && self.locks.is_empty() && self.step.is_empty()
    }
}

impl Step {
    fn is_empty(&self) -> bool {
        self.trades.is_empty() && self.released.is_empty()
    }
}

pub struct Matcher {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Cloned into each step's write (two `Arc`s).
    ledger: Ledger,
    books: tokio::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Cached>>>>>,
}

impl Matcher {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, ledger: Ledger) -> Self {
        Self { store, clock, ledger, books: Default::default() }
    }

    /// Runs one asset's commands in order; answers the index of the command that failed.
    pub async fn run(&self, asset: &str, commands: &[Command]) -> Result<(), (usize, TradingError)> {
        let slot = self.books.lock().await.entry(asset.to_owned()).or_default().clone();
        let mut cached = slot.lock().await;
        for _ in 0..ATTEMPTS {
            if cached.is_none() {
                *cached = Some(self.load(asset).await.map_err(|e| (0, e))?);
            }
            let Some(c) = cached.as_mut() else { continue };
            let mut run = Run::default();
            let mut outcome = Ok(());
            for (index, command) in commands.iter().enumerate() {
                if let Err(stop) = self.apply(c, &mut run, command).await {
                    outcome = Err((index, stop));
                    break;
                }
            }
            if outcome.is_ok() {
                let last = commands.len().saturating_sub(1);
                outcome = match self.commit(c, &mut run).await {
                    Ok(()) => self.landed(c).await,
                    Err(stop) => Err(stop),
                }
                .map_err(|stop| (last, stop));
            }
            match outcome {
                Ok(()) => return Ok(()),
                Err((index, stop)) => {
                    // A step may still be on its way: it lands (or fails) before the store is
                    // read again. Its outcome changes nothing here: the book was taken past it.
                    let _ = self.landed(c).await;
                    // What the book holds may be ahead of the store: read it again.
                    *cached = None;
                    if let Stop::Failed(e) = stop {
                        return Err((index, e));
                    }
                }
            }
        }
        Err((0, TradingError::Busy))
    }

    /// The market and its book from the store: every open order with a `seq`, in `seq` order.
    async fn load(&self, asset: &str) -> Result<Cached, TradingError> {
        let item = self.store.get(&super::market_key(asset)).await?.ok_or(TradingError::NoMarket)?;
        let (market, version): (Market, u64) = (item.decode()?, item.version);
        self.ledger.open(fee_account(asset)).await?;
        let mut resting = Vec::new();
        let mut orders = HashMap::new();
        store::each(self.store.as_ref(), &Query::secondary(open_partition(asset)), |item| {
            let order: Order = item.decode()?;
            if let Some(seq) = order.seq {
                resting.push(Resting {
                    remaining: order.remaining(),
                    id: order.id.clone(),
                    owner: order.owner.clone(),
                    side: order.side,
                    price: order.price,
                    seq,
                });
                orders.insert(order.id.clone(), order);
            }
            Ok(())
        })
        .await?;
        resting.sort_by_key(|r| r.seq);
        let mut book = Book::default();
        for order in resting {
            book.rest(order);
        }
        // The locks are read as fills first need them.
        Ok(Cached { market, version, book, orders, locks: HashMap::new(), in_flight: None })
    }

    /// The order as the run leaves it, as the step in flight writes it, as the book holds
    /// it, or as the store has it.
    async fn order(&self, c: &Cached, run: &Run, id: &str) -> Result<Option<Order>, StoreError> {
        let in_flight = || c.in_flight.as_ref().and_then(|step| step.orders.get(id));
        if let Some(order) = run.orders.get(id).or_else(in_flight).or_else(|| c.orders.get(id)) {
            return Ok(Some(order.clone()));
        }
        self.store.get(&order_key(id)).await?.map(|i| i.decode()).transpose()
    }

    async fn lock(&self, c: &Cached, run: &Run, id: &str) -> Result<Option<OrderLock>, StoreError> {
        let in_flight = || c.in_flight.as_ref().and_then(|step| step.locks.get(id));
        if let Some(lock) = run.locks.get(id).or_else(in_flight).or_else(|| c.locks.get(id)) {
            return Ok(Some(lock.clone()));
        }
        self.store.get(&lock_key(id)).await?.map(|i| i.decode()).transpose()
    }

    async fn apply(&self, c: &mut Cached, run: &mut Run, command: &Command) -> Result<(), Stop> {
        match command {
            Command::Book { order_id, .. } => self.book(c, run, order_id).await,
            Command::Cancel { order_id, .. } => {
                let Some(order) = self.order(c, run, order_id).await? else { return Ok(()) };
                if order.state != OrderState::Open {
                    return Ok(());
                }
                c.book.remove(order_id);
                self.end(c, run, order, OrderState::Cancelled, "cancelled by you").await
            }
            Command::Close { day, .. } => self.close(c, run, *day).await,
        }
    }

    /// Marks `order` ended with what is left of it returned, in the run's step (committed
    /// first if the step is full).
    async fn end(
        &self,
        c: &mut Cached,
        run: &mut Run,
        order: Order,
        state: OrderState,
        reason: &str,
    ) -> Result<(), Stop> {
        let order = if self.fits(c, run, END_ROOM) {
            order
        } else {
            self.commit(c, run).await?;
            // The commit took it out of the run: read it as committed.
            self.order(c, run, &order.id).await?.ok_or(TradingError::NotFound)?
        };
        self.ended(c, run, order, state, reason).await
    }

    async fn ended(
        &self,
        c: &Cached,
        run: &mut Run,
        mut order: Order,
        state: OrderState,
        reason: &str,
    ) -> Result<(), Stop> {
        let now = self.clock.now();
        // A buy whose hold pays out in this step: posting it releases the rest.
        if !run.step.paid.contains_key(&order.id) {
            run.step.released.extend(order.release());
            order.held = None;
        }
        if order.side == Side::Sell
            && let Some(mut lock) = self.lock(c, run, &order.id).await?
        {
            lock.released_at.get_or_insert(now);
            run.locks.insert(lock.order_id.clone(), lock);
        }
        order.state = state;
        order.reason = Some(reason.to_owned());
        order.updated_at = now;
        run.orders.insert(order.id.clone(), order);
        Ok(())
    }

    async fn book(&self, c: &mut Cached, run: &mut Run, order_id: &str) -> Result<(), Stop> {
        let Some(mut order) = self.order(c, run, order_id).await? else { return Ok(()) };
        if order.state != OrderState::Open || order.seq.is_some() {
            return Ok(());
        }
        if c.market.halted || c.market.closed_day.is_some_and(|closed| closed >= order.day) {
            let (state, why) = if c.market.halted {
                (OrderState::Cancelled, "the market was halted before the order reached the book")
            } else {
                (OrderState::Expired, "the market closed before the order reached the book")
            };
            return self.end(c, run, order, state, why).await;
        }
        let seq = c.market.next_seq;
        let incoming = Incoming {
            id: order.id.clone(),
            owner: order.owner.clone(),
            side: order.side,
            price: order.price,
            quantity: order.remaining(),
        };
        let outcome = c.book.submit(&incoming, seq);
        c.market.next_seq += 1;
        let cancelled: Vec<String> = outcome.self_trade_cancelled.iter().map(|o| o.id.clone()).collect();
        order.self_trade_cancelled.extend(cancelled.iter().cloned());
        run.orders.insert(order.id.clone(), order);
        for own in &cancelled {
            if let Some(resting) = self.order(c, run, own).await? {
                let why =
                    format!("cancelled by self-trade prevention: your order {order_id} would have traded with it");
                self.end(c, run, resting, OrderState::Cancelled, &why).await?;
            }
        }
        for fill in &outcome.fills {
            loop {
                if self.fits(c, run, FILL_ROOM) {
                    self.fill(c, run, order_id, fill).await?;
                    break;
                }
                // Close to full: try the fill on a copy, and keep it if it fits after all.
                let mut tried = run.clone();
                self.fill(c, &mut tried, order_id, fill).await?;
                if self.fits(c, &tried, Room::NONE) {
                    *run = tried;
                    break;
                }
                if run.is_empty() {
                    return Err(Stop::Failed(TradingError::Ledger(LedgerError::Invalid(
                        "one fill does not fit a transaction".into(),
                    ))));
                }
                // Full: commit what is there; the fill starts the next step.
                self.commit(c, run).await?;
            }
            let day = crate::domain::market::trading_day(self.clock.now());
            c.market.stats = Some(DayStats::after(c.market.stats.as_ref(), day, fill.price, fill.quantity));
            c.market.reference_price = fill.price;
        }
        // What is left rests: the order is written with its place in the book (read back if
        // a commit above took it out of the run).
        if let Some(mut incoming) = self.order(c, run, order_id).await?
            && incoming.state == OrderState::Open
        {
            incoming.seq = Some(seq);
            run.orders.insert(incoming.id.clone(), incoming);
        }
        if !self.fits(c, run, ORDER_ROOM) {
            // Room for the next order as it arrives (its fills and endings check for theirs).
            self.commit(c, run).await?;
        }
        Ok(())
    }

    /// Applies one fill to the orders and locks of `run`, and notes it in `step`.
    async fn fill(
        &self,
        c: &Cached,
        run: &mut Run,
        taker_id: &str,
        fill: &crate::domain::market::Fill,
    ) -> Result<(), Stop> {
        let now = self.clock.now();
        let taker = self.order(c, run, taker_id).await?.ok_or(TradingError::NotFound)?;
        let maker = self.order(c, run, &fill.maker).await?.ok_or(TradingError::NotFound)?;
        // The book disagrees with the orders (the incoming one is read from the store, which
        // another matcher may have changed since this book was read): read both again
        // rather than fill what is no longer there.
        if [&taker, &maker].iter().any(|o| o.state != OrderState::Open || o.remaining() < fill.quantity) {
            return Err(Stop::Lost);
        }
        let (buy, sell) = if taker.side == Side::Buy { (taker, maker) } else { (maker, taker) };
        let notional = fill.price * fill.quantity;
        let rules = &c.market.rules;
        let (buyer_fee, seller_fee) = (rules.fee(notional), rules.fee(notional));
        let trade = Trade {
            id: crate::app::keyed_id("trd", &fill.maker, taker_id),
            asset: c.market.asset.clone(),
            price: fill.price,
            quantity: fill.quantity,
            buyer: buy.owner.clone(),
            seller: sell.owner.clone(),
            buy_order: buy.id.clone(),
            sell_order: sell.id.clone(),
            buyer_fee,
            seller_fee,
            maker_side: if taker_id == buy.id { Side::Sell } else { Side::Buy },
            at: now,
        };
        let paid = run.step.paid.entry(buy.id.clone()).or_default();
        paid.0 += notional + buyer_fee;
        paid.1 += buyer_fee + seller_fee;
        for (mut order, cash, fee) in
            [(buy, notional + buyer_fee, buyer_fee), (sell, notional - seller_fee, seller_fee)]
        {
            order.filled += fill.quantity;
            order.settled_cash += cash;
            order.fees += fee;
            order.updated_at = now;
            if order.remaining() == 0 {
                order.state = OrderState::Filled;
            }
            if order.side == Side::Sell
                && let Some(mut lock) = self.lock(c, run, &order.id).await?
            {
                lock.fills.push(LockFill { at: now, units: fill.quantity });
                if lock.remaining() == 0 {
                    lock.released_at = Some(now);
                }
                run.locks.insert(lock.order_id.clone(), lock);
            }
            run.orders.insert(order.id.clone(), order);
        }
        run.step.trades.push(trade);
        Ok(())
    }

    /// The linked transfers of the run's step, in order: the buy holds posted, the units and
    /// the cash moved, what ended released, the new holds of buy orders still open.
    fn transfers(&self, c: &Cached, run: &Run) -> Vec<Transfer> {
        let step = &run.step;
        let fees = fee_account(&c.market.asset).id;
        let (mut posts, mut moves, mut holds) = (Vec::new(), Vec::new(), Vec::new());
        for (order_id, (paid, fee)) in &step.paid {
            let Some(order) = run.orders.get(order_id) else { continue };
            let Some(hold) = order.hold() else { continue };
            posts.push(Transfer::post(format!("{}:post", hold.id), &hold, *paid));
            if *fee > 0 {
                let lock = Account::id_of(Kind::OrderLock, &order.owner, SGD);
                moves.push(
                    Transfer::single(format!("{}:fee", hold.id), &lock, &fees, *fee, SGD, codes::TRADE_FEE)
                        .with_reference(order_id),
                );
            }
            if order.state == OrderState::Open && order.remaining() > 0 {
                let mut next = order.clone();
                next.held = order.held.map(|h| Held {
                    generation: h.generation + 1,
                    amount: c.market.rules.hold_for(order.price, order.remaining()),
                });
                holds.extend(next.hold());
            }
        }
        for trade in &step.trades {
            let seller_lock = Account::id_of(Kind::OrderLock, &trade.seller, &trade.asset);
            let holding = Account::id_of(Kind::Holding, &trade.buyer, &trade.asset);
            moves.push(
                Transfer::single(
                    format!("{}:units", trade.id),
                    &seller_lock,
                    &holding,
                    trade.quantity,
                    &trade.asset,
                    codes::TRADE_UNITS,
                )
                .with_reference(&trade.id),
            );
            let proceeds = trade.notional() - trade.seller_fee;
            if proceeds > 0 {
                let (buyer_lock, deposit) = (
                    Account::id_of(Kind::OrderLock, &trade.buyer, SGD),
                    Account::id_of(Kind::Deposit, &trade.seller, SGD),
                );
                moves.push(
                    Transfer::single(
                        format!("{}:proceeds", trade.id),
                        &buyer_lock,
                        &deposit,
                        proceeds,
                        SGD,
                        codes::TRADE_PROCEEDS,
                    )
                    .with_reference(&trade.id),
                );
            }
        }
        let mut transfers = posts;
        transfers.extend(moves);
        transfers.extend(step.released.iter().cloned());
        transfers.extend(holds);
        transfers
    }

    /// The run's transfers and writes, with the buy orders' holds moved on; empties the
    /// run's step (its orders and locks stay until the commit lands).
    fn settle(&self, c: &Cached, run: &mut Run) -> Result<(Vec<Transfer>, Vec<Write>), Stop> {
        let now = self.clock.now();
        let transfers = self.transfers(c, run);
        let step = std::mem::take(&mut run.step);
        for order_id in step.paid.keys() {
            let Some(order) = run.orders.get_mut(order_id) else { continue };
            let generation = order.held.take().map_or(0, |h| h.generation + 1);
            if order.state == OrderState::Open && order.remaining() > 0 {
                order.held = Some(Held { generation, amount: c.market.rules.hold_for(order.price, order.remaining()) });
            }
        }
        let mut writes = Vec::new();
        for trade in &step.trades {
            writes.push(Write::put(trade.item_for(&trade.buyer)?, Condition::None));
            writes.push(Write::put(trade.item_for(&trade.seller)?, Condition::None));
            for (side, owner) in [(Side::Buy, &trade.buyer), (Side::Sell, &trade.seller)] {
                let notice = Notice::TradeConfirmed {
                    trade_id: trade.id.clone(),
                    order_id: if side == Side::Buy { trade.buy_order.clone() } else { trade.sell_order.clone() },
                    side: side.as_str().to_owned(),
                    market: c.market.name.clone(),
                    asset: trade.asset.clone(),
                    units: trade.quantity,
                    price: trade.price,
                    notional: trade.notional(),
                    fee: if side == Side::Buy { trade.buyer_fee } else { trade.seller_fee },
                    net: if side == Side::Buy {
                        trade.notional() + trade.buyer_fee
                    } else {
                        trade.notional() - trade.seller_fee
                    },
                    at: trade.at,
                };
                let origin = format!("{}:{}", trade.id, side.as_str());
                writes.push(notices::write(&origin, Audience::Investor(owner.clone()), notice, now)?);
            }
        }
        for order in run.orders.values() {
            writes.push(Write::put(order.item()?, Condition::None));
        }
        for lock in run.locks.values() {
            writes.push(Write::put(lock.item()?, Condition::None));
        }
        Ok((transfers, writes))
    }

    /// How many transfers [`Matcher::transfers`] makes of the run, without making them.
    fn transfer_count(run: &Run) -> usize {
        let step = &run.step;
        let mut count = step.released.len();
        for (order_id, (_, fee)) in &step.paid {
            let Some(order) = run.orders.get(order_id).filter(|o| o.held.is_some()) else { continue };
            let rests = order.state == OrderState::Open && order.remaining() > 0;
            count += 1 + usize::from(*fee > 0) + usize::from(rests);
        }
        count + step.trades.iter().map(|t| 1 + usize::from(t.notional() > t.seller_fee)).sum::<usize>()
    }

    /// Whether the run's step, orders and locks, and `room` more, fit one ledger batch and
    /// one store transaction.
    fn fits(&self, c: &Cached, run: &Run, room: Room) -> bool {
        let count = Self::transfer_count(run) + room.transfers;
        // Per trade: two owners' copies and two notices. Then the orders, locks and market.
        let writes = 4 * run.step.trades.len() + run.orders.len() + run.locks.len() + 1 + room.writes;
        let most_ops = self.store.max_transaction_ops();
        if count > self.ledger.max_linked() {
            return false;
        }
        if count * OPS_PER_TRANSFER + writes <= most_ops {
            return true;
        }
        // Near the limit of a small step (DynamoDB's 100 operations hold 14 transfers), the
        // accounts the transfers share, counted once, make room for another fill. Counting
        // them builds the step's transfers, on every order and fill near the limit: in a
        // larger step that costs more than the room it finds (at most two operations of
        // seven a transfer), so a larger step ends at the estimate above.
        if count > MAX_LINKED {
            return false;
        }
        let transfers = self.transfers(c, run);
        debug_assert_eq!(transfers.len() + room.transfers, count);
        let mut accounts: Vec<&str> = transfers.iter().flat_map(|t| [t.debit.as_str(), t.credit.as_str()]).collect();
        accounts.sort_unstable();
        accounts.dedup();
        let accounts = accounts.len() + 2 * room.transfers;
        count * (OPS_PER_TRANSFER - 2) + accounts + writes <= most_ops
    }

    /// Hands the run (its step, orders and locks) and the market's item at the next version
    /// to the store, once the step before it has landed; does not wait for it to land.
    async fn commit(&self, c: &mut Cached, run: &mut Run) -> Result<(), Stop> {
        if run.is_empty() {
            return Ok(());
        }
        let (transfers, writes) = self.settle(c, run)?;
        self.send(c, transfers, writes, std::mem::take(&mut run.orders), std::mem::take(&mut run.locks)).await
    }

    async fn send(
        &self,
        c: &mut Cached,
        transfers: Vec<Transfer>,
        writes: Vec<Write>,
        orders: HashMap<String, Order>,
        locks: HashMap<String, OrderLock>,
    ) -> Result<(), Stop> {
        self.landed(c).await?;
        let (bids, asks) = c.book.depth(super::DEPTH);
        c.market.bids = bids;
        c.market.asks = asks;
        c.market.updated_at = self.clock.now();
        let head = Write::put(c.market.item()?, Condition::VersionIs(c.version));
        let (store, ledger, version) = (self.store.clone(), self.ledger.clone(), c.version);
        let task = tokio::spawn(write(store, ledger, version, head, transfers, writes));
        c.in_flight = Some(InFlight { task, orders, locks });
        // A task spawned on a worker waits in that worker's own slot, which the other
        // workers do not take from, until the spawner yields: yield, so the step's write
        // starts now and the next step is worked out beside it.
        tokio::task::yield_now().await;
        Ok(())
    }

    /// Waits for the step in flight, if any; when it lands, the market's version moves on
    /// and its orders and locks become the book's.
    async fn landed(&self, c: &mut Cached) -> Result<(), Stop> {
        let Some(InFlight { task, orders, locks }) = c.in_flight.take() else { return Ok(()) };
        task.await.map_err(|e| Stop::Failed(StoreError::unavailable(e).into()))??;
        c.version += 1;
        c.committed(orders, locks);
        Ok(())
    }

    /// Expires every order of `day` or before still open, booked or not; closes the day.
    async fn close(&self, c: &mut Cached, run: &mut Run, day: chrono::NaiveDate) -> Result<(), Stop> {
        if c.market.closed_day.is_some_and(|closed| closed >= day) {
            return Ok(());
        }
        self.commit(c, run).await?;
        self.landed(c).await?;
        let mut open = Vec::new();
        store::each(self.store.as_ref(), &Query::secondary(open_partition(&c.market.asset)), |item| {
            let order: Order = item.decode()?;
            if order.day <= day {
                open.push(order.id);
            }
            Ok(())
        })
        .await?;
        for id in open {
            let Some(order) = self.order(c, run, &id).await? else { continue };
            if order.state != OrderState::Open {
                continue;
            }
            c.book.remove(&id);
            self.end(c, run, order, OrderState::Expired, "expired at the close").await?;
        }
        c.market.closed_day = Some(day);
        if run.is_empty() {
            // Nothing was open: the day closes on its own commit.
            return self.send(c, Vec::new(), Vec::new(), HashMap::new(), HashMap::new()).await;
        }
        self.commit(c, run).await
    }
}

/// Writes one step: its writes and the market's item (`head`, conditioned on `version`),
/// with its transfers through the ledger when it has any. [`Stop::Lost`] when another
/// writer moved the market first.
async fn write(
    store: Arc<dyn Store>,
    ledger: Ledger,
    version: u64,
    head: Write,
    transfers: Vec<Transfer>,
    writes: Vec<Write>,
) -> Result<(), Stop> {
    if transfers.is_empty() {
        let mut all = writes;
        all.push(head);
        return match store.transact(all).await {
            Ok(()) => Ok(()),
            Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => Err(Stop::Lost),
            Err(e) => Err(Stop::Failed(e.into())),
        };
    }
    let market = head.key().clone();
    match ledger.submit_with(&transfers, &[head], &writes).await {
        // A batch the ledger had recorded already answers without writing: another matcher
        // committed this step. The market's version tells which happened.
        Ok(_) => match store.get(&market).await? {
            Some(item) if item.version == version + 1 => Ok(()),
            _ => Err(Stop::Lost),
        },
        Err(LedgerError::ContextChanged) => Err(Stop::Lost),
        Err(e) => Err(Stop::Failed(e.into())),
    }
}

/// The `matching` queue's consumer: commands grouped by asset, each asset's run in order.
/// An unreadable command goes to the dead-letter queue at once; a run that fails comes back
/// whole (the queue's redrive takes a command that keeps failing to the dead-letter queue),
/// as a FIFO group's batch would.
pub struct MatchingHandler {
    pub matcher: Arc<Matcher>,
    pub queue: Arc<dyn Queue>,
}

#[async_trait::async_trait]
impl BatchHandler for MatchingHandler {
    async fn handle(&self, batch: &[Message]) -> Vec<String> {
        let mut failed = Vec::new();
        let mut runs: Vec<(String, Vec<(&Message, Command)>)> = Vec::new();
        for m in batch {
            match serde_json::from_str::<Command>(&m.body) {
                Ok(command) => match runs.iter_mut().find(|(asset, _)| asset == command.asset()) {
                    Some((_, commands)) => commands.push((m, command)),
                    None => runs.push((command.asset().to_owned(), vec![(m, command)])),
                },
                Err(e) => {
                    let failure = Failure::permanent(&m.id, format!("unreadable message: {e}"));
                    failed.extend(after_failure(self.queue.as_ref(), super::QUEUE, m, &failure).await);
                }
            }
        }
        for (asset, commands) in runs {
            let list: Vec<Command> = commands.iter().map(|(_, c)| c.clone()).collect();
            match self.matcher.run(&asset, &list).await {
                Ok(()) => {}
                Err((_, error @ TradingError::NoMarket)) => {
                    // No market will ever be there for these.
                    for (m, _) in &commands {
                        let failure = Failure::of(&m.id, &error);
                        failed.extend(after_failure(self.queue.as_ref(), super::QUEUE, m, &failure).await);
                    }
                }
                Err((index, error)) => {
                    // A step holds the effects of several commands: the one running when it
                    // failed is not necessarily the cause. The run's commands come back, in
                    // order, and one that keeps failing reaches the dead-letter queue by the
                    // redrive.
                    tracing::warn!(asset, at = index, %error, "a matching run failed; its commands come back");
                    failed.extend(commands.iter().map(|(m, _)| m.id.clone()));
                }
            }
        }
        failed
    }
}
