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

pub mod reconcile;

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
    /// redb in a file in a temporary folder, durable commits.
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
            store_bench(name, store, ops, concurrency).await
        }
        Bench::Auth { backend, refreshes, concurrency } => {
            let (name, store) = open_store(backend, folder.path()).await?;
            let mut platform = shared::Platform::embedded(folder.path())?;
            platform.store = store;
            auth_bench(name, &platform, refreshes, concurrency).await
        }
        Bench::Subscriptions { backend, placed, book, concurrency } => {
            let (name, store) = open_store(backend, folder.path()).await?;
            let mut platform = shared::Platform::embedded(folder.path())?;
            platform.store = store;
            subscriptions_bench(name, &platform, placed, book, concurrency).await
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
        Bench::HttpSetup { data_dir, investors, deals, out } => {
            http_setup(&shared::Platform::embedded(&data_dir)?, investors, deals, &out).await
        }
        Bench::Reconcile { accounts, inject } => {
            let mut platform = shared::Platform::embedded(folder.path())?;
            reconcile::reconcile_bench(&mut platform, folder.path(), accounts, inject).await.map(|_| ())
        }
        Bench::Ledger { backend, transfers, accounts, concurrency } => {
            let (name, store) = open_store(backend, folder.path()).await?;
            ledger_bench(name, store, transfers, accounts.max(2), concurrency).await
        }
    }
}

