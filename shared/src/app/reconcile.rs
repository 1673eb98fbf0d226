//! A reconciliation run: the ledger, the chain and the Custody as of one cut-off, merged
//! per asset a window at a time ([`crate::domain::reconcile::Merge`]) so memory stays
//! bounded whatever the number of accounts. The ledger's balances come from its
//! statements, the chain's from the block at the cut-off, the Custody's as of the cut-off.
//! Every row that is not matched is stored with the run; the run records its counts per
//! pair, class and verdict. A source that fails makes the run incomplete, never reconciled.
//! One run per cut-off at a time; running a cut-off again is a new run that names the
//! previous one.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::ledger::{Ledger, LedgerError, sortable};
use crate::domain::ledger::SGD;
use crate::domain::reconcile::{Class, Line, Merge, Pair, Position, Row, RuleId, Verdict};
use crate::ports::partner::PartnerError;
use crate::ports::store::{Condition, Item, Key, Query, StoreError, Write};
use crate::ports::{Chain, Clock, Custody, Ids, Store};

/// Balances fetched per source per page.
const PAGE: usize = 1_000;
/// How long a cut-off stays locked by a run that died without finishing.
const LOCK_FOR: TimeDelta = TimeDelta::minutes(30);
const RUNS: &str = "RECON#RUNS";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunVerdict {
    Reconciled,
    /// Nothing but timing differences.
    ReconciledWithPending,
    Breaks,
    /// A source failed: nothing may be concluded; the run is retried.
    Incomplete,
}

/// How many rows of a pair and class got a verdict of a kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Count {
    pub pair: Pair,
    pub class: Class,
    /// `matched`, `timing` or `break`.
    pub verdict: String,
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconRun {
    pub id: String,
    pub cut_off: DateTime<Utc>,
    /// The run of the same cut-off before this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    pub chain_height: u64,
    pub verdict: RunVerdict,
    pub counts: Vec<Count>,
    pub breaks: u64,
    pub timing: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// A row that is not matched, as stored with its run (amounts as decimal strings of the
/// asset's smallest unit: they may exceed what JSON numbers hold exactly).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRow {
    pub account: String,
    pub asset: String,
    pub pair: Pair,
    pub class: Class,
    /// Absent: the book does not hold the position.
    pub ledger: Option<String>,
    pub other: Option<String>,
    /// `timing` or `break`.
    pub verdict: String,
    /// The other book minus the ledger.
    pub difference: String,
    /// For a timing difference the rules that explain it; for a break, those whose grace ran out.
    pub rules: Vec<RuleId>,
}

impl From<&Row> for StoredRow {
    fn from(r: &Row) -> Self {
        let difference = r.other.unwrap_or(0) - r.ledger.unwrap_or(0);
        let (verdict, rules) = match &r.verdict {
            Verdict::Timing { rules } => ("timing", rules.clone()),
            Verdict::Break { expired, .. } => ("break", expired.clone()),
            Verdict::Matched => ("matched", Vec::new()),
        };
        Self {
            account: r.position.account.clone(),
            asset: r.position.asset.clone(),
            pair: r.pair,
            class: r.class,
            ledger: r.ledger.map(|b| b.to_string()),
            other: r.other.map(|b| b.to_string()),
            verdict: verdict.to_owned(),
            difference: difference.to_string(),
            rules,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("a run of this cut-off is in progress")]
    AlreadyRunning,
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn run_key(id: &str) -> Key {
    Key::new(format!("RECON#RUN#{id}"), "RUN")
}

fn row_key(run: &str, row: &StoredRow) -> Key {
    let pair = match row.pair {
        Pair::LedgerChain => "chain",
        Pair::LedgerCustody => "custody",
    };
    Key::new(format!("RECON#RUN#{run}"), format!("ROW#{}#{}#{pair}", row.account, row.asset))
}

fn cut_off_key(cut_off: DateTime<Utc>) -> Key {
    Key::new(format!("RECON#CUTOFF#{}", sortable(cut_off)), "LOCK")
}

/// The last run of a cut-off.
fn latest_key(cut_off: DateTime<Utc>) -> Key {
    Key::new(format!("RECON#CUTOFF#{}", sortable(cut_off)), "LATEST")
}

/// Why a source stopped.
enum Failure {
    Partner(PartnerError),
    Ledger(LedgerError),
    Order(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Partner(e) => write!(f, "{e}"),
            Self::Ledger(e) => write!(f, "ledger: {e}"),
            Self::Order(e) => f.write_str(e),
        }
    }
}

/// One book's balances of one asset, fetched a page at a time.
struct Feed {
    lines: VecDeque<Line>,
    after: Option<String>,
    done: bool,
}

impl Feed {
    fn new() -> Self {
        Self { lines: VecDeque::new(), after: None, done: false }
    }

