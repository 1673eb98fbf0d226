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

use super::allocation::Allocator;
use super::ledger::{CHAIN_OUTBOX, Ledger, LedgerError, sortable};
use super::mirror::{DELIVERED, Delivered, Outboxed, booked_at_custody};
use super::notices;
use super::orders::OrderLocks;
use super::settlement::{ISSUANCES, Issuance, issue_transfer_id};
use crate::domain::ledger::{Account, Kind, SGD};
pub use crate::domain::reconcile::RunVerdict;
use crate::domain::reconcile::{
    Class, Lifecycle, Line, Merge, MergeError, Pair, Pending, Position, Row, RowVerdict, RuleId, Verdict, custody_rule,
    run_verdict,
};
use crate::ports::chain::ChainTransfer;
use crate::ports::partner::PartnerError;
use crate::ports::queue::{QueueError, QueueName};
use crate::ports::store::{self, Condition, Item, Key, Query, Range, StoreError, Write};
use crate::ports::{Chain, Clock, Custody, Ids, Queue, Store};

/// Balances fetched per source per page.
const PAGE: usize = 1_000;
/// How long a cut-off stays locked by a run that died without finishing.
const LOCK_FOR: TimeDelta = TimeDelta::minutes(30);
const RUNS: &str = "RECON#RUNS";

/// How many rows of a pair and class got a verdict of a kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Count {
    pub pair: Pair,
    pub class: Class,
    pub verdict: RowVerdict,
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
    /// Breaks no earlier run found (what alarms an operator).
    #[serde(default)]
    pub new_breaks: u64,
    /// Timing differences and accepted breaks.
    pub timing: u64,
    /// Breaks of earlier runs that this run no longer finds.
    #[serde(default)]
    pub resolved: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// A row that is not matched, as stored with its run and shown to operators (amounts as
/// decimal strings of the asset's smallest unit: they may exceed what JSON numbers hold
/// exactly).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredRow {
    pub account: String,
    pub asset: String,
    pub pair: Pair,
    pub class: Class,
    /// Absent: the book does not hold the position.
    pub ledger: Option<String>,
    pub other: Option<String>,
    pub verdict: RowVerdict,
    /// The other book minus the ledger.
    pub difference: String,
    /// For a timing difference the rules that explain it; for a break, those whose grace ran out.
    pub rules: Vec<RuleId>,
    /// For a break: where it stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
}

