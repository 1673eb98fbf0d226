//! The secondary market: investors trade issued DABS with limit orders, good for the day.
//!
//! Placing an order checks the market's rules and locks what it needs in the ledger in the
//! same transaction that records it: a sell moves its units to the seller's order lock, a
//! buy holds price × quantity plus the most it can pay in fees (a pending transfer from the
//! deposit account). The order then goes to the `matching` queue, a FIFO queue with one
//! message group per asset, and [`matching::Matcher`] books it: one asset's orders are
//! matched in sequence, and every write of the matcher is conditioned on the version of
//! the market's item, so a second writer can never interleave. Cancels and the close go
//! through the same queue.
//!
//! A trade settles at once in one linked ledger batch (units to the buyer; the buyer's hold
//! posted and paid out to the seller less the seller's fee and to the fee account; what
//! the hold held beyond that returns to the buyer). The chain and the Custody follow
//! through the mirror. `docs/trading.md` has the rules and states.

pub mod matching;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::deals::{Deal, deal_key};
use super::ledger::{Ledger, LedgerError, sortable};
use super::orders::OrderLock;
use crate::domain::deal::DealState;
use crate::domain::ledger::{Account, Amount, Kind, Refusal, SGD, Transfer, codes};
use crate::domain::market::{self, DayStats, Level, Refused, Rules, Side};
use crate::ports::queue::{QueueError, QueueName};
use crate::ports::store::{Condition, Cursor, Item, Key, Query, StoreError, Write};
use crate::ports::{Clock, Queue, Store};

/// The queue of the market's commands.
pub const QUEUE: QueueName = QueueName::Matching;
/// Secondary-index partition of every market.
const MARKETS: &str = "MARKETS";
/// Price levels per side kept in the market's item for readers.
pub const DEPTH: usize = 10;

/// The platform's fee account of an asset's market (one per market, so the matchers of
/// different assets never meet on it).
pub fn fee_account(asset: &str) -> Account {
    Account::of(Kind::Fees, asset, SGD)
}

pub fn market_key(asset: &str) -> Key {
    Key::new(format!("MARKET#{asset}"), "STATE")
}

fn order_key(id: &str) -> Key {
    Key::new(format!("ORDER#{id}"), "ORDER")
}

/// Secondary-index partition of an asset's open orders, booked or on their way.
fn open_partition(asset: &str) -> String {
    format!("ORDERS#OPEN#{asset}")
}

fn mine_partition(owner: &str) -> String {
    format!("USER#{owner}#ORDERS")
}

fn trades_partition(owner: &str) -> String {
    format!("USER#{owner}#TRADES")
}

/// An asset's market: its rules, state and the day's prices. The matcher rewrites it with
/// every step it takes, so its version is the book's version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Market {
    pub asset: String,
    pub deal_id: String,
    pub name: String,
    pub rules: Rules,
    /// Cents: the last trade's price, or the offering's before the first trade.
    pub reference_price: u64,
    pub halted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub halt_reason: Option<String>,
    /// The last day's (or today's) prices and volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<DayStats>,
    /// The last trading day whose close ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub closed_day: Option<NaiveDate>,
    /// The next arrival number at the book (time priority).
    pub next_seq: u64,
    /// The best price levels, as the matcher last left the book.
    #[serde(default)]
    pub bids: Vec<Level>,
    #[serde(default)]
    pub asks: Vec<Level>,
    pub updated_at: DateTime<Utc>,
}

impl Market {
    /// A new market of `asset` at `reference_price` (cents), with no trade and no order yet.
    pub fn opened(
        asset: &str,
        deal_id: &str,
        name: &str,
        rules: Rules,
        reference_price: u64,
        at: DateTime<Utc>,
    ) -> Self {
        Self {
            asset: asset.to_owned(),
            deal_id: deal_id.to_owned(),
            name: name.to_owned(),
            rules,
            reference_price,
            halted: false,
            halt_reason: None,
            stats: None,
            closed_day: None,
            next_seq: 1,
            bids: Vec::new(),
            asks: Vec::new(),
            updated_at: at,
        }
    }

    pub fn item(&self) -> Result<Item, StoreError> {
        Ok(Item::new(market_key(&self.asset), self)?.with_index(MARKETS, &self.asset))
    }

