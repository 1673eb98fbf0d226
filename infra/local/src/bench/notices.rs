//! Notices: `count` of each kind written as the flows write them, relayed, rendered and
//! sent (to the mail folder) by the notify consumer, end to end; and each kind's PDF
//! document rendered `count` times, timed one by one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use shared::app::consumer::{BatchHandler, pump_once};
use shared::app::notices::{self, Audience, Noted};
use shared::ports::queue::QueueName;

use super::*;

/// Investors the notices go to, round robin.
const INVESTORS: usize = 100;

/// Counts the emails the mail service took.
struct CountedMail {
    inner: Arc<dyn shared::ports::Mailer>,
    sent: Arc<AtomicUsize>,
}

#[async_trait]
impl shared::ports::Mailer for CountedMail {
    async fn send(&self, email: &shared::ports::mailer::Email) -> Result<String, shared::ports::mailer::MailError> {
        let id = self.inner.send(email).await?;
        self.sent.fetch_add(1, Ordering::SeqCst);
        Ok(id)
    }
}

/// `platform` with its mail counted.
fn counting(platform: &shared::Platform) -> (shared::Platform, Arc<AtomicUsize>) {
    let sent = Arc::new(AtomicUsize::new(0));
    let mut counted = platform.clone();
    counted.mailer = Arc::new(CountedMail { inner: platform.mailer.clone(), sent: sent.clone() });
    (counted, sent)
}

/// Pumps the notify queue with `workers` consumers, relaying between, until `sent`
/// reaches `expected`.
async fn deliver_all(
    platform: &shared::Platform,
    handler: Arc<dyn BatchHandler>,
    sent: &Arc<AtomicUsize>,
    expected: usize,
    workers: usize,
) -> anyhow::Result<()> {
    let mut pumps = tokio::task::JoinSet::new();
    for _ in 0..workers {
        let (queue, handler, sent) = (platform.queue.clone(), handler.clone(), sent.clone());
        pumps.spawn(async move {
            while sent.load(Ordering::SeqCst) < expected {
                pump_once(queue.as_ref(), QueueName::Notify, handler.as_ref(), Duration::from_millis(50)).await?;
            }
            anyhow::Ok(())
        });
    }
    let notices = platform.notices();
    while sent.load(Ordering::SeqCst) < expected {
        if notices.relay(notify::RELAY_BATCH).await? == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    while let Some(pump) = pumps.join_next().await {
        pump??;
    }
    Ok(())
}

pub(super) fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    (sorted.get(i).copied().unwrap_or(0.0) * 1000.0).round() / 1000.0
}

pub async fn notices_bench(platform: &shared::Platform, count: usize, workers: usize) -> anyhow::Result<()> {
    let templates = notify::Templates::new();
    if let Err(broken) = templates.check() {
        anyhow::bail!("{broken}");
    }
    let accounts = platform.accounts();
    let mut investors = Vec::with_capacity(INVESTORS);
    for i in 0..INVESTORS {
        investors.push(
            accounts.create_verified(&format!("investor{i}@bench.example"), "bench passphrase 2026", &[], 3).await?.id,
        );
    }
    for role in ["finance", "co-operator"] {
        accounts.create_verified(&format!("{role}@bench.example"), "bench passphrase 2026", &[role], 2).await?;
    }
    let samples: Vec<Noted> = notify::samples::every_kind();

    // The PDF documents, each rendered `count` times on a blocking thread.
    let mut render = json!({});
    for sample in samples.iter().filter(|n| n.notice.document().is_some()) {
        let documents = templates.documents.clone();
        let kind = sample.notice.kind();
        let sample = sample.clone();
        let times = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<f64>> {
            let mut times = Vec::with_capacity(count);
            for i in 0..count {
                let mut noted = sample.clone();
                noted.id = format!("ntc_bench{i:021}");
                let started = Instant::now();
                let pdf = documents.render(&noted)?;
                times.push(started.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(pdf.starts_with(b"%PDF-"), "not a PDF");
            }
            Ok(times)
        })
        .await??;
        let mut sorted = times;
        sorted.sort_by(f64::total_cmp);
        render[kind] = json!({"p50_ms": percentile(&sorted, 0.5), "p99_ms": percentile(&sorted, 0.99)});
    }

    // End to end: every notice written in transactions of 25, then relayed, rendered and
    // sent by `workers` consumers.
    let now = platform.clock.now();
    let kinds = samples.len();
    let started = Instant::now();
    for sample in &samples {
        let mut writes = Vec::with_capacity(25);
        for i in 0..count {
            let audience = match &sample.audience {
                Audience::Investor(_) | Audience::OfferingNews | Audience::Investors => {
                    Audience::Investor(investors[i % INVESTORS].clone())
                }
                operators => operators.clone(),
            };
            let origin = format!("bench:{}:{i}", sample.notice.kind());
            writes.push(notices::write(&origin, audience, sample.notice.clone(), now)?);
            if writes.len() == 25 {
                platform.store.transact(std::mem::take(&mut writes)).await?;
            }
        }
        if !writes.is_empty() {
            platform.store.transact(writes).await?;
        }
    }
    let written = started.elapsed().as_secs_f64();
    let total = count * kinds;
    let (counted, sent) = counting(platform);
    deliver_all(&counted, notify::handler(&counted, &templates), &sent, total, workers).await?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "bench": "notices", "count_per_kind": count, "kinds": kinds, "notices": total, "workers": workers,
            "pdf_render": render,
            "written_s": (written * 1000.0).round() / 1000.0,
            "end_to_end_s": (elapsed * 1000.0).round() / 1000.0,
            "notices_per_s": (total as f64 / elapsed).round(),
            "peak_rss_mb": (peak_rss_mb() * 10.0).round() / 10.0,
        })
    );
    Ok(())
}

