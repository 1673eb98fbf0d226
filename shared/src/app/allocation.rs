//! Allocation runs: what happens between a deal's close and its settlement.
//!
//! Closing freezes the book (every ledger step of a subscription is conditioned on the deal
//! being open). A `start` message then makes one streaming pass that settles subscriptions
//! left pending and totals the live ones into the run, and a second that sends one `batch`
//! message per 100 live subscriptions (a batch is named by where it starts in the book, so
//! the messages stay small whatever the book's size). Each batch stores its subscriptions'
//! floors and remainders, write-once, and adds its part to the run's sums with a marker,
//! in one conditional transaction: a duplicate or late batch changes nothing. The batch
//! that completes the run starts the leftover pass, which walks the allocations in
//! remainder order on the secondary index a page at a time, giving one unit each, with its
//! progress (cursor, units given, checksum) in the same transaction as the units. Then the
//! deal is allocated and settlement starts.
//!
//! Every step is resumable: a run in progress is on the work index ([`super::work`]), and
//! the sweep sends `resume` for one that stood still, which picks it up where it stands.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::deals::{Deal, DealError, Deals};
use super::ledger::sortable;
pub use super::messages::{AllocationMessage, request_allocation_start as request_start};
use super::subscriptions::{SubscriptionError, SubscriptionStatus, Subscriptions, book_partition};
use super::work::{self, NudgeError};
use crate::domain::allocation::{Checksum, Totals, rank_key};
use crate::domain::deal::{DealState, Step};
use crate::domain::ledger::Amount;
use crate::ports::queue::{QueueError, QueueName};
use crate::ports::store::{Condition, Contention, Cursor, Index, Item, Key, Query, StoreError, Write};
use crate::ports::{Clock, Queue, Store};

/// Subscriptions per batch message.
pub const BATCH: usize = 100;
/// Allocations given a leftover unit per transaction (each with the run's update).
const LEFTOVER_PAGE: usize = 99;
/// Leftover pages per message before the pass hands over to a new message.
const LEFTOVER_PAGES_PER_MESSAGE: usize = 50;
/// Secondary-index partition of runs in progress, by when they last moved.
const WORK: &str = "WORK#ALLOCATION";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    /// Batches are computing floors and remainders.
    Batching,
    /// The leftover units are being handed out.
    Leftover,
    Complete,
}

/// A deal's allocation run: its inputs, its progress, and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub deal_id: String,
    pub supply: u64,
    pub unit_price: Amount,
    /// Units requested by the live subscriptions.
    pub requested: u128,
    pub subscriptions: u64,
    pub batches: u64,
    /// Every batch message was sent.
    pub dispatched: bool,
    pub batches_done: u64,
    /// Units allocated by the floors.
    pub floors: u128,
    /// Units the floors left over (set when the last batch is in).
    pub leftover: u64,
    pub leftover_given: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leftover_cursor: Option<Cursor>,
    /// [`Checksum`] of every subscription's units, as hex.
    pub checksum: String,
    /// min(1, supply / requested) with 15 decimals: for display and audit.
    pub ratio: String,
    pub state: RunState,
    pub started_at: DateTime<Utc>,
    pub touched_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<DateTime<Utc>>,
    /// Complete, the deal moved on and settlement was asked to start.
    #[serde(default)]
    pub handed_over: bool,
}

impl Run {
    pub fn totals(&self) -> Totals {
        Totals { supply: self.supply, requested: self.requested }
    }

    /// Units allocated so far (all of them once complete).
    pub fn allocated(&self) -> u128 {
        self.floors + u128::from(self.leftover_given)
    }
}

/// One subscription's allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allocation {
    pub subscription_id: String,
    pub deal_id: String,
    pub investor_id: String,
    pub requested: u64,
    /// Cents held for the subscription.
    pub held: Amount,
    pub unit_price: Amount,
    pub floor: u64,
    pub remainder: u128,
    /// Whether a leftover unit went to it.
    #[serde(default)]
    pub bonus: bool,
    pub created_at: DateTime<Utc>,
}

impl Allocation {
    pub fn units(&self) -> u64 {
        self.floor + u64::from(self.bonus)
    }