    /// The trading day open for orders at `now`: in session, and not closed already.
    pub fn session_at(&self, now: DateTime<Utc>) -> Option<NaiveDate> {
        self.rules.session_at(now).filter(|day| self.closed_day.is_none_or(|closed| closed < *day))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Accepted and locked; on its way to the book or resting in it (perhaps partly filled).
    Open,
    Filled,
    /// By its owner, by self-trade prevention, or because the market was halted.
    Cancelled,
    /// Still open at the close: what was left returned to its owner.
    Expired,
}

/// The cash a buy order holds now: the pending transfer of generation `generation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    pub generation: u32,
    pub amount: Amount,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub owner: String,
    pub asset: String,
    pub side: Side,
    /// Limit price, cents per unit.
    pub price: u64,
    pub quantity: u64,
    pub filled: u64,
    pub state: OrderState,
    /// The trading day it is good for.
    pub day: NaiveDate,
    /// Arrival at the book, once booked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// A buy order's hold, while it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
    /// Cents paid (buy, fees included) or received (sell, fees deducted) so far.
    pub settled_cash: u64,
    pub fees: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Resting orders of the same owner this order cancelled instead of trading with them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub self_trade_cancelled: Vec<String>,
    pub placed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Order {
    pub fn remaining(&self) -> u64 {
        self.quantity - self.filled
    }

    pub fn item(&self) -> Result<Item, StoreError> {
        let item = Item::new(order_key(&self.id), self)?;
        Ok(match self.state {
            OrderState::Open => {
                item.with_index(open_partition(&self.asset), format!("{}#{}", sortable(self.placed_at), self.id))
            }
            _ => item,
        })
    }

    /// The pending transfer holding a buy order's cash now.
    pub fn hold(&self) -> Option<Transfer> {
        let held = self.held?;
        let deposit = Account::id_of(Kind::Deposit, &self.owner, SGD);
        let lock = Account::id_of(Kind::OrderLock, &self.owner, SGD);
        Some(
            Transfer::pending(hold_id(&self.id, held.generation), &deposit, &lock, held.amount, SGD, codes::ORDER_HOLD)
                .with_reference(&self.id),
        )
    }

    /// The sell order's lock account.
    fn lock_account(&self) -> String {
        Account::id_of(Kind::OrderLock, &self.owner, &self.asset)
    }

    /// What returns the rest of the order to its owner: the hold voided, or the locked
    /// units back to the holding. `None` when nothing is left.
    pub fn release(&self) -> Option<Transfer> {
        match self.side {
            Side::Buy => self.hold().map(|hold| Transfer::void(format!("{}:void", hold.id), &hold)),
            Side::Sell if self.remaining() > 0 => Some(
                Transfer::single(
                    format!("release:{}", self.id),
                    &self.lock_account(),
                    &Account::id_of(Kind::Holding, &self.owner, &self.asset),
                    self.remaining(),
                    &self.asset,
                    codes::ORDER_RELEASE,
                )
                .with_reference(&self.id),
            ),
            Side::Sell => None,
        }
    }
}

fn hold_id(order: &str, generation: u32) -> String {
    format!("hold:{order}:{generation}")
}

/// One fill, as both parties see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trade {
    pub id: String,
    pub asset: String,
    pub price: u64,
    pub quantity: u64,
    pub buyer: String,
    pub seller: String,
    pub buy_order: String,
    pub sell_order: String,
    pub buyer_fee: u64,
    pub seller_fee: u64,
    /// The side of the order that was resting.
    pub maker_side: Side,
    pub at: DateTime<Utc>,
}

impl Trade {
    pub fn notional(&self) -> u64 {
        self.price * self.quantity
    }