/// A durable embedded store in `folder`, or a fresh table in the emulator.
async fn open_store(backend: StoreBackend, folder: &std::path::Path) -> anyhow::Result<(&'static str, Arc<dyn Store>)> {
    Ok(match backend {
        StoreBackend::Embedded => {
            ("embedded", Arc::new(EmbeddedStore::open(&folder.join("bench.redb"), Arc::new(SystemClock))?))
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

async fn store_bench(backend: &str, store: Arc<dyn Store>, ops: usize, concurrency: usize) -> anyhow::Result<()> {
    // Sequential conditional puts: one request at a time, each its own commit.
    let sequential = ops.min(2_000);
    let started = Instant::now();
    for i in 0..sequential {
        store.put(item("SEQ", format!("{i:08}"))?, Condition::NotExists).await?;
    }
    report("store", backend, "put_if_absent", 1, sequential, started);

    let started = Instant::now();
    let s = store.clone();
    concurrently(ops, concurrency, move |i| {
        let s = s.clone();
        async move { Ok(s.put(item(&format!("P{}", i % 1024), format!("{i:08}"))?, Condition::NotExists).await?) }
    })
    .await?;
    report("store", backend, "put_if_absent", concurrency, ops, started);

    // Read-check-write: bump one version per item under a version condition.
    let started = Instant::now();
    let s = store.clone();
    concurrently(ops, concurrency, move |i| {
        let s = s.clone();
        async move {
            let key = Key::new(format!("P{}", i % 1024), format!("{i:08}"));
            let current = s.get(&key).await?.ok_or_else(|| anyhow::anyhow!("item {key} vanished"))?;
            Ok(s.put(item(&key.pk, key.sk.clone())?, Condition::VersionIs(current.version)).await?)
        }
    })
    .await?;
    report("store", backend, "get_then_put_if_version", concurrency, ops, started);

    let started = Instant::now();
    let s = store.clone();
    concurrently(ops, concurrency, move |i| {
        let s = s.clone();
        async move {
            s.get(&Key::new(format!("P{}", i % 1024), format!("{i:08}"))).await?;
            Ok(())
        }
    })
    .await?;
    report("store", backend, "get", concurrency, ops, started);

    let transactions = (ops / 1_000).clamp(20, 200);
    let started = Instant::now();
    for t in 0..transactions {
        let writes = (0..100)
            .map(|i| Ok(Write::put(item(&format!("TX{t}"), format!("{i:03}"))?, Condition::NotExists)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        store.transact(writes).await?;
    }
    report("store", backend, "transact_100_puts", 1, transactions, started);

    for chunk in 0..10 {
        let writes = (0..100)
            .map(|i| {
                Ok(Write::put(
                    item("Q", format!("{:05}", chunk * 100 + i))?.with_index("QI", format!("{i:05}")),
                    Condition::None,
                ))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        store.transact(writes).await?;
    }
    let queries = 50;
    let started = Instant::now();
    for _ in 0..queries {
        let page = store.query(&Query::partition("Q").limit(1_000)).await?;
        anyhow::ensure!(page.items.len() == 1_000, "expected 1,000 items, got {}", page.items.len());
    }
    report("store", backend, "query_1000_items", 1, queries, started);
    Ok(())
}

async fn auth_bench(
    backend: &str,
    platform: &shared::Platform,
    refreshes: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    use shared::app::accounts::Accounts;
    use shared::app::sessions::Sessions;
    use shared::domain::session::SessionPolicy;

    let accounts = Accounts::new(platform);
    let password = "benchmark passphrase 2026";
    accounts.create_verified("load-test@example.sg", password, &[], 1).await?;
    let sessions = Arc::new(Sessions::for_platform(platform, SessionPolicy::default()).await?);

    // The password check alone (Argon2id at OWASP parameters), for a known address and an
    // unknown one: they must cost the same, or timing would tell who has an account.
    let checks = 20;
    let started = Instant::now();
    for _ in 0..checks {
        accounts.check_password("load-test@example.sg", password).await?;
    }
    report("auth", backend, "password_check_known_email", 1, checks, started);
    let started = Instant::now();
    for _ in 0..checks {
        let refused = accounts.check_password("nobody-here@example.sg", password).await;
        anyhow::ensure!(refused.is_err(), "an unknown address logged in");
    }
    report("auth", backend, "password_check_unknown_email", 1, checks, started);

    // A whole login: the check and a new session with its tokens.
    let started = Instant::now();
    let mut user = None;
    for _ in 0..checks {
        let found = accounts.check_password("load-test@example.sg", password).await?;
        sessions.start(&found).await?;
        user = Some(found);
    }
    report("auth", backend, "login", 1, checks, started);
    let user = user.ok_or_else(|| anyhow::anyhow!("no login"))?;

    // Refresh: one family rotated again and again (read, conditional write, sign).
    let mut tokens = sessions.start(&user).await?;
    let started = Instant::now();
    for _ in 0..refreshes {
        tokens = sessions.refresh(&tokens.refresh_token).await?;
    }
    report("auth", backend, "refresh_rotation", 1, refreshes, started);

    // Many families rotating at once.
    let mut starts = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        starts.push(sessions.start(&user).await?);
    }
    let per_family = (refreshes / concurrency).max(1);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for start in starts {
        let sessions = sessions.clone();
        tasks.spawn(async move {
            let mut tokens = start;
            for _ in 0..per_family {
                tokens = sessions.refresh(&tokens.refresh_token).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    report("auth", backend, "refresh_rotation", concurrency, per_family * concurrency, started);

    // Access-token verification as every authenticated request does it: the ES256
    // signature, the claims, and the denylist read.
    let checks = refreshes * 5;
    let verifier = shared::app::verifier::TokenVerifier::for_platform(platform, SessionPolicy::default());
    let started = Instant::now();
    for _ in 0..checks {
        verifier.authenticate(&tokens.access_token).await?;
    }
    report("auth", backend, "access_token_verification", 1, checks, started);
    Ok(())
}

async fn ledger_bench(
    backend: &str,
    store: Arc<dyn Store>,
    transfers: usize,
    accounts: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    use shared::app::ledger::{Ledger, MAX_LINKED};
    use shared::domain::ledger::{Account, Kind, Transfer};

    let ledger = Arc::new(Ledger::new(store, Arc::new(SystemClock)));
    let (omnibus, escrow) = (Account::of(Kind::Omnibus, "bank", "SGD"), Account::of(Kind::Escrow, "bench-deal", "SGD"));
    let (omnibus_id, escrow_id) = (omnibus.id.clone(), escrow.id.clone());
    ledger.open(omnibus).await?;
    ledger.open(escrow).await?;
    let (omnibus, escrow) = (omnibus_id, escrow_id);
    let investor = |i: usize| Account::id_of(Kind::Deposit, &format!("inv{i}"), "SGD");
    for i in 0..accounts {
        ledger.open(Account::of(Kind::Deposit, &format!("inv{i}"), "SGD")).await?;
        ledger.submit(&Transfer::single(format!("fund{i}"), &omnibus, &investor(i), 1_000_000_000, "SGD", 1)).await?;
    }
    // Spread: investor i pays investor i+1, so concurrent transfers rarely share an account.
    let sequential = transfers.min(2_000);
    let started = Instant::now();
    for i in 0..sequential {
        let t =
            Transfer::single(format!("seq{i}"), &investor(i % accounts), &investor((i + 1) % accounts), 100, "SGD", 9);
        ledger.submit(&t).await?;
    }
    report("ledger", backend, "single_transfer", 1, sequential, started);

    let started = Instant::now();
    let l = ledger.clone();
    concurrently(transfers, concurrency, move |i| {
        let l = l.clone();
        async move {
            let t = Transfer::single(
                format!("par{i}"),
                &investor(i % accounts),
                &investor((i + 7) % accounts),
                100,
                "SGD",
                9,
            );
            l.submit(&t).await?;
            Ok(())
        }
    })
    .await?;
    report("ledger", backend, "single_transfer", concurrency, transfers, started);

    // Contended: every transfer credits the same escrow (as subscriptions to one deal do).
    let contended = transfers.min(5_000);
    let started = Instant::now();
    let (l, to) = (ledger.clone(), escrow.clone());
    concurrently(contended, concurrency, move |i| {
        let (l, to) = (l.clone(), to.clone());
        async move {
            l.submit(&Transfer::single(format!("hot{i}"), &investor(i % accounts), &to, 100, "SGD", 10)).await?;
            Ok(())
        }
    })
    .await?;
    report("ledger", backend, "single_transfer_one_escrow", concurrency, contended, started);

    // Linked batches of the largest size, each all-or-nothing in one store transaction.
    let batches = (transfers / MAX_LINKED).max(1);
    let started = Instant::now();
    let l = ledger.clone();
    concurrently(batches, concurrency, move |b| {
        let l = l.clone();
        async move {
            let batch: Vec<Transfer> = (0..MAX_LINKED)
                .map(|k| {
                    let from = (b * MAX_LINKED + k) % accounts;
                    Transfer::single(
                        format!("link{b}-{k}"),
                        &investor(from),
                        &investor((from + 13) % accounts),
                        100,
                        "SGD",
                        9,
                    )
                })
                .collect();
            l.submit_linked(&batch).await?;
            Ok(())
        }
    })
    .await?;
    report(
        "ledger",
        backend,
        &format!("linked_batch_of_{MAX_LINKED}_transfers"),
        concurrency,
        batches * MAX_LINKED,
        started,
    );
    Ok(())
}

async fn subscriptions_bench(
    backend: &str,
    platform: &shared::Platform,
    placed: usize,
    book: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    use shared::app::deposits::DepositAccounts;
    use shared::app::ledger::Ledger;
    use shared::app::subscriptions::{Subscription, SubscriptionStatus, Subscriptions, sub_item};
    use shared::domain::ledger::{Account, Kind, Transfer};

    let now = platform.clock.now();
    let ledger = Ledger::for_platform(platform);
    open_bench_deal(platform, "bench-deal").await?;

    // Investors with deposit accounts and money, then one subscription each, concurrently:
    // every hold credits the same escrow.
    let deposits = Arc::new(DepositAccounts::for_platform(platform));
    let omnibus = Account::of(Kind::Omnibus, "bank", "SGD");
    let omnibus_id = omnibus.id.clone();
    ledger.open(omnibus).await?;
    for i in 0..placed {
        let investor = format!("inv{i}");
        let account = deposits.account_for(&investor).await?;
        ledger
            .submit(&Transfer::single(format!("fund{i}"), &omnibus_id, &account.account_id, 1_000_000, "SGD", 1))
            .await?;
    }
    let subscriptions = Arc::new(Subscriptions::new(platform, deposits));
    let started = Instant::now();
    let subs = subscriptions.clone();
    concurrently(placed, concurrency, move |i| {
        let subs = subs.clone();
        async move {
            let sub = subs.subscribe(&format!("inv{i}"), "bench-deal", "bench", 10).await?;
            anyhow::ensure!(sub.status == SubscriptionStatus::Live, "not live: {sub:?}");
            Ok(())
        }
    })
    .await?;
    report("subscriptions", backend, "subscribe_one_deal", concurrency, placed, started);

    // Fill the book to `book` entries (written directly, 100 a transaction), then total it.
    let mut written = placed;
    while written < book {
        let writes = (written..book.min(written + 100))
            .map(|i| {
                let sub = Subscription {
                    id: format!("bulk{i:08}"),
                    deal_id: "bench-deal".into(),
                    investor_id: format!("bulk-investor{i}"),
                    units: 10,
                    amount: 1_000,
                    status: SubscriptionStatus::Live,
                    reason: None,
                    created_at: now,
                    updated_at: now,
                };
                Ok(Write::put(sub_item(&sub)?, Condition::None))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        written += writes.len();
        platform.store.transact(writes).await?;
    }
    let before = peak_rss_mb();
    let started = Instant::now();
    let totals = subscriptions.totals("bench-deal").await?;
    anyhow::ensure!(totals.live as usize == book.max(placed), "totals counted {} of {book}", totals.live);
    report("subscriptions", backend, &format!("totals_over_{book}"), 1, 1, started);
    println!(
        "{}",
        json!({"bench": "subscriptions", "case": "totals_peak_rss_growth_mb", "before_mb": before, "after_mb": peak_rss_mb()})
    );
    Ok(())
}

/// An open deal with its escrow account, written directly (no issuer, no approval): what
/// the subscription benches subscribe to.
async fn open_bench_deal(platform: &shared::Platform, id: &str) -> anyhow::Result<()> {
    write_deal(platform, id, shared::domain::deal::DealState::Open, 1_000_000_000, 100).await?;
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
    use shared::app::ledger::Ledger;
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
    Ledger::for_platform(platform).open(escrow).await?;
    platform.store.put(deal_item(&deal)?, Condition::NotExists).await?;
    Ok(deal)
}

async fn http_setup(
    platform: &shared::Platform,
    investors: usize,
    deals: usize,
    out: &std::path::Path,
) -> anyhow::Result<()> {
    use shared::app::accounts::Accounts;
    use shared::app::deposits::DepositAccounts;
    use shared::app::ledger::Ledger;
    use shared::app::sessions::Sessions;
    use shared::domain::ledger::{Account, Kind, Transfer};
    use shared::domain::session::SessionPolicy;

    let run = ulid::Ulid::new().to_string().to_lowercase();
    let mut deal_ids = Vec::with_capacity(deals);
    for d in 0..deals {
        let id = format!("bench-{run}-{d}");
        open_bench_deal(platform, &id).await?;
        deal_ids.push(json!({ "deal": id }));
    }
    let accounts = Accounts::new(platform);
    let deposits = DepositAccounts::for_platform(platform);
    let ledger = Ledger::for_platform(platform);
    let omnibus = Account::of(Kind::Omnibus, "bank", "SGD");
    let omnibus_id = omnibus.id.clone();
    ledger.open(omnibus).await?;
    let sessions = Sessions::for_platform(platform, SessionPolicy::default()).await?;
    let mut tokens = Vec::with_capacity(investors);
    for i in 0..investors {
        let user = accounts
            .create_verified(&format!("wrk-{run}-{i}@bench.example.sg"), "benchmark passphrase 2026", &[], 3)
            .await?;
        let account = deposits.account_for(&user.id).await?;
        ledger
            .submit(&Transfer::single(
                format!("wrk-fund-{run}-{i}"),
                &omnibus_id,
                &account.account_id,
                100_000_000,
                "SGD",
                1,
            ))
            .await?;
        tokens.push(json!({ "token": sessions.start_after_second_factor(&user).await?.access_token }));
    }
    std::fs::write(out, serde_json::to_vec(&json!({ "deals": deal_ids, "investors": tokens }))?)?;
    println!(
        "{}",
        json!({"bench": "http-setup", "deals": deals, "investors": investors, "out": out.display().to_string()})
    );
    Ok(())
}

/// Units the allocation bench's subscription `i` asks for: 10 to 1,000.
fn bench_units(i: usize) -> u64 {
    10 + (i as u64 * 7_919) % 991
}

/// The allocation bench on `platform`: prints its JSON lines and answers them.
pub async fn allocation_bench(
    backend: &str,
    platform: &shared::Platform,
    count: usize,
    supply: Option<u64>,
    settle: bool,
    workers: usize,
) -> anyhow::Result<Vec<serde_json::Value>> {
    use shared::app::allocation::{self, Allocator, RunState};
    use shared::app::consumer::pump_once;
    use shared::app::ledger::Ledger;
    use shared::app::subscriptions::{Subscription, SubscriptionStatus, hold_of, sub_item};
    use shared::domain::deal::DealState;
    use shared::domain::ledger::{Account, Kind, SGD, Transfer};
    use shared::ports::queue::QueueName;

    let deal_id = "bench-deal";
    let now = platform.clock.now();
    let requested: u64 = (0..count).map(bench_units).sum();
    let supply = supply.unwrap_or((requested / 5).max(1));
    let unit_price = 100;
    let deal = write_deal(platform, deal_id, DealState::Closed, supply, unit_price).await?;
    let ledger = Ledger::for_platform(platform);
    ledger.open(Account::of(Kind::Omnibus, "bank", SGD)).await?;

    // The book, 100 subscriptions a transaction; with `settle`, each one's deposit account,
    // money and hold in the ledger too.
    let setup = Instant::now();
    for start in (0..count).step_by(100) {
        let subs: Vec<Subscription> = (start..count.min(start + 100))
            .map(|i| Subscription {
                id: format!("sub{i:08}"),
                deal_id: deal_id.into(),
                investor_id: format!("inv{i:08}"),
                units: bench_units(i),
                amount: bench_units(i) * unit_price,
                status: SubscriptionStatus::Live,
                reason: None,
                created_at: now + chrono::TimeDelta::milliseconds(i as i64),
                updated_at: now,
            })
            .collect();
        if settle {
            for sub in &subs {
                ledger.open(Account::of(Kind::Deposit, &sub.investor_id, SGD)).await?;
            }
            for chunk in subs.chunks(7) {
                let mut transfers = Vec::with_capacity(2 * chunk.len());
                for sub in chunk {
                    let deposit = Account::id_of(Kind::Deposit, &sub.investor_id, SGD);
                    transfers.push(Transfer::single(
                        format!("fund-{}", sub.id),
                        "omnibus:bank:SGD",
                        &deposit,
                        sub.amount,
                        SGD,
                        1,
                    ));
                    transfers.push(hold_of(&sub.id, &sub.investor_id, &deal.escrow_account, sub.amount));
                }
                ledger.submit_linked(&transfers).await?;
            }
        }
        let writes = subs
            .iter()
            .map(|s| Ok(Write::put(sub_item(s)?, Condition::NotExists)))
            .collect::<anyhow::Result<Vec<_>>>()?;
        platform.store.transact(writes).await?;
    }
    eprintln!("book of {count} written in {:.1} s", setup.elapsed().as_secs_f64());

    // Close to allocated: the start message, then workers on the queues until the run completes.
    let started = Instant::now();
    allocation::request_start(platform.queue.as_ref(), deal_id).await?;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    let mut queues: Vec<(QueueName, Arc<dyn shared::app::consumer::BatchHandler>, usize)> =
        vec![(QueueName::Allocation, ::allocation::handler(platform), workers)];
    if settle {
        queues.push((QueueName::Settlement, settlement::handler(platform), 1));
    }
    for (queue, handler, n) in queues {
        for _ in 0..n {
            let (q, handler, stop) = (platform.queue.clone(), handler.clone(), stop.clone());
            tasks.spawn(async move {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if let Err(error) =
                        pump_once(q.as_ref(), queue, handler.as_ref(), std::time::Duration::from_millis(50)).await
                    {
                        eprintln!("queue: {error}");
                    }
                }
            });
        }
    }
    let allocator = Allocator::for_platform(platform);
    let run = loop {
        if let Some(run) = allocator.run(deal_id).await?.filter(|r| r.state == RunState::Complete) {
            break run;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let allocated_in = started.elapsed().as_secs_f64();
    let mut lines = vec![json!({
        "bench": "allocation", "backend": backend, "subscriptions": run.subscriptions, "supply": run.supply,
        "requested": run.requested.to_string(), "allocated": run.allocated().to_string(), "batches": run.batches,
        "leftover_units": run.leftover, "ratio": run.ratio, "elapsed_s": (allocated_in * 1000.0).round() / 1000.0,
        "peak_rss_mb": (peak_rss_mb() * 10.0).round() / 10.0, "checksum": run.checksum,
    })];
    if settle {
        let deals = shared::app::deals::Deals::for_platform(platform);
        let settling = Instant::now();
        while deals.get(deal_id).await?.map(|d| d.state) != Some(DealState::Issued) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let seconds = settling.elapsed().as_secs_f64();
        lines.push(json!({
            "bench": "settlement", "backend": backend, "subscriptions": run.subscriptions,
            "elapsed_s": (seconds * 1000.0).round() / 1000.0,
            "subscriptions_per_s": (run.subscriptions as f64 / seconds).round(),
            "close_to_issued_s": (started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
            "peak_rss_mb": (peak_rss_mb() * 10.0).round() / 10.0,
        }));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    for line in &lines {
        println!("{line}");
    }
    Ok(lines)
}