    /// Cents paid for the units allocated.
    pub fn charged(&self) -> Amount {
        self.units() * self.unit_price
    }

    /// Cents released back to the investor.
    pub fn refunded(&self) -> Amount {
        self.held - self.charged()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AllocationError {
    #[error("no such deal")]
    NotFound,
    #[error("the deal's run has not started")]
    NoRun,
    #[error(transparent)]
    Deal(#[from] DealError),
    #[error(transparent)]
    Subscription(#[from] SubscriptionError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl super::failure::Permanence for AllocationError {
    fn is_permanent(&self) -> bool {
        match self {
            Self::NotFound => true,
            // A start message may still be on its way.
            Self::NoRun | Self::Queue(_) => false,
            Self::Deal(e) => e.is_permanent(),
            Self::Subscription(e) => e.is_permanent(),
            Self::Store(e) => e.is_permanent(),
        }
    }
}

impl From<NudgeError> for AllocationError {
    fn from(e: NudgeError) -> Self {
        match e {
            NudgeError::Store(e) => Self::Store(e),
            NudgeError::Queue(e) => Self::Queue(e),
        }
    }
}

fn run_key(deal_id: &str) -> Key {
    Key::new(format!("RUN#{deal_id}"), "ALLOCATION")
}

fn batch_key(deal_id: &str, index: u64) -> Key {
    Key::new(format!("RUN#{deal_id}"), format!("BATCH#{index:012}"))
}

fn allocation_key(subscription_id: &str) -> Key {
    Key::new(format!("ALLOC#{subscription_id}"), "ALLOC")
}

/// Secondary-index partition of a deal's allocations, in remainder order.
pub fn ranked_partition(deal_id: &str) -> String {
    format!("ALLOCS#{deal_id}")
}

fn run_item(run: &Run) -> Result<Item, StoreError> {
    let item = Item::new(run_key(&run.deal_id), run)?;
    Ok(if run.handed_over { item } else { work::listed(item, WORK, run.touched_at, &run.deal_id) })
}

fn allocation_item(a: &Allocation) -> Result<Item, StoreError> {
    let rank = rank_key(a.remainder, &sortable(a.created_at), &a.subscription_id);
    Ok(Item::new(allocation_key(&a.subscription_id), a)?.with_index(ranked_partition(&a.deal_id), rank))
}

/// A deal's allocation run and its allocations, as recorded: what settlement and
/// reconciliation read.
#[derive(Clone)]
pub struct AllocationRecords {
    store: Arc<dyn Store>,
}

impl AllocationRecords {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    pub async fn run(&self, deal_id: &str) -> Result<Option<Run>, StoreError> {
        Ok(self.run_versioned(deal_id).await?.map(|(run, _)| run))
    }

    pub(crate) async fn run_versioned(&self, deal_id: &str) -> Result<Option<(Run, u64)>, StoreError> {
        Ok(match self.store.get(&run_key(deal_id)).await? {
            Some(item) => Some((item.decode()?, item.version)),
            None => None,
        })
    }

    pub async fn allocation(&self, subscription_id: &str) -> Result<Option<Allocation>, StoreError> {
        self.store.get(&allocation_key(subscription_id)).await?.map(|i| i.decode()).transpose()
    }

    /// A deal's allocations in remainder order, a page at a time.
    pub async fn allocations(
        &self,
        deal_id: &str,
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<(Vec<Allocation>, Option<Cursor>), StoreError> {
        let page = self.store.query(&Query::secondary(ranked_partition(deal_id)).limit(limit).after(cursor)).await?;
        Ok((page.items.iter().map(Item::decode).collect::<Result<_, _>>()?, page.next))
    }
}

/// Runs a closed deal's allocation: counts the book, allocates it in batches, hands over
/// to settlement.
pub struct Allocator {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    queue: Arc<dyn Queue>,
    deals: Deals,
    subscriptions: Subscriptions,
    records: AllocationRecords,
}

impl Allocator {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        queue: Arc<dyn Queue>,
        deals: Deals,
        subscriptions: Subscriptions,
    ) -> Self {
        let records = AllocationRecords::new(store.clone());
        Self { store, clock, queue, deals, subscriptions, records }
    }

    /// What the runs recorded.
    pub fn records(&self) -> &AllocationRecords {
        &self.records
    }

    /// Handles one message of the allocation queue.
    pub async fn handle(&self, message: AllocationMessage) -> Result<(), AllocationError> {
        match message {
            AllocationMessage::Start { deal_id } => self.start(&deal_id, false).await,
            AllocationMessage::Resume { deal_id } => self.start(&deal_id, true).await,
            AllocationMessage::Batch { deal_id, index, after } => self.batch(&deal_id, index, after).await,
            AllocationMessage::Leftover { deal_id } => self.leftover(&deal_id).await,
        }
    }

    /// Starts the run of a closed deal, or carries on where it stands; `resume` sends the
    /// batches again if some never came back.
    pub async fn start(&self, deal_id: &str, resume: bool) -> Result<(), AllocationError> {
        let deal = self.deals.get(deal_id).await?.ok_or(AllocationError::NotFound)?;
        let run = match self.records.run(deal_id).await? {
            Some(run) => run,
            None if matches!(deal.state, DealState::Closed | DealState::Allocating) => {
                let run = self.count(&deal).await?;
                match self.store.put(run_item(&run)?, Condition::NotExists).await {
                    Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                self.records.run(deal_id).await?.ok_or(AllocationError::NoRun)?
            }
            // Not closed (yet, or any more without a run: cancelled).
            None => return Ok(()),
        };
        if deal.state == DealState::Closed {
            self.step(deal_id, Step::StartAllocation).await?;
        }
        match run.state {
            // Not sent yet, or batches went missing: send them (again; duplicates are harmless).
            RunState::Batching if !run.dispatched || resume => self.dispatch(&run).await,
            RunState::Batching => Ok(()),
            RunState::Leftover => self.leftover(deal_id).await,
            RunState::Complete => self.complete(deal_id).await,
        }
    }

    /// Moves the deal, unless it already moved.
    async fn step(&self, deal_id: &str, step: Step) -> Result<(), AllocationError> {
        match self.deals.step("system", deal_id, step).await {
            Ok(_) | Err(DealError::Transition(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The first pass: settles pending subscriptions and totals the live ones.
    async fn count(&self, deal: &Deal) -> Result<Run, AllocationError> {
        let (mut live, mut requested) = (0u64, 0u128);
        let mut cursor = None;
        loop {
            let (subs, next) = self.subscriptions.book(&deal.id, 1_000, cursor).await?;
            for sub in subs {
                let sub = self.subscriptions.resolve_closed(sub).await?;
                if sub.status == SubscriptionStatus::Live {
                    live += 1;
                    requested += u128::from(sub.units);
                }
            }
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let totals = Totals { supply: deal.terms.supply, requested };
        let now = self.clock.now();
        Ok(Run {
            deal_id: deal.id.clone(),
            supply: deal.terms.supply,
            unit_price: deal.terms.unit_price,
            requested,
            subscriptions: live,
            batches: live.div_ceil(BATCH as u64),
            dispatched: false,
            batches_done: 0,
            floors: 0,
            leftover: 0,
            leftover_given: 0,
            leftover_cursor: None,
            checksum: Checksum::default().hex(),
            ratio: totals.ratio(),
            state: RunState::Batching,
            started_at: now,
            touched_at: now,
            completed_at: None,
            handed_over: false,
        })
    }

    /// The second pass: one message per `BATCH` live subscriptions, sent as it goes.
    async fn dispatch(&self, run: &Run) -> Result<(), AllocationError> {
        let mut outgoing = Vec::new();
        let (mut index, mut in_batch, mut batch_after) = (0u64, 0usize, None);
        let mut cursor = None;
        loop {
            let query = Query::secondary(book_partition(&run.deal_id)).limit(1_000).after(cursor);
            let page = self.store.query(&query).await?;
            for item in &page.items {
                let sub: super::subscriptions::Subscription = item.decode()?;
                if sub.status != SubscriptionStatus::Live {
                    continue;
                }
                in_batch += 1;
                if in_batch == BATCH {
                    let after = batch_after.replace(Cursor::after_item(item, Index::Secondary));
                    outgoing.push(AllocationMessage::Batch { deal_id: run.deal_id.clone(), index, after }.body());
                    (index, in_batch) = (index + 1, 0);
                }
            }
            if outgoing.len() >= 100 {
                self.queue.send(QueueName::Allocation, std::mem::take(&mut outgoing)).await?;
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        if in_batch > 0 {
            outgoing.push(AllocationMessage::Batch { deal_id: run.deal_id.clone(), index, after: batch_after }.body());
        }
        if !outgoing.is_empty() {
            self.queue.send(QueueName::Allocation, outgoing).await?;
        }
        let state = self.update(&run.deal_id, |run| run.dispatched = true).await?;
        if state.batches == 0 {
            return self.finish_batches(&run.deal_id).await;
        }
        Ok(())
    }

    /// Applies `change` to the run with a version-conditioned write; answers the run after.
    async fn update(&self, deal_id: &str, change: impl Fn(&mut Run)) -> Result<Run, AllocationError> {
        let mut contention = Contention::default();
        loop {
            let (mut run, version) = self.records.run_versioned(deal_id).await?.ok_or(AllocationError::NoRun)?;
            change(&mut run);
            run.touched_at = self.clock.now();
            match self.store.put(run_item(&run)?, Condition::VersionIs(version)).await {
                Ok(()) => return Ok(run),
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// One batch: stores its allocations (write-once) and adds its part to the run.
    async fn batch(&self, deal_id: &str, index: u64, after: Option<Cursor>) -> Result<(), AllocationError> {
        if self.store.get(&batch_key(deal_id, index)).await?.is_some() {
            return Ok(());
        }
        let run = self.records.run(deal_id).await?.ok_or(AllocationError::NoRun)?;
        let totals = run.totals();
        let mut allocations = Vec::with_capacity(BATCH);
        let mut cursor = after;
        'pages: loop {
            let (subs, next) = self.subscriptions.book(deal_id, BATCH, cursor).await?;
            for sub in subs.into_iter().filter(|s| s.status == SubscriptionStatus::Live) {
                let share = totals.share(sub.units);
                allocations.push(Allocation {
                    subscription_id: sub.id,
                    deal_id: deal_id.to_owned(),
                    investor_id: sub.investor_id,
                    requested: sub.units,
                    held: sub.amount,
                    unit_price: run.unit_price,
                    floor: share.floor,
                    remainder: share.remainder,
                    bonus: false,
                    created_at: sub.created_at,
                });
                if allocations.len() == BATCH {
                    break 'pages;
                }
            }
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        self.write_once(&allocations).await?;
        let floors: u128 = allocations.iter().map(|a| u128::from(a.floor)).sum();
        let mut part = Checksum::default();
        for a in &allocations {
            part.add(&a.subscription_id, a.floor);
        }
        let mut contention = Contention::default();
        loop {
            let (mut run, version) = self.records.run_versioned(deal_id).await?.ok_or(AllocationError::NoRun)?;
            run.batches_done += 1;
            run.floors += floors;
            run.checksum = Checksum::parse(&run.checksum).unwrap_or_default().combine(part).hex();
            run.touched_at = self.clock.now();
            let last = run.batches_done == run.batches;
            if last {
                run.state = RunState::Leftover;
                run.leftover = run.totals().leftover(run.floors);
            }
            let writes = vec![
                Write::put(Item::new(batch_key(deal_id, index), &allocations.len())?, Condition::NotExists),
                Write::put(run_item(&run)?, Condition::VersionIs(version)),
            ];
            match self.store.transact(writes).await {
                Ok(()) if last => return self.leftover(deal_id).await,
                Ok(()) => return Ok(()),
                // A duplicate delivery counted it first.
                Err(StoreError::ConditionFailed { index: 0, .. }) => return Ok(()),
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Writes allocations that do not exist yet; existing ones stay as they are (a duplicate
    /// batch must not undo a leftover unit already given).
    async fn write_once(&self, allocations: &[Allocation]) -> Result<(), AllocationError> {
        let puts = |list: &[Allocation]| -> Result<Vec<Write>, StoreError> {
            list.iter().map(|a| Ok(Write::put(allocation_item(a)?, Condition::NotExists))).collect()
        };
        match self.store.transact(puts(allocations)?).await {
            Ok(()) => Ok(()),
            Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => {
                for write in puts(allocations)? {
                    match self.store.transact(vec![write]).await {
                        Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Once every batch is in: to the leftover pass (nothing to give when not oversubscribed).
    async fn finish_batches(&self, deal_id: &str) -> Result<(), AllocationError> {
        self.update(deal_id, |run| {
            if run.state == RunState::Batching && run.batches_done == run.batches {
                run.state = RunState::Leftover;
                run.leftover = run.totals().leftover(run.floors);
            }
        })
        .await?;
        self.leftover(deal_id).await
    }

    /// Gives the leftover units one each in remainder order, a page per transaction with
    /// the run's progress; hands over to a new message after a while.
    async fn leftover(&self, deal_id: &str) -> Result<(), AllocationError> {
        let mut contention = Contention::default();
        for _ in 0..LEFTOVER_PAGES_PER_MESSAGE {
            let (mut run, version) = self.records.run_versioned(deal_id).await?.ok_or(AllocationError::NoRun)?;
            match run.state {
                RunState::Batching => return Ok(()),
                RunState::Complete => return self.complete(deal_id).await,
                RunState::Leftover => {}
            }
            let need = (run.leftover - run.leftover_given) as usize;
            let now = self.clock.now();
            run.touched_at = now;
            if need == 0 {
                run.state = RunState::Complete;
                run.completed_at = Some(now);
                match self.store.put(run_item(&run)?, Condition::VersionIs(version)).await {
                    Ok(()) => return self.complete(deal_id).await,
                    Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => {
                        contention.lost().await?;
                        continue;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let query = Query::secondary(ranked_partition(deal_id))
                .limit(need.min(LEFTOVER_PAGE))
                .after(run.leftover_cursor.clone());
            let page = self.store.query(&query).await?;
            let Some(last) = page.items.last() else {
                return Err(
                    StoreError::Invalid(format!("deal {deal_id}: fewer allocations than leftover units")).into()
                );
            };
            run.leftover_cursor = Some(Cursor::after_item(last, Index::Secondary));
            let mut checksum = Checksum::parse(&run.checksum).unwrap_or_default();
            let mut writes = Vec::with_capacity(page.items.len() + 1);
            for item in &page.items {
                let mut a: Allocation = item.decode()?;
                checksum.remove(&a.subscription_id, a.units());
                a.bonus = true;
                checksum.add(&a.subscription_id, a.units());
                writes.push(Write::put(allocation_item(&a)?, Condition::VersionIs(item.version)));
            }
            run.leftover_given += page.items.len() as u64;
            run.checksum = checksum.hex();
            writes.push(Write::put(run_item(&run)?, Condition::VersionIs(version)));
            match self.store.transact(writes).await {
                Ok(()) => {}
                // Another pass moved first: read the run again.
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
        let next = AllocationMessage::Leftover { deal_id: deal_id.to_owned() };
        self.queue.send(QueueName::Allocation, vec![next.body()]).await?;
        Ok(())
    }

    /// The run is complete: the deal is allocated and settlement starts.
    async fn complete(&self, deal_id: &str) -> Result<(), AllocationError> {
        self.step(deal_id, Step::FinishAllocation).await?;
        super::messages::request_settlement_start(self.queue.as_ref(), deal_id).await?;
        self.update(deal_id, |run| run.handed_over = true).await?;
        Ok(())
    }

    /// Sends `resume` for every run that stood still longer than [`work::NUDGE_AFTER`];
    /// answers how many.
    pub async fn nudge_stale(&self) -> Result<usize, AllocationError> {
        let start = |deal_id: &str| AllocationMessage::Resume { deal_id: deal_id.to_owned() }.body();
        let (store, clock, queue) = (self.store.as_ref(), self.clock.as_ref(), self.queue.as_ref());
        Ok(work::nudge_stale(store, clock, queue, (WORK, QueueName::Allocation), start).await?)
    }
}
