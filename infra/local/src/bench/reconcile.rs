//! `bench reconcile --accounts N [--inject K]`: one reconciliation run over three books of
//! N deposit accounts that agree except for K injected differences.
//!
//! - **The ledger** is the platform's own, on the embedded store: N deposit accounts, each
//!   funded by one transfer. Its chain outbox is then taken off as delivered (the chain's
//!   book below already holds every record), so nothing is in flight at the cut-off.
//! - **The chain and the Custody** are other systems; here each is a balance file sorted by
//!   account (as a custodian's end-of-day position file is), written from the same figures,
//!   and read a page at a time through the `Chain` and `Custody` ports. Their memory is not
//!   the platform's, so it is not in the peak measured.
//! - The K differences cycle through four kinds, each exactly one break: an amount off by
//!   one on the chain, an amount off by one at the Custody, an account the chain lacks, an
//!   account only the Custody has.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use shared::app::ledger::CHAIN_OUTBOX;
use shared::domain::ledger::{Account, Kind, SGD, Transfer, codes};
use shared::ports::chain::{Chain, ChainTransfer, Receipt};
use shared::ports::custody::{
    Custody, CustodyBalance, CustodyReceipt, CustodyTransfer, Decision, Distribution, DistributionEntry,
};
use shared::ports::partner::PartnerError;
use shared::ports::store::{Condition, Query, Write};

use super::peak_rss_mb;

/// Omnibus accounts the deposits come from, so funding is not one hot account.
const SOURCES: usize = 16;
/// One line of the sparse index per this many lines of a balance file.
const INDEX_EVERY: usize = 1_024;

fn account(i: usize) -> String {
    Account::id_of(Kind::Deposit, &format!("inv{i:08}"), SGD)
}

/// What account `i` holds, in cents: 10.00 to 10,009.99.
fn amount(i: usize) -> u64 {
    1_000 + (i as u64 * 7_919) % 1_000_000
}

/// Which injected difference account `i` carries: the `k`th of `inject`, spread evenly.
fn injected(i: usize, accounts: usize, inject: usize) -> Option<usize> {
    if inject == 0 {
        return None;
    }
    let stride = accounts / inject;
    (i % stride == stride / 2 && i / stride < inject).then_some(i / stride)
}

/// A book of balances in one asset, sorted by account, one `account,balance` a line; a
/// sparse index (every [`INDEX_EVERY`]th account and its offset) finds a page's start.
pub struct BalanceFile {
    path: PathBuf,
    index: Vec<(String, u64)>,
}

impl BalanceFile {
    fn write(path: &Path, lines: impl Iterator<Item = (String, i128)>) -> std::io::Result<Self> {
        let mut out = BufWriter::new(File::create(path)?);
        let (mut index, mut offset) = (Vec::new(), 0u64);
        for (n, (account, balance)) in lines.enumerate() {
            if n % INDEX_EVERY == 0 {
                index.push((account.clone(), offset));
            }
            let line = format!("{account},{balance}\n");
            out.write_all(line.as_bytes())?;
            offset += line.len() as u64;
        }
        out.flush()?;
        Ok(Self { path: path.to_owned(), index })
    }

    /// Up to `limit` balances after `after`.
    fn page(&self, after: Option<&str>, limit: usize) -> Result<Vec<(String, i128)>, PartnerError> {
        let unavailable = |e: std::io::Error| PartnerError::Unavailable(e.to_string());
        let block = match after {
            Some(after) => self.index.partition_point(|(a, _)| a.as_str() <= after).saturating_sub(1),
            None => 0,
        };
        let Some((_, offset)) = self.index.get(block) else { return Ok(Vec::new()) };
        let mut file = File::open(&self.path).map_err(unavailable)?;
        file.seek(SeekFrom::Start(*offset)).map_err(unavailable)?;
        let mut page = Vec::with_capacity(limit);
        for line in BufReader::new(file).lines() {
            let line = line.map_err(unavailable)?;
            let (account, balance) = line.split_once(',').ok_or_else(|| PartnerError::Unavailable(line.clone()))?;
            if after.is_some_and(|after| account <= after) {
                continue;
            }
            let balance = balance.parse().map_err(|_| PartnerError::Unavailable(line.clone()))?;
            page.push((account.to_owned(), balance));
            if page.len() == limit {
                break;
            }
        }
        Ok(page)
    }
}

fn read_only() -> PartnerError {
    PartnerError::Refused("a balance file answers balances only".into())
}

#[async_trait]
impl Chain for BalanceFile {
    async fn record(&self, _: &ChainTransfer) -> Result<Receipt, PartnerError> {
        Err(read_only())
    }
    async fn balance(&self, _: &str, _: &str, _: Option<u64>) -> Result<i128, PartnerError> {
        Err(read_only())
    }
    async fn height(&self) -> Result<u64, PartnerError> {
        Ok(1)
    }
    async fn height_at(&self, _: DateTime<Utc>) -> Result<u64, PartnerError> {
        Ok(1)
    }
    async fn balances(
        &self,
        asset: &str,
        _: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, i128)>, PartnerError> {
        if asset != SGD {
            return Ok(Vec::new());
        }
        self.page(after, limit)
    }
}