/// The monthly statement run for `investors` investors, each with a deposit in the month:
/// the statements notice, its fan-out and every statement sent, timed end to end.
pub async fn statements_bench(platform: &shared::Platform, investors: usize, workers: usize) -> anyhow::Result<()> {
    use shared::app::accounts::{User, seal_email, user_item};
    use shared::domain::credentials::EmailAddress;
    use shared::domain::ledger::{Account, Kind, SGD, Transfer};
    let templates = notify::Templates::new();
    let ledger = platform.ledger();
    ledger.open(Account::of(Kind::Omnibus, "bank", SGD)).await?;
    let month_start = notify::statements::month_before(platform.clock.now()).1;
    let setup = Instant::now();
    // Investors written directly (a password hash each would take the run's time), with
    // their addresses sealed as sign-up seals them.
    let sealed = platform.accounts().create_verified("template@bench.example", "bench passphrase 2026", &[], 3).await?;
    let keyring = platform.keyring.clone();
    for start in (0..investors).step_by(50) {
        let mut writes = Vec::with_capacity(50);
        let mut transfers = Vec::with_capacity(50);
        for i in start..investors.min(start + 50) {
            let id = format!("inv{i:08}");
            let address = EmailAddress::parse(&format!("{id}@bench.example")).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let user = User {
                email: seal_email(keyring.as_ref(), &id, &address).await?,
                id,
                created_at: month_start + chrono::TimeDelta::seconds(1),
                ..sealed.clone()
            };
            writes.push(Write::put(user_item(&user)?, Condition::NotExists));
            ledger.open(Account::of(Kind::Deposit, &user.id, SGD)).await?;
            let deposit = Account::id_of(Kind::Deposit, &user.id, SGD);
            transfers.push(Transfer::single(format!("fund-{i}"), "omnibus:bank:SGD", &deposit, 100_000, SGD, 1));
        }
        platform.store.transact(writes).await?;
        for chunk in transfers.chunks(10) {
            ledger.submit_linked(chunk).await?;
        }
    }
    eprintln!("{investors} investors with a deposit written in {:.1} s", setup.elapsed().as_secs_f64());
    // The clock of an embedded platform is the system's: the deposits are this month's,
    // so the run is the one due on the next first of the month.
    let mut platform = platform.clone();
    let next = notify::statements::next_run_after(platform.clock.now());
    platform.clock = Arc::new(shared::adapters::clock::ManualClock::at(next));
    let (platform, sent) = counting(&platform);
    let started = Instant::now();
    notify::statements_due(&platform).await?;
    deliver_all(&platform, notify::handler(&platform, &templates), &sent, investors, workers).await?;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({
            "bench": "statements", "investors": investors, "workers": workers,
            "elapsed_s": (elapsed * 1000.0).round() / 1000.0,
            "statements_per_s": (investors as f64 / elapsed).round(),
            "peak_rss_mb": (peak_rss_mb() * 10.0).round() / 10.0,
        })
    );
    Ok(())
}