    fn take(&mut self, page: Vec<(String, i128)>, asset: &str) {
        self.done = page.len() < PAGE;
        self.after = page.last().map(|(a, _)| a.clone()).or(self.after.take());
        self.lines.extend(
            page.into_iter().map(|(account, balance)| Line { position: Position::new(account, asset), balance }),
        );
    }

    /// The lines up to `bound` (all, when `None`).
    fn upto(&mut self, bound: Option<&Position>) -> Vec<Line> {
        let n = match bound {
            Some(b) => self.lines.iter().take_while(|l| &l.position <= b).count(),
            None => self.lines.len(),
        };
        self.lines.drain(..n).collect()
    }
}

pub struct Reconciler {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    ledger: Ledger,
    chain: Arc<dyn Chain>,
    custody: Arc<dyn Custody>,
}

impl Reconciler {
    pub fn for_platform(platform: &crate::Platform) -> Self {
        Self {
            store: platform.store.clone(),
            clock: platform.clock.clone(),
            ids: platform.ids.clone(),
            ledger: Ledger::for_platform(platform),
            chain: platform.chain.clone(),
            custody: platform.custody.clone(),
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<ReconRun>, StoreError> {
        self.store.get(&run_key(id)).await?.map(|i| i.decode()).transpose()
    }

    /// Runs, the latest cut-off first.
    pub async fn list(
        &self,
        limit: usize,
        cursor: Option<crate::ports::store::Cursor>,
    ) -> Result<(Vec<ReconRun>, Option<crate::ports::store::Cursor>), StoreError> {
        let page = self.store.query(&Query::secondary(RUNS).descending().limit(limit).after(cursor)).await?;
        Ok((page.items.iter().map(Item::decode).collect::<Result<_, _>>()?, page.next))
    }

    /// A run's rows that are not matched, in account order.
    pub async fn rows(
        &self,
        id: &str,
        limit: usize,
        cursor: Option<crate::ports::store::Cursor>,
    ) -> Result<(Vec<StoredRow>, Option<crate::ports::store::Cursor>), StoreError> {
        let query = Query::partition(format!("RECON#RUN#{id}"))
            .range(crate::ports::store::Range::Prefix("ROW#".into()))
            .limit(limit)
            .after(cursor);
        let page = self.store.query(&query).await?;
        Ok((page.items.iter().map(Item::decode).collect::<Result<_, _>>()?, page.next))
    }

    /// Reconciles the three books as of `cut_off`.
    pub async fn run(&self, cut_off: DateTime<Utc>) -> Result<ReconRun, ReconcileError> {
        let started_at = self.clock.now();
        let lock = Item::new(cut_off_key(cut_off), &started_at)?.expiring_at(started_at + LOCK_FOR);
        match self.store.put(lock, Condition::NotExists).await {
            Ok(()) => {}
            Err(StoreError::ConditionFailed { .. }) => return Err(ReconcileError::AlreadyRunning),
            Err(e) => return Err(e.into()),
        }
        let result = self.reconcile(cut_off, started_at).await;
        self.store.delete(cut_off_key(cut_off), Condition::None).await?;
        result
    }

    async fn reconcile(&self, cut_off: DateTime<Utc>, started_at: DateTime<Utc>) -> Result<ReconRun, ReconcileError> {
        let id = self.ids.new_id("recon");
        let previous = self.store.get(&latest_key(cut_off)).await?.map(|i| i.decode::<String>()).transpose()?;
        let mut tally: BTreeMap<(Pair, Class, &'static str), u64> = BTreeMap::new();
        let mut outcome = Ok(0);
        let chain_height = match self.chain.height_at(cut_off).await {
            Ok(height) => height,
            Err(e) => {
                outcome = Err(Failure::Partner(e));
                0
            }
        };
        if outcome.is_ok() {
            outcome = match self.ledger.assets().await {
                Ok(assets) => {
                    let mut result = Ok(0);
                    for asset in assets {
                        let prefix = if asset == SGD { "deposit:" } else { "holding:" };
                        if let Err(e) =
                            self.reconcile_asset(&id, &asset, prefix, cut_off, chain_height, &mut tally).await
                        {
                            result = Err(e);
                            break;
                        }
                    }
                    result
                }
                Err(e) => Err(Failure::Ledger(e)),
            };
        }
        let count = |kind: &str| tally.iter().filter(|((_, _, v), _)| *v == kind).map(|(_, n)| n).sum::<u64>();
        let (breaks, timing) = (count("break"), count("timing"));
        let verdict = match (&outcome, breaks, timing) {
            (Err(_), _, _) => RunVerdict::Incomplete,
            (Ok(_), 0, 0) => RunVerdict::Reconciled,
            (Ok(_), 0, _) => RunVerdict::ReconciledWithPending,
            (Ok(_), _, _) => RunVerdict::Breaks,
        };
        let run = ReconRun {
            id: id.clone(),
            cut_off,
            previous,
            chain_height,
            verdict,
            counts: tally
                .into_iter()
                .map(|((pair, class, verdict), rows)| Count { pair, class, verdict: verdict.to_owned(), rows })
                .collect(),
            breaks,
            timing,
            error: outcome.err().map(|e| e.to_string()),
            started_at,
            finished_at: self.clock.now(),
        };
        let item = Item::new(run_key(&id), &run)?.with_index(RUNS, format!("{}#{id}", sortable(cut_off)));
        let writes = vec![
            Write::put(item, Condition::NotExists),
            Write::put(Item::new(latest_key(cut_off), &id)?, Condition::None),
        ];
        self.store.transact(writes).await?;
        if run.verdict == RunVerdict::Incomplete {
            tracing::warn!(run = %id, error = ?run.error, "reconciliation incomplete");
        }
        Ok(run)
    }

    /// Merges one asset's three books a window at a time: each window ends at the lowest
    /// last position fetched among the books not yet exhausted, so every position is judged
    /// with all three books' balances in hand.
    async fn reconcile_asset(
        &self,
        run: &str,
        asset: &str,
        prefix: &str,
        cut_off: DateTime<Utc>,
        height: u64,
        tally: &mut BTreeMap<(Pair, Class, &'static str), u64>,
    ) -> Result<(), Failure> {
        let (mut ledger, mut chain, mut custody) = (Feed::new(), Feed::new(), Feed::new());
        loop {
            if ledger.lines.is_empty() && !ledger.done {
                let page = self.ledger.balances_as_of(asset, prefix, cut_off, ledger.after.as_deref(), PAGE).await;
                ledger.take(page.map_err(Failure::Ledger)?, asset);
            }
            if chain.lines.is_empty() && !chain.done {
                let page = self.chain.balances(asset, height, chain.after.as_deref(), PAGE).await;
                chain.take(page.map_err(Failure::Partner)?, asset);
            }
            if custody.lines.is_empty() && !custody.done {
                let page = self.custody.balances(asset, cut_off, custody.after.as_deref(), PAGE).await;
                let page = page.map_err(Failure::Partner)?.into_iter().map(|b| (b.account, b.balance)).collect();
                custody.take(page, asset);
            }
            let feeds = [&ledger, &chain, &custody];
            if feeds.iter().all(|f| f.done && f.lines.is_empty()) {
                return Ok(());
            }
            let bound =
                feeds.iter().filter(|f| !f.done).filter_map(|f| f.lines.back()).map(|l| &l.position).min().cloned();
            let window = (ledger.upto(bound.as_ref()), chain.upto(bound.as_ref()), custody.upto(bound.as_ref()));
            let merged = Merge::new(
                window.0.into_iter(),
                window.1.into_iter(),
                window.2.into_iter(),
                std::iter::empty(),
                cut_off,
            );
            let mut writes = Vec::new();
            for rows in merged {
                for row in rows.map_err(|e| Failure::Order(e.to_string()))? {
                    let kind = match row.verdict {
                        Verdict::Matched => "matched",
                        Verdict::Timing { .. } => "timing",
                        Verdict::Break { .. } => "break",
                    };
                    *tally.entry((row.pair, row.class, kind)).or_default() += 1;
                    if kind != "matched" {
                        let stored = StoredRow::from(&row);
                        let item =
                            Item::new(row_key(run, &stored), &stored).map_err(|e| Failure::Order(e.to_string()))?;
                        writes.push(Write::put(item, Condition::None));
                    }
                }
                if writes.len() >= 98 {
                    self.flush(std::mem::take(&mut writes)).await?;
                }
            }
            self.flush(writes).await?;
        }
    }

    async fn flush(&self, writes: Vec<Write>) -> Result<(), Failure> {
        if writes.is_empty() {
            return Ok(());
        }
        self.store.transact(writes).await.map_err(|e| Failure::Ledger(LedgerError::Store(e)))
    }
}
