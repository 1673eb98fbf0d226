//! Secondary market rules, pure: sessions in Singapore time, tick and lot sizes, the price
//! band, fees, and the order book with price-time matching and self-trade prevention.
//!
//! Prices are cents per unit, quantities whole units. A trade's price is the resting
//! order's. Fees are basis points of the notional, rounded down, per side: the buyer pays
//! notional + fee, the seller receives notional - fee. Rounding down makes fees
//! subadditive, so the fee held for a whole buy order covers the fees of all its fills.

use std::cmp::Reverse;
use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, Utc, Weekday};
use serde::{Deserialize, Serialize};

use super::money::MAX_CENTS;

/// Singapore time: UTC+8 all year.
pub fn singapore() -> FixedOffset {
    #[expect(clippy::expect_used, reason = "eight hours is a valid offset")]
    FixedOffset::east_opt(8 * 3600).expect("UTC+8")
}

/// The Singapore date of `at`.
pub fn trading_day(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&singapore()).date_naive()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Buy => "buy",
            Self::Sell => "sell",
        }
    }
}

/// A market's rules, set per asset by operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// Session opening, Singapore time, `HH:MM:SS`, business days (Monday to Friday).
    #[schema(value_type = String, pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$", example = "09:00:00")]
    pub opens: NaiveTime,
    /// Session close, Singapore time, `HH:MM:SS`; open orders expire then.
    #[schema(value_type = String, pattern = "^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$", example = "17:00:00")]
    pub closes: NaiveTime,
    /// Prices are multiples of this many cents.
    #[schema(minimum = 1)]
    pub tick_cents: u64,
    /// Quantities are multiples of this many units.
    #[schema(minimum = 1)]
    pub lot_units: u64,
    /// Orders are priced within this many basis points of the reference price.
    #[schema(minimum = 1, maximum = 5000)]
    pub band_bps: u32,
    /// Fee per side, in basis points of the notional (rounded down to the cent).
    #[schema(maximum = 500)]
    pub fee_bps: u32,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            opens: NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default(),
            closes: NaiveTime::from_hms_opt(17, 0, 0).unwrap_or_default(),
            tick_cents: 1,
            lot_units: 1,
            band_bps: 1_000,
            fee_bps: 20,
        }
    }
}

/// What is wrong with a market's rules.
pub fn check_rules(rules: &Rules) -> Result<(), (&'static str, &'static str)> {
    if rules.opens >= rules.closes {
        return Err(("closes", "the session must close after it opens, on the same day"));
    }
    if rules.tick_cents == 0 || rules.tick_cents > 100_000 {
        return Err(("tick_cents", "1 to 100000 cents"));
    }
    if rules.lot_units == 0 || rules.lot_units > 1_000_000 {
        return Err(("lot_units", "1 to 1000000 units"));
    }
    if rules.band_bps == 0 || rules.band_bps > 5_000 {
        return Err(("band_bps", "1 to 5000 basis points"));
    }
    if rules.fee_bps > 500 {
        return Err(("fee_bps", "at most 500 basis points"));
    }
    Ok(())
}

impl Rules {
    /// The trading day whose session is open at `at`, if one is.
    pub fn session_at(&self, at: DateTime<Utc>) -> Option<NaiveDate> {
        let local = at.with_timezone(&singapore());
        let business = !matches!(local.weekday(), Weekday::Sat | Weekday::Sun);
        let time = local.time();
        (business && time >= self.opens && time < self.closes).then(|| local.date_naive())
    }

    /// When the session of `day` closes.
    pub fn close_of(&self, day: NaiveDate) -> DateTime<Utc> {
        let local = day.and_time(self.closes);
        (local - chrono::TimeDelta::hours(8)).and_utc()
    }

    /// The lowest and highest prices allowed around `reference`: whole ticks, inside the band.
    pub fn band(&self, reference: u64) -> (u64, u64) {
        let reference = u128::from(reference);
        let (bps, tick) = (u128::from(self.band_bps), u128::from(self.tick_cents));
        let low = (reference * (10_000 - bps.min(10_000))).div_ceil(10_000);
        let high = reference * (10_000 + bps) / 10_000;
        let low = low.div_ceil(tick).max(1) * tick;
        let high = high / tick * tick;
        (u64::try_from(low).unwrap_or(u64::MAX), u64::try_from(high).unwrap_or(u64::MAX))
    }

