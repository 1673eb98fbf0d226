//! A reconciliation run: the ledger, the chain and the Custody as of one cut-off, merged
//! per asset a window at a time ([`crate::domain::reconcile::Merge`]) so memory stays
//! bounded whatever the number of accounts. The ledger's balances come from its
//! statements, the chain's from the block at the cut-off, the Custody's as of the cut-off.
//! Every row that is not matched is stored with the run; the run records its counts per
//! pair, class and verdict. A source that fails makes the run incomplete, never reconciled.
//! One run per cut-off at a time; running a cut-off again is a new run that names the
//! previous one.

mod breaks;
mod in_flight;
mod records;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

pub use self::breaks::{BreakStatus, TrackedBreak};
pub(crate) use self::breaks::{break_item, break_key};
pub use self::records::{Count, ReconRun, StoredRow};
use self::records::{RUNS, cut_off_key, latest_key, row_key, run_key};
use super::allocation::AllocationRecords;
use super::ledger::{Ledger, LedgerError, sortable};
use super::notices;
use super::orders::OrderLocks;
use crate::domain::access::Role;
use crate::domain::ledger::SGD;
pub use crate::domain::reconcile::RunVerdict;
use crate::domain::reconcile::{
    Class, Lifecycle, Line, Merge, MergeError, Pair, Pending, Position, RowVerdict, run_verdict,
};
use crate::ports::partner::PartnerError;
use crate::ports::queue::{QueueError, QueueName};
use crate::ports::store::{Condition, Item, Query, StoreError, Write};
use crate::ports::{Chain, Clock, Custody, Ids, Queue, Store};

/// Balances fetched per source per page.
const PAGE: usize = 1_000;
/// How long a cut-off stays locked by a run that died without finishing.
const LOCK_FOR: TimeDelta = TimeDelta::minutes(30);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("a run of this cut-off is in progress")]
    AlreadyRunning,
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl super::failure::Permanence for ReconcileError {
    fn is_permanent(&self) -> bool {
        match self {
            // The run of the same cut-off finishes, or its lock lapses.
            Self::AlreadyRunning => false,
            Self::Store(e) => e.is_permanent(),
        }
    }
}

/// Why a run could not conclude.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Partner(#[from] PartnerError),
    #[error("ledger: {0}")]
    Ledger(#[from] LedgerError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Order(#[from] MergeError),
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

/// The queue of runs operators ask for: a run can take longer than an HTTP request may.
pub const QUEUE: QueueName = QueueName::Reconcile;

/// A run an operator asked for.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Requested {
    pub cut_off: DateTime<Utc>,
    pub requested_by: String,
}

/// Asks the `reconcile` function for a run as of `cut_off`.
pub async fn request(queue: &dyn Queue, cut_off: DateTime<Utc>, requested_by: &str) -> Result<(), QueueError> {
    let body = serde_json::to_string(&Requested { cut_off, requested_by: requested_by.to_owned() })
        .map_err(|e| QueueError::Invalid(e.to_string()))?;
    queue.send(QUEUE, vec![body]).await.map(|_| ())
}

pub struct Reconciler {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    ledger: Ledger,
    locks: OrderLocks,
    allocations: AllocationRecords,
    chain: Arc<dyn Chain>,
    custody: Arc<dyn Custody>,
}