    /// The owner's copy, listed under them by time.
    fn item_for(&self, owner: &str) -> Result<Item, StoreError> {
        Item::new(Key::new(trades_partition(owner), format!("{}#{}", sortable(self.at), self.id)), self)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TradingError {
    #[error("no market for this asset")]
    NoMarket,
    #[error("no such order")]
    NotFound,
    #[error("the market is halted")]
    Halted,
    #[error("the market is closed")]
    Closed,
    #[error("{}: {}", .0.field, .0.reason)]
    Refused(Refused),
    #[error("{field}: {reason}")]
    Uncovered { field: &'static str, reason: String },
    #[error("the Idempotency-Key was used for another order")]
    KeyReused,
    #[error("the order is {0:?}: nothing to cancel")]
    NotOpen(OrderState),
    #[error("the market is busy; retry")]
    Busy,
    #[error("ledger: {0}")]
    Ledger(LedgerError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<LedgerError> for TradingError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Store(e) => Self::Store(e),
            LedgerError::Busy => Self::Busy,
            other => Self::Ledger(other),
        }
    }
}

impl super::failure::Permanence for TradingError {
    fn is_permanent(&self) -> bool {
        match self {
            Self::Busy | Self::Queue(_) => false,
            Self::Ledger(e) => super::failure::Permanence::is_permanent(e),
            Self::Store(e) => e.is_permanent(),
            _ => true,
        }
    }
}

/// What the matching queue carries; every command names its asset (the message group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Command {
    /// Match a placed order and book what is left.
    Book { asset: String, order_id: String },
    /// Take an order out of the book; its locks return.
    Cancel { asset: String, order_id: String },
    /// Expire every order of `day` still open; the day's prices close.
    Close { asset: String, day: NaiveDate },
}

impl Command {
    pub fn asset(&self) -> &str {
        match self {
            Self::Book { asset, .. } | Self::Cancel { asset, .. } | Self::Close { asset, .. } => asset,
        }
    }

    /// The FIFO deduplication id: the same command sent twice is matched once.
    fn dedup_id(&self) -> String {
        match self {
            Self::Book { order_id, .. } => format!("book-{order_id}"),
            Self::Cancel { order_id, .. } => format!("cancel-{order_id}"),
            Self::Close { asset, day } => format!("close-{asset}-{day}"),
        }
    }
}

/// Sends commands of one asset to the matching queue, in order.
pub async fn send(queue: &dyn Queue, asset: &str, commands: &[Command]) -> Result<(), QueueError> {
    let messages = commands
        .iter()
        .map(|c| Ok((c.dedup_id(), serde_json::to_string(c).map_err(|e| QueueError::Invalid(e.to_string()))?)))
        .collect::<Result<Vec<_>, QueueError>>()?;
    queue.send_fifo(QUEUE, asset, messages).await.map(|_| ())
}

/// A placement request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub side: Side,
    pub price: u64,
    pub quantity: u64,
}

pub struct Trading {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    queue: Arc<dyn Queue>,
    ledger: Ledger,
    /// Ledger accounts known to exist (opening one is a write; most orders need none).
    opened: Mutex<HashSet<String>>,
}