impl From<&Row> for StoredRow {
    fn from(r: &Row) -> Self {
        let difference = r.other.unwrap_or(0) - r.ledger.unwrap_or(0);
        let rules = match &r.verdict {
            Verdict::Timing { rules } => rules.clone(),
            Verdict::Break { expired, .. } => expired.clone(),
            Verdict::Matched => Vec::new(),
        };
        Self {
            account: r.position.account.clone(),
            asset: r.position.asset.clone(),
            pair: r.pair,
            class: r.class,
            ledger: r.ledger.map(|b| b.to_string()),
            other: r.other.map(|b| b.to_string()),
            verdict: RowVerdict::of(&r.verdict),
            difference: difference.to_string(),
            rules,
            lifecycle: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakStatus {
    Open,
    /// A finance operator accepted it with a note, and a second one approved: runs that
    /// find the same difference report it as accepted, not as a break.
    Accepted,
    /// A later run no longer found it.
    Resolved,
}

/// A break tracked across runs: open from the run that first found it until a run that
/// no longer does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedBreak {
    pub account: String,
    pub asset: String,
    pub pair: Pair,
    pub status: BreakStatus,
    pub first_seen: String,
    pub first_cut_off: DateTime<Utc>,
    pub last_seen: String,
    /// The difference when last seen.
    pub difference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    /// Why it was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

const OPEN_BREAKS: &str = "RECON#BREAKS#OPEN";

pub(crate) fn pair_name(pair: Pair) -> &'static str {
    match pair {
        Pair::LedgerChain => "chain",
        Pair::LedgerCustody => "custody",
    }
}

pub(crate) fn break_key(pair: Pair, account: &str, asset: &str) -> Key {
    Key::new(format!("RECON#BREAK#{}#{account}#{asset}", pair_name(pair)), "BREAK")
}

/// Open and accepted breaks are on the index a complete run walks to resolve those gone.
pub(crate) fn break_item(b: &TrackedBreak) -> Result<Item, StoreError> {
    let item = Item::new(break_key(b.pair, &b.account, &b.asset), b)?;
    Ok(match b.status {
        BreakStatus::Open | BreakStatus::Accepted => {
            item.with_index(OPEN_BREAKS, format!("{}#{}#{}", pair_name(b.pair), b.account, b.asset))
        }
        BreakStatus::Resolved => item,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("a run of this cut-off is in progress")]
    AlreadyRunning,
    #[error("{0}")]
    Store(#[from] StoreError),
}

fn run_key(id: &str) -> Key {
    Key::new(format!("RECON#RUN#{id}"), "RUN")
}

fn row_key(run: &str, row: &StoredRow) -> Key {
    Key::new(format!("RECON#RUN#{run}"), format!("ROW#{}#{}#{}", row.account, row.asset, pair_name(row.pair)))
}

fn cut_off_key(cut_off: DateTime<Utc>) -> Key {
    Key::new(format!("RECON#CUTOFF#{}", sortable(cut_off)), "LOCK")
}

/// The last run of a cut-off.
fn latest_key(cut_off: DateTime<Utc>) -> Key {
    Key::new(format!("RECON#CUTOFF#{}", sortable(cut_off)), "LATEST")
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

/// Where a transfer posted by the cut-off stood with its partners at the cut-off.
struct Flight {
    record: ChainTransfer,
    /// The chain had not recorded it in the block at the cut-off.
    chain: bool,
    /// The Custody had not booked it by the cut-off.
    custody: bool,
}

impl Flight {
    /// What it leaves each reconciled position expecting: the partner that has not taken
    /// it holds the debited amount still, and not the credited one.
    fn pending(&self) -> impl Iterator<Item = Pending> + '_ {
        let r = &self.record;
        let rules = [self.chain.then_some(RuleId::ChainRecordPending), self.custody.then(|| custody_rule(r.code))];
        rules.into_iter().flatten().flat_map(move |rule| {
            [(&r.debit, 1), (&r.credit, -1)].into_iter().filter(|(account, _)| Class::of(account).is_some()).map(
                move |(account, sign)| Pending {
                    position: Position::new(account.clone(), r.asset.clone()),
                    rule,
                    amount: sign * i128::from(r.amount),
                    since: r.at,
                },
            )
        })
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
    allocator: Allocator,
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
            locks: OrderLocks::for_platform(platform),
            allocator: Allocator::for_platform(platform),
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
        let notice = notices::Pending {
            id: id.clone(),
            audience: notices::Audience::Finance,
            notice: notices::Notice::ReconciliationFinished {
                run_id: id.clone(),
                cut_off,
                verdict: run.verdict,
                breaks: run.breaks,
                timing: run.timing,
                resolved: run.resolved,
            },
            at: run.finished_at,
        };
        let writes = vec![
            Write::put(item, Condition::NotExists),
            Write::put(Item::new(latest_key(cut_off), &id)?, Condition::None),
            Write::put(notices::item(&notice)?, Condition::NotExists),
        ];
        self.store.transact(writes).await?;
        if run.verdict == RunVerdict::Incomplete {
            tracing::warn!(run = %id, error = ?run.error, "reconciliation incomplete");
        }
        Ok(run)
    }

    /// What was in flight at the cut-off, per asset, in position order: transfers posted
    /// by then that the chain (in the block at the cut-off) or the Custody (by the cut-off)
    /// had not taken, from the mirror's outbox and its record of deliveries, and DABS locked
    /// in orders open at the cut-off. The outbox is read before the deliveries, so a record
    /// delivered in between is seen; it is a small set (what was in flight), held in memory.
    async fn in_flight(
        &self,
        cut_off: DateTime<Utc>,
        height: u64,
    ) -> Result<BTreeMap<String, VecDeque<Pending>>, Failure> {
        let mut flights: BTreeMap<String, Flight> = BTreeMap::new();
        let posted_by = Range::AtMost(format!("{}\u{10FFFF}", sortable(cut_off)));
        store::each(self.store.as_ref(), &Query::secondary(CHAIN_OUTBOX).range(posted_by), |item| {
            let waiting: Outboxed = item.decode()?;
            let flight = Flight {
                chain: waiting.chain_height.is_none_or(|h| h > height),
                custody: booked_at_custody(&waiting.record),
                record: waiting.record,
            };
            flights.insert(flight.record.transfer_id.clone(), flight);
            Ok(())
        })
        .await?;
        let delivered_since = Query::secondary(DELIVERED).range(Range::AtLeast(sortable(cut_off)));
        store::each(self.store.as_ref(), &delivered_since, |item| {
            let delivered: Delivered = item.decode()?;
            if delivered.record.at <= cut_off {
                let flight = Flight {
                    chain: delivered.chain_height > height,
                    custody: delivered.custody_at.is_some_and(|at| at > cut_off),
                    record: delivered.record,
                };
                flights.insert(flight.record.transfer_id.clone(), flight);
            }
            Ok(())
        })
        .await?;
        let locks = self.locks.open_at(cut_off).await?;
        let mut pending: Vec<Pending> = flights.values().flat_map(Flight::pending).collect();
        pending.extend(self.issuing(cut_off).await?);
        pending.extend(locks.iter().map(|lock| Pending {
            position: Position::new(lock.holding(), lock.asset.clone()),
            rule: RuleId::DabsLockedInOrder,
            amount: i128::from(lock.units),
            since: lock.locked_at,
        }));
        pending.sort_by(|a, b| a.position.cmp(&b.position));
        let mut by_asset: BTreeMap<String, VecDeque<Pending>> = BTreeMap::new();
        for p in pending {
            by_asset.entry(p.position.asset.clone()).or_default().push_back(p);
        }
        Ok(by_asset)
    }

    /// Units the Custody booked when it approved a distribution and the ledger had not
    /// issued by the cut-off: for each distribution approved by then and not wholly issued
    /// by then, each allocation whose issuance transfer was not posted by the cut-off.
    async fn issuing(&self, cut_off: DateTime<Utc>) -> Result<Vec<Pending>, Failure> {
        let mut issuances = Vec::new();
        let approved_by = Range::AtMost(format!("{}\u{10FFFF}", sortable(cut_off)));
        store::each(self.store.as_ref(), &Query::secondary(ISSUANCES).range(approved_by), |item| {
            let issuance: Issuance = item.decode()?;
            if issuance.issuing_at(cut_off) {
                issuances.push(issuance);
            }
            Ok(())
        })
        .await?;
        let mut pending = Vec::new();
        for issuance in issuances {
            let mut cursor = None;
            loop {
                let (page, next) = self.allocator.allocations(&issuance.deal_id, 100, cursor).await?;
                for a in page.iter().filter(|a| a.units() > 0) {
                    let issued =
                        self.ledger.transfer(&issue_transfer_id(&issuance.deal_id, &a.subscription_id)).await?;
                    if issued.is_none_or(|record| record.at > cut_off) {
                        pending.push(Pending {
                            position: Position::new(
                                Account::id_of(Kind::Holding, &a.investor_id, &issuance.asset),
                                issuance.asset.clone(),
                            ),
                            rule: RuleId::SettlementLegPending,
                            amount: i128::from(a.units()),
                            since: issuance.approved_at,
                        });
                    }
                }
                match next {
                    Some(next) => cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(pending)
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

    /// The break as this run leaves it: new, the open one an earlier run found, or the
    /// accepted one if the difference is still the one accepted (a different difference
    /// is a new break).
    async fn track(&self, run: &str, cut_off: DateTime<Utc>, row: &StoredRow) -> Result<TrackedBreak, StoreError> {
        let earlier: Option<TrackedBreak> =
            self.store.get(&break_key(row.pair, &row.account, &row.asset)).await?.map(|i| i.decode()).transpose()?;
        if let Some(mut accepted) = earlier.clone().filter(|b| b.status == BreakStatus::Accepted)
            && accepted.difference == row.difference
        {
            accepted.last_seen = run.to_owned();
            return Ok(accepted);
        }
        let (first_seen, first_cut_off) = match earlier {
            Some(b) if b.status == BreakStatus::Open => (b.first_seen, b.first_cut_off),
            _ => (run.to_owned(), cut_off),
        };
        Ok(TrackedBreak {
            account: row.account.clone(),
            asset: row.asset.clone(),
            pair: row.pair,
            status: BreakStatus::Open,
            first_seen,
            first_cut_off,
            last_seen: run.to_owned(),
            difference: row.difference.clone(),
            resolved_by: None,
            note: None,
        })
    }

    /// Resolves the open breaks this complete run did not find again; answers how many.
    async fn resolve_gone(&self, run: &str) -> Result<u64, StoreError> {
        let mut resolved = 0;
        let mut cursor = None;
        loop {
            let page = self.store.query(&Query::secondary(OPEN_BREAKS).limit(100).after(cursor)).await?;
            for item in &page.items {
                let mut b: TrackedBreak = item.decode()?;
                if b.last_seen == run {
                    continue;
                }
                b.status = BreakStatus::Resolved;
                b.resolved_by = Some(run.to_owned());
                match self.store.put(break_item(&b)?, Condition::VersionIs(item.version)).await {
                    Ok(()) => resolved += 1,
                    // A run of another cut-off touched it meanwhile: it decides.
                    Err(StoreError::ConditionFailed { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(resolved),
            }
        }
    }
}
