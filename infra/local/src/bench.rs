//! Benchmarks anyone can run: `cargo run --release -p local -- bench <what>`. Each prints
//! one JSON line per measurement; `docs/BENCHMARKS.md` records the numbers.

use std::sync::Arc;
use std::time::Instant;

use clap::{Subcommand, ValueEnum};
use serde_json::json;
use shared::adapters::clock::SystemClock;
use shared::adapters::embedded::EmbeddedStore;
use shared::ports::Store;
use shared::ports::store::{Condition, Item, Key, Query, Write};

mod allocation;
mod auth;
mod http_setup;
mod ledger;
mod myinfo;
mod notices;
pub mod reconcile;
mod store;
mod subscriptions;
mod trading;

pub use allocation::allocation_bench;

#[derive(Subcommand)]
pub enum Bench {
    /// Reconciliation: one run over three books of `accounts` deposit accounts that agree
    /// except for `inject` differences, each one break.
    Reconcile {
        #[arg(long, default_value_t = 100_000)]
        accounts: usize,
        #[arg(long, default_value_t = 0)]
        inject: usize,
    },
    /// The store: conditional single puts, gets, 100-operation transactions, 1,000-item queries.
    Store {
        #[arg(long, value_enum, default_value = "embedded")]
        backend: StoreBackend,
        /// Single-item writes (and reads) in the concurrent cases.
        #[arg(long, default_value_t = 20_000)]
        ops: usize,
        /// Tasks issuing requests at once in the concurrent cases.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// Auth: login (Argon2id), refresh rotations, access-token verification.
    Auth {
        #[arg(long, value_enum, default_value = "embedded")]
        backend: StoreBackend,
        /// Refresh rotations in the sequential case (and per family in the concurrent one).
        #[arg(long, default_value_t = 2_000)]
        refreshes: usize,
        /// Families refreshed at once in the concurrent case.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// The ledger: single transfers (sequential and concurrent, spread over many accounts
    /// or all into one escrow) and linked batches.
    Ledger {
        #[arg(long, value_enum, default_value = "embedded")]
        backend: StoreBackend,
        /// Transfers per case.
        #[arg(long, default_value_t = 10_000)]
        transfers: usize,
        /// Investor accounts the transfers are spread over.
        #[arg(long, default_value_t = 1_000)]
        accounts: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Subscriptions: placing them (a hold each, all into one deal's escrow), and the
    /// operators' totals over a book of `book` subscriptions.
    Subscriptions {
        #[arg(long, value_enum, default_value = "embedded")]
        backend: StoreBackend,
        /// Subscriptions placed through the use case.
        #[arg(long, default_value_t = 5_000)]
        placed: usize,
        /// Size of the book the totals read.
        #[arg(long, default_value_t = 100_000)]
        book: usize,
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
    },
    /// Allocation (and with `--settle`, settlement): a fresh platform, a deal of
    /// `subscriptions` live subscriptions written straight to its book, closed; answers
    /// how long the close took to reach a complete allocation (then issuance), with the
    /// run's result and the process's peak RSS.
    Allocation {
        #[arg(long, value_enum, default_value = "embedded")]
        backend: StoreBackend,
        #[arg(long, default_value_t = 100_000)]
        subscriptions: usize,
        /// Units on offer; by default a fifth of what the book requests (oversubscribed).
        #[arg(long)]
        supply: Option<u64>,
        /// Also place each subscription's hold, and run settlement to issuance.
        #[arg(long)]
        settle: bool,
        /// Allocation messages handled at once (as Lambda's concurrency would).
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
    /// Prepares a data directory for the HTTP subscription benchmark under wrk
    /// (`infra/bench/subscribe.lua`): open deals, and accredited investors with money and
    /// access tokens (valid for ten minutes) written to `--out`.
    /// `count` notices of each kind written, relayed, rendered and sent; each kind's PDF
    /// rendered `count` times.
    Notices {
        #[arg(long, default_value_t = 1_000)]
        count: usize,
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
    /// `flows` investors through Myinfo onboarding against the Singpass simulator
    /// (`concurrency` at a time) to the opt-in; then the re-wrap of every person key after
    /// a key rotation.
    Myinfo {
        #[arg(long, default_value_t = 1_000)]
        flows: usize,
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// `orders` random limit orders on one asset (`investors` investors, `concurrency` at
    /// a time) through the embedded platform while the matcher runs.
    Trading {
        #[arg(long, default_value_t = 100_000)]
        orders: usize,
        #[arg(long, default_value_t = 1_000)]
        investors: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Place every order first, then match them (each side measured alone).
        #[arg(long)]
        phased: bool,
    },
    /// The monthly statement run over `investors` investors with a deposit each.
    Statements {
        #[arg(long, default_value_t = 10_000)]
        investors: usize,
        #[arg(long, default_value_t = 4)]
        workers: usize,
    },
    HttpSetup {
        #[arg(long)]
        data_dir: std::path::PathBuf,
        #[arg(long, default_value_t = 1_000)]
        investors: usize,
        #[arg(long, default_value_t = 50)]
        deals: usize,
        #[arg(long, default_value = "bench-setup.json")]
        out: std::path::PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum StoreBackend {
    /// The embedded store in a temporary folder, durable commits.
    Embedded,
    /// DynamoDB at `DABS_AWS_ENDPOINT` (the local emulator), a fresh table (and, for the
    /// allocation bench, fresh SQS queues there too).
    Dynamodb,
}

pub async fn run(bench: Bench) -> anyhow::Result<()> {
    let folder = tempfile::tempdir()?;
    match bench {
        Bench::Store { backend, ops, concurrency } => {
            let (name, store) = open_store(backend, folder.path()).await?;
            store::store_bench(name, store, ops, concurrency).await
        }
        Bench::Auth { backend, refreshes, concurrency } => {
            let (name, store) = open_store(backend, folder.path()).await?;
            let mut platform = shared::Platform::embedded(folder.path())?;
            platform.store = store;
            auth::auth_bench(name, &platform, refreshes, concurrency).await
        }
        Bench::Subscriptions { backend, placed, book, concurrency } => {
            let (name, store) = open_store(backend, folder.path()).await?;
            let mut platform = shared::Platform::embedded(folder.path())?;
            platform.store = store;
            subscriptions::subscriptions_bench(name, &platform, placed, book, concurrency).await
        }
        Bench::Allocation { backend, subscriptions, supply, settle, workers } => {
            let (name, store) = open_store(backend, folder.path()).await?;
            let mut platform = shared::Platform::embedded(folder.path())?;
            platform.store = store;
            if let StoreBackend::Dynamodb = backend {
                platform.queue = emulator_queues().await?;
            }
            allocation_bench(name, &platform, subscriptions, supply, settle, workers.max(1)).await.map(|_| ())
        }
        Bench::Notices { count, workers } => {
            notices::notices_bench(&shared::Platform::embedded(folder.path())?, count.max(1), workers.max(1)).await
        }
        Bench::Myinfo { flows, concurrency } => {
            myinfo::myinfo_bench(&shared::Platform::embedded(folder.path())?, flows.max(1), concurrency.max(1)).await
        }
        Bench::Trading { orders, investors, concurrency, phased } => {
            let platform = shared::Platform::embedded(folder.path())?;
            trading::trading_bench(platform, orders.max(1), investors.max(2), concurrency.max(1), phased).await
        }
        Bench::Statements { investors, workers } => {
            notices::statements_bench(&shared::Platform::embedded(folder.path())?, investors.max(1), workers.max(1))
                .await
        }
        Bench::HttpSetup { data_dir, investors, deals, out } => {
            http_setup::http_setup(&shared::Platform::embedded(&data_dir)?, investors, deals, &out).await
        }
        Bench::Reconcile { accounts, inject } => {
            let mut platform = shared::Platform::embedded(folder.path())?;
            reconcile::reconcile_bench(&mut platform, folder.path(), accounts, inject).await.map(|_| ())
        }
        Bench::Ledger { backend, transfers, accounts, concurrency } => {
            let (name, store) = open_store(backend, folder.path()).await?;
            ledger::ledger_bench(name, store, transfers, accounts.max(2), concurrency).await
        }
    }
}

/// A durable embedded store in `folder`, or a fresh table in the emulator.
async fn open_store(backend: StoreBackend, folder: &std::path::Path) -> anyhow::Result<(&'static str, Arc<dyn Store>)> {
    Ok(match backend {
        StoreBackend::Embedded => {
            ("embedded", Arc::new(EmbeddedStore::open(&folder.join("bench-store"), Arc::new(SystemClock))?))
        }
        StoreBackend::Dynamodb => {
            let endpoint = std::env::var("DABS_AWS_ENDPOINT")
                .map_err(|_| anyhow::anyhow!("set DABS_AWS_ENDPOINT to the emulator (./infra/test.sh prints it)"))?;
            let config = shared::adapters::aws::emulator_config(&endpoint).await?;
            let client = aws_sdk_dynamodb::Client::new(&config);
            let table = format!("bench-{}", ulid::Ulid::new().to_string().to_lowercase());
            shared::adapters::aws::DynamoStore::create_table(&client, &table).await?;
            ("dynamodb", Arc::new(shared::adapters::aws::DynamoStore::new(client, table, Arc::new(SystemClock))))
        }
    })
}

/// Fresh SQS queues (with dead-letter queues) in the emulator at `DABS_AWS_ENDPOINT`.
async fn emulator_queues() -> anyhow::Result<Arc<dyn shared::ports::Queue>> {
    use shared::adapters::aws::SqsQueue;
    use shared::ports::queue::QueueName;
    let endpoint = std::env::var("DABS_AWS_ENDPOINT")?;
    let client = aws_sdk_sqs::Client::new(&shared::adapters::aws::emulator_config(&endpoint).await?);
    let run = ulid::Ulid::new().to_string().to_lowercase();
    let mut urls = std::collections::HashMap::new();
    for queue in QueueName::ALL {
        let name = format!("bench-{run}-{queue}");
        let created =
            SqsQueue::create(&client, &name, shared::platform::MAX_RECEIVES, std::time::Duration::from_secs(60))
                .await?;
        urls.insert(queue, created);
    }
    Ok(Arc::new(SqsQueue::new(client, urls)))
}

/// Peak resident memory of this process so far, in MiB (Linux `VmHWM`).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Prints one measurement: `ops` operations of `case` since `started`.
fn report(bench: &str, backend: &str, case: &str, concurrency: usize, ops: usize, started: Instant) {
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "bench": bench, "backend": backend, "case": case, "concurrency": concurrency, "ops": ops,
            "elapsed_s": (elapsed * 1000.0).round() / 1000.0,
            "ops_per_s": (ops as f64 / elapsed).round(),
            "us_per_op": (elapsed * 1e6 / ops as f64).round(),
            "peak_rss_mb": (peak_rss_mb() * 10.0).round() / 10.0,
        })
    );
}

fn item(pk: &str, sk: String) -> anyhow::Result<Item> {
    Ok(Item::new(Key::new(pk, sk), &json!({ "amount": "100.00", "owner": "investor" }))?)
}

/// Runs `count` calls of `op(i)` from `concurrency` tasks.
async fn concurrently<F, Fut>(count: usize, concurrency: usize, op: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let op = Arc::new(op);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let op = op.clone();
        tasks.spawn(async move {
            let mut i = worker;
            while i < count {
                op(i).await?;
                i += concurrency;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    Ok(())
}

/// A deal in `state` with its escrow account, written directly (no issuer, no approval:
/// benches and tests); open deals' window runs
/// for another week, others' closed a day ago.
pub async fn write_deal(
    platform: &shared::Platform,
    id: &str,
    state: shared::domain::deal::DealState,
    supply: u64,
    unit_price: u64,
) -> anyhow::Result<shared::app::deals::Deal> {
    use chrono::TimeDelta;
    use shared::app::deals::{Deal, deal_item};

    use shared::domain::deal::{Building, BuildingType, DealState, Terms};
    use shared::domain::ledger::{Account, Kind};

    let now = platform.clock.now();
    let (opens_at, closes_at) = match state {
        DealState::Open => (now - TimeDelta::hours(1), now + TimeDelta::days(7)),
        _ => (now - TimeDelta::days(8), now - TimeDelta::days(1)),
    };
    let escrow = Account::of(Kind::Escrow, id, "SGD");
    let building =
        Building { name: "Bench".into(), address: "1 Bench Rd".into(), kind: BuildingType::Office, valuation: 1 };
    let deal = Deal {
        id: id.into(),
        issuer_id: "bench-issuer".into(),
        terms: Terms {
            building,
            supply,
            unit_price,
            min_units: 1,
            max_units: 1_000,
            opens_at,
            closes_at,
            documents: vec![],
        },
        state,
        asset: format!("DABS-{id}"),
        escrow_account: escrow.id.clone(),
        created_by: "bench".into(),
        created_at: now,
        updated_at: now,
        holds_released: false,
    };
    platform.ledger().open(escrow).await?;
    platform.store.put(deal_item(&deal)?, Condition::NotExists).await?;
    Ok(deal)
}