impl Trading {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, queue: Arc<dyn Queue>, ledger: Ledger) -> Self {
        Self { store, clock, queue, ledger, opened: Mutex::default() }
    }

    /// Opens `account` unless this process saw it exist.
    async fn open_once(&self, account: Account) -> Result<(), LedgerError> {
        if !self.exists(&account.id).await? {
            let id = account.id.clone();
            self.ledger.open(account).await?;
            if let Ok(mut known) = self.opened.lock() {
                known.insert(id);
            }
        }
        Ok(())
    }

    /// Whether the ledger account exists (remembered once seen: accounts are never closed).
    async fn exists(&self, account: &str) -> Result<bool, LedgerError> {
        if self.opened.lock().is_ok_and(|known| known.contains(account)) {
            return Ok(true);
        }
        let found = self.ledger.account(account).await?.is_some();
        if found && let Ok(mut known) = self.opened.lock() {
            known.insert(account.to_owned());
        }
        Ok(found)
    }

    /// The asset's market and its version; an issued deal's market is opened on first use,
    /// at the offering's price and the default rules.
    pub async fn market(&self, asset: &str) -> Result<(Market, u64), TradingError> {
        if let Some(item) = self.store.get(&market_key(asset)).await? {
            return Ok((item.decode()?, item.version));
        }
        let deal_id = asset.strip_prefix("DABS-").ok_or(TradingError::NoMarket)?;
        let deal: Deal = self.store.get(&deal_key(deal_id)).await?.ok_or(TradingError::NoMarket)?.decode()?;
        if deal.state != DealState::Issued || deal.asset != asset {
            return Err(TradingError::NoMarket);
        }
        let (name, price) = (&deal.terms.building.name, deal.terms.unit_price);
        let market = Market::opened(asset, &deal.id, name, Rules::default(), price, self.clock.now());
        match self.store.put(market.item()?, Condition::NotExists).await {
            Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        Box::pin(self.market(asset)).await
    }

    /// Every market, by asset.
    pub async fn markets(&self) -> Result<Vec<Market>, StoreError> {
        let mut markets = Vec::new();
        crate::ports::store::each(self.store.as_ref(), &Query::secondary(MARKETS), |item| {
            markets.push(item.decode()?);
            Ok(())
        })
        .await?;
        Ok(markets)
    }

    pub async fn get(&self, id: &str) -> Result<Option<Order>, StoreError> {
        self.store.get(&order_key(id)).await?.map(|i| i.decode()).transpose()
    }

    /// The owner's order.
    pub async fn order_of(&self, owner: &str, id: &str) -> Result<Order, TradingError> {
        self.get(id).await?.filter(|o| o.owner == owner).ok_or(TradingError::NotFound)
    }

    /// Places a limit order for the day under the caller's idempotency key and answers it as
    /// accepted, before matching. The same key and request answer the same order as it stands
    /// by then; another request is refused.
    pub async fn place(
        &self,
        owner: &str,
        asset: &str,
        key: &str,
        placement: &Placement,
    ) -> Result<Order, TradingError> {
        let id = super::keyed_id("ord", owner, key);
        if let Some(first) = self.get(&id).await? {
            let same = first.asset == asset
                && first.side == placement.side
                && first.price == placement.price
                && first.quantity == placement.quantity;
            if !same {
                return Err(TradingError::KeyReused);
            }
            if first.state == OrderState::Open && first.seq.is_none() {
                // Not booked yet: perhaps its command was never sent (the first request
                // failed after recording it). Sending it again is harmless.
                send(self.queue.as_ref(), asset, &[Command::Book { asset: asset.to_owned(), order_id: id }]).await?;
            }
            return Ok(first);
        }
        let (market, _) = self.market(asset).await?;
        if market.halted {
            return Err(TradingError::Halted);
        }
        let now = self.clock.now();
        let day = market.session_at(now).ok_or(TradingError::Closed)?;
        market::check_order(&market.rules, market.reference_price, placement.price, placement.quantity)
            .map_err(TradingError::Refused)?;
        let Placement { side, price, quantity } = placement.clone();
        let mut order = Order {
            id: id.clone(),
            owner: owner.to_owned(),
            asset: asset.to_owned(),
            side,
            price,
            quantity,
            filled: 0,
            state: OrderState::Open,
            day,
            seq: None,
            held: None,
            settled_cash: 0,
            fees: 0,
            reason: None,
            self_trade_cancelled: Vec::new(),
            placed_at: now,
            updated_at: now,
        };
        let deposit = Account::id_of(Kind::Deposit, owner, SGD);
        let uncovered = |reason: &str| TradingError::Uncovered { field: "quantity", reason: reason.to_owned() };
        if !self.exists(&deposit).await? {
            return Err(uncovered("trading needs a deposit account: make a deposit first"));
        }
        let mut effects = Vec::with_capacity(3);
        let transfer = match side {
            Side::Sell => {
                let holding = Account::id_of(Kind::Holding, owner, asset);
                if !self.exists(&holding).await? {
                    return Err(uncovered("you hold no units of this asset"));
                }
                self.open_once(Account::of(Kind::OrderLock, owner, asset)).await?;
                let lock = OrderLock {
                    order_id: id.clone(),
                    owner: owner.to_owned(),
                    asset: asset.to_owned(),
                    units: quantity,
                    locked_at: now,
                    released_at: None,
                    fills: Vec::new(),
                };
                effects.push(Write::put(lock.item()?, Condition::NotExists));
                Transfer::single(
                    format!("lock:{id}"),
                    &holding,
                    &order.lock_account(),
                    quantity,
                    asset,
                    codes::ORDER_LOCK,
                )
                .with_reference(&id)
            }
            Side::Buy => {
                self.open_once(Account::of(Kind::OrderLock, owner, SGD)).await?;
                // The units arrive in the holding: open it now, not in the matcher's step.
                self.open_once(Account::of(Kind::Holding, owner, asset)).await?;
                order.held = Some(Held { generation: 0, amount: market.rules.hold_for(price, quantity) });
                order.hold().ok_or(TradingError::NotFound)?
            }
        };
        effects.push(Write::put(order.item()?, Condition::NotExists));
        let listed = Key::new(mine_partition(owner), format!("{}#{id}", sortable(now)));
        effects.push(Write::put(Item::new(listed, &id)?, Condition::None));
        match self.ledger.submit_with(&[transfer], &[], &effects).await {
            Ok(_) => {}
            Err(LedgerError::Refused(Refusal::ExceedsLimit(_))) => {
                return Err(uncovered(match side {
                    Side::Sell => "more units than your holding has available",
                    Side::Buy => "price × quantity plus the fee is more than your available balance",
                }));
            }
            Err(e) => return Err(e.into()),
        }
        // Written; if the send fails the request answers an error, and its retry with the
        // same key sends the command again. A crash before the send leaves the order open
        // and unbooked until a retry or the close returns its lock.
        send(self.queue.as_ref(), asset, &[Command::Book { asset: asset.to_owned(), order_id: id.clone() }]).await?;
        // The order as accepted: the matcher may have filled it already, which a read back
        // would show instead of the acknowledgement (its fills are read with `get`).
        Ok(order)
    }

    /// Asks the matcher to cancel the owner's open order; answers the order as it stands
    /// (the cancel takes effect in sequence with the asset's other orders).
    pub async fn cancel(&self, owner: &str, id: &str) -> Result<Order, TradingError> {
        let order = self.order_of(owner, id).await?;
        if order.state != OrderState::Open {
            return Err(TradingError::NotOpen(order.state));
        }
        let cancel = Command::Cancel { asset: order.asset.clone(), order_id: order.id.clone() };
        send(self.queue.as_ref(), &order.asset, &[cancel]).await?;
        Ok(order)
    }

    /// The owner's orders, newest first.
    pub async fn orders_of(
        &self,
        owner: &str,
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<(Vec<Order>, Option<Cursor>), StoreError> {
        let page =
            self.store.query(&Query::partition(mine_partition(owner)).descending().limit(limit).after(cursor)).await?;
        let mut orders = Vec::with_capacity(page.items.len());
        for item in &page.items {
            if let Some(order) = self.get(&item.decode::<String>()?).await? {
                orders.push(order);
            }
        }
        Ok((orders, page.next))
    }

    /// The owner's trades, newest first.
    pub async fn trades_of(
        &self,
        owner: &str,
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<(Vec<Trade>, Option<Cursor>), StoreError> {
        let page = self
            .store
            .query(&Query::partition(trades_partition(owner)).descending().limit(limit).after(cursor))
            .await?;
        Ok((page.items.iter().map(Item::decode).collect::<Result<_, _>>()?, page.next))
    }

    /// Sends the close of every market whose session ended and did not close yet; harmless
    /// to run again (the close of a day runs once). Answers the markets it asked to close.
    pub async fn close_due(&self) -> Result<Vec<String>, TradingError> {
        let now = self.clock.now();
        let today = market::trading_day(now);
        let mut asked = Vec::new();
        for m in self.markets().await? {
            let business = m.rules.session_at(m.rules.close_of(today) - chrono::TimeDelta::seconds(1)).is_some();
            let due = business && now >= m.rules.close_of(today) && m.closed_day.is_none_or(|d| d < today);
            if due {
                send(self.queue.as_ref(), &m.asset, &[Command::Close { asset: m.asset.clone(), day: today }]).await?;
                asked.push(m.asset);
            }
        }
        Ok(asked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buy_orders_release_voids_its_current_hold_and_a_sells_returns_what_is_left() {
        let now = Utc::now();
        let mut order = Order {
            id: "ord_1".into(),
            owner: "usr_1".into(),
            asset: "DABS-d".into(),
            side: Side::Buy,
            price: 100,
            quantity: 10,
            filled: 4,
            state: OrderState::Open,
            day: market::trading_day(now),
            seq: Some(1),
            held: Some(Held { generation: 2, amount: 603 }),
            settled_cash: 0,
            fees: 0,
            reason: None,
            self_trade_cancelled: Vec::new(),
            placed_at: now,
            updated_at: now,
        };
        let void = order.release().unwrap();
        assert_eq!((void.id.as_str(), void.pending_id.as_deref()), ("hold:ord_1:2:void", Some("hold:ord_1:2")));
        order.side = Side::Sell;
        order.held = None;
        let back = order.release().unwrap();
        assert_eq!(
            (back.debit.as_str(), back.credit.as_str(), back.amount),
            ("lock:usr_1:DABS-d", "holding:usr_1:DABS-d", 6)
        );
        order.filled = 10;
        assert_eq!(order.release(), None);
    }
}