impl Reconciler {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn Ids>,
        chain: Arc<dyn Chain>,
        custody: Arc<dyn Custody>,
        ledger: Ledger,
        locks: OrderLocks,
    ) -> Self {
        let allocations = AllocationRecords::new(store.clone());
        Self { store, clock, ids, ledger, locks, allocations, chain, custody }
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
        let mut tally: BTreeMap<(Pair, Class, RowVerdict), u64> = BTreeMap::new();
        let mut new_breaks = 0;
        let mut outcome = Ok(0);
        let chain_height = match self.chain.height_at(cut_off).await {
            Ok(height) => height,
            Err(e) => {
                outcome = Err(Failure::Partner(e));
                0
            }
        };
        let mut in_flight = BTreeMap::new();
        if outcome.is_ok() {
            match self.in_flight(cut_off, chain_height).await {
                Ok(pending) => in_flight = pending,
                Err(e) => outcome = Err(e),
            }
        }
        if outcome.is_ok() {
            outcome = match self.ledger.assets().await {
                Ok(assets) => {
                    let mut result = Ok(0);
                    for asset in assets {
                        let pending = in_flight.remove(&asset).unwrap_or_default();
                        if let Err(e) = self
                            .reconcile_asset(&id, &asset, cut_off, chain_height, pending, (&mut tally, &mut new_breaks))
                            .await
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
        let resolved = match outcome {
            Ok(_) => self.resolve_gone(&id).await?,
            Err(_) => 0,
        };
        let count = |kind: RowVerdict| tally.iter().filter(|((_, _, v), _)| *v == kind).map(|(_, n)| n).sum::<u64>();
        let (breaks, timing) = (count(RowVerdict::Break), count(RowVerdict::Timing) + count(RowVerdict::Accepted));
        let verdict = run_verdict(outcome.is_ok(), breaks, timing);
        let run = ReconRun {
            id: id.clone(),
            cut_off,
            previous,
            chain_height,
            verdict,
            counts: tally
                .into_iter()
                .map(|((pair, class, verdict), rows)| Count { pair, class, verdict, rows })
                .collect(),
            breaks,
            new_breaks,
            timing,
            resolved,
            error: outcome.err().map(|e| e.to_string()),
            started_at,
            finished_at: self.clock.now(),
        };
        let item = Item::new(run_key(&id), &run)?.with_index(RUNS, format!("{}#{id}", sortable(cut_off)));
        let notice = notices::write(
            &format!("reconcile:{id}"),
            notices::Audience::Operators(Role::Finance),
            notices::Notice::ReconciliationFinished {
                run_id: id.clone(),
                cut_off,
                verdict: run.verdict,
                breaks: run.breaks,
                timing: run.timing,
                resolved: run.resolved,
            },
            run.finished_at,
        )?;
        let writes = vec![
            Write::put(item, Condition::NotExists),
            Write::put(Item::new(latest_key(cut_off), &id)?, Condition::None),
            notice,
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
        cut_off: DateTime<Utc>,
        height: u64,
        mut pending: VecDeque<Pending>,
        (tally, new_breaks): (&mut BTreeMap<(Pair, Class, RowVerdict), u64>, &mut u64),
    ) -> Result<(), Failure> {
        let prefix = if asset == SGD { "deposit:" } else { "holding:" };
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
            if feeds.iter().all(|f| f.done && f.lines.is_empty()) && pending.is_empty() {
                return Ok(());
            }
            let bound =
                feeds.iter().filter(|f| !f.done).filter_map(|f| f.lines.back()).map(|l| &l.position).min().cloned();
            let window = (ledger.upto(bound.as_ref()), chain.upto(bound.as_ref()), custody.upto(bound.as_ref()));
            let in_window = match &bound {
                Some(b) => pending.iter().take_while(|p| &p.position <= b).count(),
                None => pending.len(),
            };
            let merged = Merge::new(
                window.0.into_iter(),
                window.1.into_iter(),
                window.2.into_iter(),
                pending.drain(..in_window),
                cut_off,
            );
            let mut writes = Vec::new();
            for rows in merged {
                for row in rows? {
                    let mut kind = RowVerdict::of(&row.verdict);
                    if kind != RowVerdict::Matched {
                        let mut stored = StoredRow::from(&row);
                        if kind == RowVerdict::Break {
                            let tracked = self.track(run, cut_off, &stored).await.map_err(Failure::Store)?;
                            let accepted = tracked.status == BreakStatus::Accepted;
                            let lifecycle = Lifecycle::of(accepted, tracked.first_seen == run);
                            *new_breaks += u64::from(lifecycle == Lifecycle::New);
                            kind = lifecycle.row_verdict();
                            stored.verdict = kind;
                            stored.lifecycle = Some(lifecycle);
                            writes.push(Write::put(break_item(&tracked).map_err(Failure::Store)?, Condition::None));
                        }
                        let item = Item::new(row_key(run, &stored), &stored).map_err(Failure::Store)?;
                        writes.push(Write::put(item, Condition::None));
                    }
                    *tally.entry((row.pair, row.class, kind)).or_default() += 1;
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
        self.store.transact(writes).await.map_err(Failure::Store)
    }
}
