//! The secondary market: `orders` random limit orders on one asset through the embedded
//! platform (durable store), placed `concurrency` at a time by `investors` investors while
//! the matcher consumes the `matching` queue as the local runner does (with `--phased`,
//! the matcher starts once every order is placed, to measure each side alone). Orders per
//! second count until the matcher has booked, traded or ended every order; the latency is
//! order-to-acknowledgement (checked, locked or held, recorded, queued).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use shared::adapters::clock::ManualClock;
use shared::app::consumer::pump_once;
use shared::app::trading::{Market, Placement};
use shared::domain::ledger::{Account, Kind, SGD, Transfer, codes};
use shared::domain::market::{Rules, Side};
use shared::ports::queue::QueueName;
use shared::ports::store::Condition;

use super::notices::percentile;
use super::*;

const ASSET: &str = "DABS-bench";
/// 10.00 a unit: orders are priced 9.80 to 10.20 in ticks of 0.01.
const REFERENCE: u64 = 1_000;

/// A small fast generator (xorshift64*): the same seed, the same orders.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Investors with cash and units, and the asset's market, written straight to the ledger.
async fn seed(platform: &shared::Platform, investors: usize) -> anyhow::Result<Vec<String>> {
    let ledger = platform.ledger();
    let (bank, issuance) = (Account::of(Kind::Omnibus, "bank", SGD), Account::of(Kind::Issuance, ASSET, ASSET));
    ledger.open(bank.clone()).await?;
    ledger.open(issuance.clone()).await?;
    let mut users = Vec::with_capacity(investors);
    for n in 0..investors {
        let user = format!("usr_bench_{n:06}");
        let (deposit, holding) = (Account::of(Kind::Deposit, &user, SGD), Account::of(Kind::Holding, &user, ASSET));
        ledger.open(deposit.clone()).await?;
        ledger.open(holding.clone()).await?;
        let fund = Transfer::single(format!("fund:{n}"), &bank.id, &deposit.id, 100_000_000, SGD, codes::DEPOSIT);
        let issue =
            Transfer::single(format!("issue:{n}"), &issuance.id, &holding.id, 1_000_000, ASSET, codes::ISSUANCE);
        ledger.submit_linked(&[fund, issue]).await?;
        users.push(user);
    }
    let market = Market::opened(ASSET, "bench", "Bench Tower", Rules::default(), REFERENCE, platform.clock.now());
    platform.store.put(market.item()?, Condition::NotExists).await?;
    Ok(users)
}

pub async fn trading_bench(
    mut platform: shared::Platform,
    orders: usize,
    investors: usize,
    concurrency: usize,
    phased: bool,
) -> anyhow::Result<()> {
    // Wednesday 11:00 in Singapore: in session, whatever the day the bench runs.
    platform.clock = Arc::new(ManualClock::at("2026-11-25T03:00:00Z".parse()?));
    let users = Arc::new(seed(&platform, investors).await?);
    let trading = Arc::new(platform.trading());
    let handler = ::matching::handler(&platform);
    let placing_done = Arc::new(AtomicBool::new(false));
    let matcher = {
        let (queue, done) = (platform.queue.clone(), placing_done.clone());
        tokio::spawn(async move {
            while phased && !done.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            loop {
                let took =
                    pump_once(queue.as_ref(), QueueName::Matching, handler.as_ref(), Duration::from_millis(5)).await?;
                if took == 0 && done.load(Ordering::SeqCst) {
                    return anyhow::Ok(());
                }
            }
        })
    };
    let (next, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(orders)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let (users, next, refused, latencies, trading) =
            (users.clone(), next.clone(), refused.clone(), latencies.clone(), trading.clone());
        tasks.spawn(async move {
            let mut dice = Dice(0x9E37_79B9_7F4A_7C15 ^ (worker as u64 + 1));
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= orders {
                    latencies.lock().unwrap_or_else(|p| p.into_inner()).extend(mine);
                    return anyhow::Ok(());
                }
                let user = &users[dice.below(users.len() as u64) as usize];
                let side = if dice.below(2) == 0 { Side::Buy } else { Side::Sell };
                // Buyers a little below the reference, sellers a little above: about a
                // third of the orders cross.
                let offset = dice.below(21) as i64 - 10 + if side == Side::Buy { -3 } else { 3 };
                let placement = Placement {
                    side,
                    price: u64::try_from(REFERENCE as i64 + offset).unwrap_or(REFERENCE),
                    quantity: 1 + dice.below(100),
                };
                let began = Instant::now();
                match trading.place(user, ASSET, &format!("bench-{i}"), &placement).await {
                    Ok(_) => mine.push(began.elapsed().as_secs_f64() * 1000.0),
                    Err(shared::app::trading::TradingError::Refused(_)) => {
                        refused.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let placing = started.elapsed().as_secs_f64();
    placing_done.store(true, Ordering::SeqCst);
    matcher.await??;
    let elapsed = started.elapsed().as_secs_f64();
    let mut sorted = latencies.lock().unwrap_or_else(|p| p.into_inner()).clone();
    sorted.sort_by(f64::total_cmp);
    let (market, _) = trading.market(ASSET).await?;
    let stats = market.stats.clone().unwrap_or(shared::domain::market::DayStats {
        day: shared::domain::market::trading_day(platform.clock.now()),
        open: 0,
        high: 0,
        low: 0,
        close: 0,
        volume: 0,
        turnover: 0,
        trades: 0,
    });
    println!(
        "{}",
        json!({
            "bench": "trading", "orders": orders, "investors": investors, "concurrency": concurrency,
            "accepted": sorted.len(), "refused": refused.load(Ordering::SeqCst),
            "trades": stats.trades, "units_traded": stats.volume,
            "phased": phased,
            "placing_s": (placing * 1000.0).round() / 1000.0,
            "placed_per_s": (orders as f64 / placing).round(),
            "elapsed_s": (elapsed * 1000.0).round() / 1000.0,
            "orders_per_s": (orders as f64 / elapsed).round(),
            "matched_per_s": if phased { (orders as f64 / (elapsed - placing)).round() } else { (orders as f64 / elapsed).round() },
            "ack_p50_ms": percentile(&sorted, 0.5), "ack_p99_ms": percentile(&sorted, 0.99),
            "book_bids": market.bids.len(), "book_asks": market.asks.len(),
            "peak_rss_mb": (peak_rss_mb() * 10.0).round() / 10.0,
        })
    );
    Ok(())
}