#[async_trait]
impl Custody for BalanceFile {
    async fn transfer(&self, _: &CustodyTransfer) -> Result<CustodyReceipt, PartnerError> {
        Err(read_only())
    }
    async fn find_transfer(&self, _: &str) -> Result<Option<CustodyReceipt>, PartnerError> {
        Err(read_only())
    }
    async fn put_entries(&self, _: &str, _: u32, _: &[DistributionEntry]) -> Result<(), PartnerError> {
        Err(read_only())
    }
    async fn submit(&self, _: &Distribution) -> Result<Decision, PartnerError> {
        Err(read_only())
    }
    async fn decision(&self, _: &str) -> Result<Option<Decision>, PartnerError> {
        Err(read_only())
    }
    async fn balances(
        &self,
        asset: &str,
        _: DateTime<Utc>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CustodyBalance>, PartnerError> {
        if asset != SGD {
            return Ok(Vec::new());
        }
        Ok(self.page(after, limit)?.into_iter().map(|(account, balance)| CustodyBalance { account, balance }).collect())
    }
}

/// Funds N deposit accounts in the ledger, 14 a linked batch, `concurrency` batches at once.
async fn fill_ledger(platform: &shared::Platform, accounts: usize) -> anyhow::Result<()> {
    let ledger = Arc::new(platform.ledger());
    for k in 0..SOURCES {
        ledger.open(Account::of(Kind::Omnibus, &format!("bank-{k:02}"), SGD)).await?;
    }
    let batch = shared::app::ledger::MAX_LINKED;
    let batches = accounts.div_ceil(batch);
    super::concurrently(batches, 16, move |b| {
        let ledger = ledger.clone();
        async move {
            let range = b * batch..accounts.min((b + 1) * batch);
            let mut transfers = Vec::with_capacity(batch);
            for i in range {
                ledger.open(Account::of(Kind::Deposit, &format!("inv{i:08}"), SGD)).await?;
                let source = Account::id_of(Kind::Omnibus, &format!("bank-{:02}", i % SOURCES), SGD);
                transfers.push(Transfer::single(
                    format!("fund-{i:08}"),
                    &source,
                    &account(i),
                    amount(i),
                    SGD,
                    codes::DEPOSIT,
                ));
            }
            ledger.submit_linked(&transfers).await?;
            anyhow::Ok(())
        }
    })
    .await
}

/// Takes the ledger's chain outbox off, 100 records a transaction.
async fn mark_delivered(platform: &shared::Platform) -> anyhow::Result<()> {
    loop {
        let page = platform.store.query(&Query::secondary(CHAIN_OUTBOX).limit(100)).await?;
        if page.items.is_empty() {
            return Ok(());
        }
        let writes = page.items.into_iter().map(|item| Write::delete(item.key, Condition::Exists)).collect();
        platform.store.transact(writes).await?;
    }
}

/// The chain's and the Custody's books: the ledger's figures, with the injected differences.
fn write_books(folder: &Path, accounts: usize, inject: usize) -> std::io::Result<(BalanceFile, BalanceFile)> {
    let book = move |side: usize| {
        (0..accounts).flat_map(move |i| {
            let balance = i128::from(amount(i));
            let mut lines = vec![(account(i), balance)];
            match injected(i, accounts, inject) {
                // An amount off by one on the chain (side 0), at the Custody (side 1).
                Some(k) if k % 4 == side => lines[0].1 += if side == 0 { 1 } else { -1 },
                // An account the chain lacks.
                Some(k) if k % 4 == 2 && side == 0 => lines.clear(),
                // An account only the Custody has (it sorts right after account `i`).
                Some(k) if k % 4 == 3 && side == 1 => {
                    lines.push((Account::id_of(Kind::Deposit, &format!("inv{i:08}x"), SGD), 1))
                }
                _ => {}
            }
            lines
        })
    };
    Ok((
        BalanceFile::write(&folder.join("chain.csv"), book(0))?,
        BalanceFile::write(&folder.join("custody.csv"), book(1))?,
    ))
}

/// Builds the three books, runs one reconciliation, prints and answers its JSON line.
pub async fn reconcile_bench(
    platform: &mut shared::Platform,
    folder: &Path,
    accounts: usize,
    inject: usize,
) -> anyhow::Result<serde_json::Value> {
    anyhow::ensure!(inject <= accounts / 2, "--inject must be at most half of --accounts");
    let setup = Instant::now();
    fill_ledger(platform, accounts).await?;
    mark_delivered(platform).await?;
    let (chain, custody) = write_books(folder, accounts, inject)?;
    platform.chain = Arc::new(chain);
    platform.custody = Arc::new(custody);
    eprintln!("three books of {accounts} accounts written in {:.1} s", setup.elapsed().as_secs_f64());

    let started = Instant::now();
    let run = platform.reconciler().run(platform.clock.now()).await?;
    let elapsed = started.elapsed().as_secs_f64();
    let line = json!({
        "bench": "reconcile", "accounts": accounts, "injected": inject, "breaks": run.breaks,
        "verdict": run.verdict, "elapsed_s": (elapsed * 1000.0).round() / 1000.0,
        "peak_rss_mb": (peak_rss_mb() * 10.0).round() / 10.0,
    });
    println!("{line}");
    anyhow::ensure!(run.breaks == inject as u64, "expected {inject} breaks, found {}: {run:?}", run.breaks);
    Ok(line)
}