    /// The fee on `notional` cents, per side.
    pub fn fee(&self, notional: u64) -> u64 {
        fee(notional, self.fee_bps)
    }

    /// What a buy of `quantity` at `price` holds: the notional and the most it can pay in fees.
    pub fn hold_for(&self, price: u64, quantity: u64) -> u64 {
        let notional = price * quantity;
        notional + self.fee(notional)
    }
}

/// `notional` × `bps` / 10,000, rounded down.
pub fn fee(notional: u64, bps: u32) -> u64 {
    u64::try_from(u128::from(notional) * u128::from(bps) / 10_000).unwrap_or(u64::MAX)
}

/// Why an order is refused: the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub field: &'static str,
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> Refused {
    Refused { field, reason: reason.into() }
}

/// The largest quantity one order may name.
pub const MAX_QUANTITY: u64 = 10_000_000;

/// Checks an order's price and quantity against the rules and the band around `reference`.
pub fn check_order(rules: &Rules, reference: u64, price: u64, quantity: u64) -> Result<(), Refused> {
    if quantity == 0 || quantity > MAX_QUANTITY {
        return Err(refuse("quantity", format!("1 to {MAX_QUANTITY} units")));
    }
    if !quantity.is_multiple_of(rules.lot_units) {
        return Err(refuse("quantity", format!("a multiple of the lot size, {} units", rules.lot_units)));
    }
    if price == 0 || !price.is_multiple_of(rules.tick_cents) {
        return Err(refuse("price", format!("a multiple of the tick size, {} cents", rules.tick_cents)));
    }
    let (low, high) = rules.band(reference);
    if price < low || price > high {
        return Err(refuse(
            "price",
            format!(
                "within the price band, {} to {}",
                super::money::format_cents(low.into()),
                super::money::format_cents(high.into())
            ),
        ));
    }
    if u128::from(price) * u128::from(quantity) * 2 > u128::from(MAX_CENTS) {
        return Err(refuse("quantity", "the order's value is too large"));
    }
    Ok(())
}

/// An order resting in the book.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resting {
    pub id: String,
    pub owner: String,
    pub side: Side,
    pub price: u64,
    pub remaining: u64,
    /// Arrival at the book: time priority within a price.
    pub seq: u64,
}

/// An order arriving at the book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incoming {
    pub id: String,
    pub owner: String,
    pub side: Side,
    pub price: u64,
    pub quantity: u64,
}

/// A match between the incoming order and one resting order, at the resting order's price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fill {
    pub maker: String,
    pub maker_owner: String,
    pub price: u64,
    pub quantity: u64,
    /// What the resting order has left after this fill.
    pub maker_remaining: u64,
}

/// What the book did with an incoming order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub fills: Vec<Fill>,
    /// The incoming owner's own resting orders it would have matched: cancelled.
    pub self_trade_cancelled: Vec<Resting>,
    /// What is left of the incoming order (resting now, if more than zero).
    pub remaining: u64,
}

/// One price level: its price, the total resting quantity and the number of orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Level {
    pub price: u64,
    pub quantity: u64,
    pub orders: u64,
}

/// Bids and offers of one asset, each price a queue in time order.
#[derive(Debug, Clone, Default)]
pub struct Book {
    bids: BTreeMap<Reverse<u64>, VecDeque<Resting>>,
    asks: BTreeMap<u64, VecDeque<Resting>>,
    index: HashMap<String, (Side, u64)>,
}

impl Book {
    pub fn best_bid(&self) -> Option<u64> {
        self.bids.keys().next().map(|r| r.0)
    }

    pub fn best_ask(&self) -> Option<u64> {
        self.asks.keys().next().copied()
    }

    /// A buy at or above the best offer (or the reverse) would have matched.
    pub fn crossed(&self) -> bool {
        matches!((self.best_bid(), self.best_ask()), (Some(b), Some(a)) if b >= a)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.index.contains_key(id)
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Puts an order in the book behind those of its price (used to rebuild a book in
    /// `seq` order, and by [`Book::submit`]).
    pub fn rest(&mut self, order: Resting) {
        self.index.insert(order.id.clone(), (order.side, order.price));
        match order.side {
            Side::Buy => self.bids.entry(Reverse(order.price)).or_default().push_back(order),
            Side::Sell => self.asks.entry(order.price).or_default().push_back(order),
        }
    }

    /// Takes an order out of the book.
    pub fn remove(&mut self, id: &str) -> Option<Resting> {
        let (side, price) = self.index.remove(id)?;
        let take = |queue: &mut VecDeque<Resting>| {
            let at = queue.iter().position(|o| o.id == id)?;
            queue.remove(at)
        };
        match side {
            Side::Buy => {
                let queue = self.bids.get_mut(&Reverse(price))?;
                let order = take(queue);
                if queue.is_empty() {
                    self.bids.remove(&Reverse(price));
                }
                order
            }
            Side::Sell => {
                let queue = self.asks.get_mut(&price)?;
                let order = take(queue);
                if queue.is_empty() {
                    self.asks.remove(&price);
                }
                order
            }
        }
    }

    /// Every resting order, best first on each side (bids, then asks).
    pub fn orders(&self) -> impl Iterator<Item = &Resting> {
        self.bids.values().flatten().chain(self.asks.values().flatten())
    }

    /// Up to `levels` price levels per side, best first.
    pub fn depth(&self, levels: usize) -> (Vec<Level>, Vec<Level>) {
        let level = |price: u64, queue: &VecDeque<Resting>| Level {
            price,
            quantity: queue.iter().map(|o| o.remaining).sum(),
            orders: queue.len() as u64,
        };
        let bids = self.bids.iter().take(levels).map(|(p, q)| level(p.0, q)).collect();
        let asks = self.asks.iter().take(levels).map(|(p, q)| level(*p, q)).collect();
        (bids, asks)
    }

    /// The best resting order on `side`, if its price is acceptable to a limit of `limit`.
    fn best_against(&mut self, side: Side, limit: u64) -> Option<&mut VecDeque<Resting>> {
        match side {
            Side::Buy => self.asks.first_entry().filter(|e| *e.key() <= limit).map(|e| e.into_mut()),
            Side::Sell => self.bids.first_entry().filter(|e| e.key().0 >= limit).map(|e| e.into_mut()),
        }
    }

    fn drop_empty_best(&mut self, side: Side) {
        match side {
            Side::Buy => {
                if self.asks.first_entry().is_some_and(|e| e.get().is_empty()) {
                    self.asks.pop_first();
                }
            }
            Side::Sell => {
                if self.bids.first_entry().is_some_and(|e| e.get().is_empty()) {
                    self.bids.pop_first();
                }
            }
        }
    }

    /// Matches `incoming` against the book by price, then time, at the resting orders'
    /// prices; what is left rests with `seq`. A resting order of the same owner that
    /// would match is cancelled instead (self-trade prevention) and matching goes on.
    pub fn submit(&mut self, incoming: &Incoming, seq: u64) -> Outcome {
        let mut outcome = Outcome { remaining: incoming.quantity, ..Outcome::default() };
        while outcome.remaining > 0 {
            let Some(queue) = self.best_against(incoming.side, incoming.price) else { break };
            let Some(front) = queue.front_mut() else { break };
            if front.owner == incoming.owner {
                if let Some(own) = queue.pop_front() {
                    self.index.remove(&own.id);
                    outcome.self_trade_cancelled.push(own);
                }
            } else {
                let quantity = outcome.remaining.min(front.remaining);
                front.remaining -= quantity;
                outcome.remaining -= quantity;
                outcome.fills.push(Fill {
                    maker: front.id.clone(),
                    maker_owner: front.owner.clone(),
                    price: front.price,
                    quantity,
                    maker_remaining: front.remaining,
                });
                if front.remaining == 0
                    && let Some(done) = queue.pop_front()
                {
                    self.index.remove(&done.id);
                }
            }
            self.drop_empty_best(incoming.side);
        }
        if outcome.remaining > 0 {
            self.rest(Resting {
                id: incoming.id.clone(),
                owner: incoming.owner.clone(),
                side: incoming.side,
                price: incoming.price,
                remaining: outcome.remaining,
                seq,
            });
        }
        outcome
    }
}

/// A trading day's prices and volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayStats {
    pub day: NaiveDate,
    pub open: u64,
    pub high: u64,
    pub low: u64,
    /// The last trade's price (the close once the session closed).
    pub close: u64,
    /// Units traded.
    pub volume: u64,
    /// Cents traded.
    pub turnover: u64,
    pub trades: u64,
}

impl DayStats {
    /// The stats after a trade of `quantity` at `price` on `day`.
    pub fn after(previous: Option<&Self>, day: NaiveDate, price: u64, quantity: u64) -> Self {
        match previous.filter(|s| s.day == day) {
            Some(s) => Self {
                day,
                open: s.open,
                high: s.high.max(price),
                low: s.low.min(price),
                close: price,
                volume: s.volume + quantity,
                turnover: s.turnover + price * quantity,
                trades: s.trades + 1,
            },
            None => Self {
                day,
                open: price,
                high: price,
                low: price,
                close: price,
                volume: quantity,
                turnover: price * quantity,
                trades: 1,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn rules() -> Rules {
        Rules { tick_cents: 5, lot_units: 10, band_bps: 1_000, fee_bps: 25, ..Rules::default() }
    }

    #[test]
    fn the_band_is_whole_ticks_within_the_basis_points_of_the_reference() {
        // 10% around 10.00: 9.00 to 11.00.
        assert_eq!(rules().band(1_000), (900, 1_100));
        // 10% around 10.03 is 9.027 to 11.033: inside, in ticks of 5, 9.05 to 11.00.
        assert_eq!(rules().band(1_003), (905, 1_100));
        assert_eq!(check_order(&rules(), 1_000, 1_100, 10), Ok(()));
        assert_eq!(check_order(&rules(), 1_000, 1_105, 10).unwrap_err().field, "price");
        assert_eq!(check_order(&rules(), 1_000, 895, 10).unwrap_err().field, "price");
        assert_eq!(check_order(&rules(), 1_000, 903, 10).unwrap_err().field, "price", "not a tick");
        assert_eq!(check_order(&rules(), 1_000, 1_000, 15).unwrap_err().field, "quantity", "not a lot");
        assert_eq!(check_order(&rules(), 1_000, 1_000, 0).unwrap_err().field, "quantity");
    }

    #[test]
    fn sessions_are_singapore_business_hours() {
        let r = Rules::default();
        // Tuesday 2026-12-01 09:00 SGT is 01:00 UTC.
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert_eq!(r.session_at(at("2026-12-01T00:59:59Z")), None);
        assert_eq!(r.session_at(at("2026-12-01T01:00:00Z")), NaiveDate::from_ymd_opt(2026, 12, 1));
        assert_eq!(r.session_at(at("2026-12-01T08:59:59Z")), NaiveDate::from_ymd_opt(2026, 12, 1));
        assert_eq!(r.session_at(at("2026-12-01T09:00:00Z")), None, "17:00 closes");
        assert_eq!(r.session_at(at("2026-12-05T03:00:00Z")), None, "a Saturday");
        assert_eq!(r.close_of(NaiveDate::from_ymd_opt(2026, 12, 1).unwrap()), at("2026-12-01T09:00:00Z"));
    }

    #[test]
    fn fees_round_down_so_a_buy_orders_hold_covers_the_fees_of_its_fills() {
        let r = rules();
        assert_eq!(r.fee(10_000), 25);
        assert_eq!(r.fee(399), 0);
        assert_eq!(r.hold_for(1_000, 30), 30_000 + 75);
    }

    fn order(id: &str, owner: &str, side: Side, price: u64, quantity: u64) -> Incoming {
        Incoming { id: id.into(), owner: owner.into(), side, price, quantity }
    }

    #[test]
    fn price_then_time_at_the_resting_price_with_partial_fills() {
        let mut book = Book::default();
        book.submit(&order("a1", "ann", Side::Sell, 1_010, 10), 1);
        book.submit(&order("a2", "bob", Side::Sell, 1_000, 10), 2);
        book.submit(&order("a3", "cat", Side::Sell, 1_000, 10), 3);
        let outcome = book.submit(&order("b1", "dan", Side::Buy, 1_010, 25), 4);
        let fills: Vec<_> = outcome.fills.iter().map(|f| (f.maker.as_str(), f.price, f.quantity)).collect();
        assert_eq!(fills, [("a2", 1_000, 10), ("a3", 1_000, 10), ("a1", 1_010, 5)]);
        assert_eq!(outcome.remaining, 0);
        assert_eq!(book.depth(5).1, [Level { price: 1_010, quantity: 5, orders: 1 }]);
        assert!(!book.crossed());
    }

    #[test]
    fn an_incoming_order_cancels_its_owners_resting_order_instead_of_trading_with_it() {
        let mut book = Book::default();
        book.submit(&order("s1", "ann", Side::Sell, 1_000, 10), 1);
        book.submit(&order("s2", "bob", Side::Sell, 1_000, 10), 2);
        let outcome = book.submit(&order("b1", "ann", Side::Buy, 1_000, 10), 3);
        assert_eq!(outcome.self_trade_cancelled.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), ["s1"]);
        assert_eq!(outcome.fills.len(), 1);
        assert_eq!(outcome.fills[0].maker, "s2");
        assert!(book.is_empty());
    }

    /// A naive book: every resting order in a list, the best found by sorting each time.
    #[derive(Default)]
    struct Naive {
        resting: Vec<Resting>,
    }

    impl Naive {
        fn submit(&mut self, o: &Incoming, seq: u64) -> Outcome {
            let mut outcome = Outcome { remaining: o.quantity, ..Outcome::default() };
            loop {
                let best = self
                    .resting
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.side != o.side)
                    .filter(|(_, r)| if o.side == Side::Buy { r.price <= o.price } else { r.price >= o.price })
                    .min_by_key(|(_, r)| (if o.side == Side::Buy { r.price } else { u64::MAX - r.price }, r.seq))
                    .map(|(i, _)| i);
                let Some(i) = best.filter(|_| outcome.remaining > 0) else { break };
                if self.resting[i].owner == o.owner {
                    outcome.self_trade_cancelled.push(self.resting.remove(i));
                    continue;
                }
                let r = &mut self.resting[i];
                let q = r.remaining.min(outcome.remaining);
                r.remaining -= q;
                outcome.remaining -= q;
                outcome.fills.push(Fill {
                    maker: r.id.clone(),
                    maker_owner: r.owner.clone(),
                    price: r.price,
                    quantity: q,
                    maker_remaining: r.remaining,
                });
                if r.remaining == 0 {
                    self.resting.remove(i);
                }
            }
            if outcome.remaining > 0 {
                self.resting.push(Resting {
                    id: o.id.clone(),
                    owner: o.owner.clone(),
                    side: o.side,
                    price: o.price,
                    remaining: outcome.remaining,
                    seq,
                });
            }
            outcome
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Place { owner: u8, buy: bool, ticks: u64, quantity: u64 },
        Cancel(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..5, any::<bool>(), 95u64..=105, 1u64..=20)
                .prop_map(|(owner, buy, ticks, quantity)| Op::Place { owner, buy, ticks, quantity }),
            1 => any::<usize>().prop_map(Op::Cancel),
        ]
    }

    proptest! {
        /// Over random streams of places and cancels: the book matches exactly as the naive
        /// price-time book does (the same fills, prices and cancellations), is never crossed
        /// after a step, and every unit placed is filled twice over (both sides), resting,
        /// cancelled or self-trade cancelled.
        #[test]
        fn matches_as_price_time_priority_says_and_never_rests_crossed(ops in prop::collection::vec(op(), 1..200)) {
            let (mut book, mut naive) = (Book::default(), Naive::default());
            let (mut placed, mut filled, mut cancelled) = (0u64, 0u64, 0u64);
            let mut ids = Vec::new();
            for (seq, op) in (1u64..).zip(ops) {
                match op {
                    Op::Place { owner, buy, ticks, quantity } => {
                        let side = if buy { Side::Buy } else { Side::Sell };
                        let incoming = order(&format!("o{seq}"), &format!("u{owner}"), side, ticks * 10, quantity);
                        let got = book.submit(&incoming, seq);
                        prop_assert_eq!(&got, &naive.submit(&incoming, seq));
                        placed += quantity;
                        filled += 2 * got.fills.iter().map(|f| f.quantity).sum::<u64>();
                        cancelled += got.self_trade_cancelled.iter().map(|o| o.remaining).sum::<u64>();
                        ids.push(incoming.id);
                    }
                    Op::Cancel(pick) if !ids.is_empty() => {
                        let id = &ids[pick % ids.len()];
                        let removed = book.remove(id);
                        let at = naive.resting.iter().position(|r| &r.id == id);
                        prop_assert_eq!(removed.clone(), at.map(|i| naive.resting.remove(i)));
                        cancelled += removed.map_or(0, |r| r.remaining);
                    }
                    Op::Cancel(_) => {}
                }
                prop_assert!(!book.crossed(), "crossed after step {}", seq);
                let resting: u64 = book.orders().map(|o| o.remaining).sum();
                prop_assert_eq!(placed, filled + resting + cancelled);
                prop_assert_eq!(book.len(), naive.resting.len());
            }
        }
    }
}
