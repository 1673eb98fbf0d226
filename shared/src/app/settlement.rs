//! Settlement: a persisted state machine per deal, advanced by `advance` messages on the
//! settlement queue, every step idempotent.
//!
//! 1. **Money legs**, per subscription, a page of allocations at a time: the hold is posted
//!    for the amount charged (the rest is released: the refund), or voided when nothing
//!    was allocated. Transfer ids are `settle:<deal>:<subscription>:post|void`.
//! 2. **Proceeds**: the escrow's total moves to the issuer's settlement account, at the
//!    Custody (reference `<deal>:proceeds`) and in the ledger (a hold, posted when the
//!    Custody confirms).
//! 3. **Distribution**: each subscription's units, in pages, then submitted with the
//!    allocation run's checksum for the Custody's approval (reference `<deal>:distribution`).
//! 4. **Issuing**, only once approved (by the Custody's signed callback or by polling):
//!    units move from the asset's issuance account into each investor's holding, which
//!    the chain mirror then records.
//!
//! Each external call is a leg with a deadline: a call that failed or timed out is looked
//! up by its reference and made again on the next advance; a leg past its deadline, or
//! refused, is stuck until a finance operator retries it. A rejected distribution stops
//! the deal at `issuance_rejected`, with nothing issued. Progress (phase, cursor, sums) is
//! written with a version condition after each page, so a crash or a duplicate message
//! resumes without doing anything twice.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::allocation::{Allocation, Allocator, RunState};
use super::audit::{AuditLog, Event};
use super::deals::{DealError, Deals};
use super::ledger::{Ledger, LedgerError, MAX_LINKED, sortable};
use super::messages::request_settlement_advance;
pub use super::messages::{SettlementMessage, request_settlement_start as request_start};
use super::subscriptions::hold_of;
use super::work::{self, NudgeError};
use crate::domain::deal::Step;
use crate::domain::ledger::{Account, Amount, Kind, SGD, Transfer, codes};
pub use crate::domain::settlement::{LegKind, LegStatus, Phase};
use crate::ports::custody::{Custody, CustodyTransfer, Decision, Distribution, DistributionEntry};
use crate::ports::partner::PartnerError;
use crate::ports::queue::{QueueError, QueueName};
use crate::ports::store::{Condition, Contention, Cursor, Item, Key, Query, StoreError, Write};
use crate::ports::{Clock, Queue, Store};

/// Allocations settled per page (per state write).
const LEGS_PAGE: usize = 98;
/// Distribution entries per page sent to the Custody.
const DISTRIBUTION_PAGE: usize = 500;
/// Pages done per message before handing over to a new message.
const PAGES_PER_MESSAGE: usize = 40;
/// How long an external leg may stay unconfirmed before it is surfaced as stuck.
pub const LEG_DEADLINE: TimeDelta = TimeDelta::minutes(15);
const WORK: &str = "WORK#SETTLEMENT";

/// A deal's settlement: where it stands and what it has done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementState {
    pub deal_id: String,
    pub asset: String,
    pub escrow_account: String,
    pub issuer_account: String,
    pub issuance_account: String,
    pub phase: Phase,
    /// From the allocation run.
    pub subscriptions: u64,
    pub units: u64,
    pub checksum: String,
    /// Where the current phase's walk over the allocations stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<Cursor>,
    /// Subscriptions whose hold was posted or voided, and the sums.
    pub settled: u64,
    pub charged: u128,
    pub refunded: u128,
    pub pages_sent: u32,
    pub entries_sent: u64,
    /// Subscriptions issued to, and the units issued.
    pub issued: u64,
    pub issued_units: u128,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// When the platform learnt of the Custody's approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approved_at: Option<DateTime<Utc>>,
    pub started_at: DateTime<Utc>,
    pub touched_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// Finished, and the deal moved to `issued` or `issuance_rejected`.
    #[serde(default)]
    pub deal_moved: bool,
}

impl SettlementState {
    fn finished(&self) -> bool {
        self.phase.is_finished()
    }
}

/// An external call of a settlement, pending until the partner confirms it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    pub id: String,
    pub deal_id: String,
    pub kind: LegKind,
    /// The reference the partner knows it by.
    pub reference: String,
    pub status: LegStatus,
    pub attempts: u32,
    pub deadline: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettlementError {
    #[error("no such deal, settlement or leg")]
    NotFound,
    #[error("the deal's allocation is not complete")]
    NotAllocated,
    #[error("the leg is {0} and cannot be retried")]
    NotRetryable(&'static str),
    #[error(transparent)]
    Deal(#[from] DealError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl super::consumer::Permanence for SettlementError {
    fn is_permanent(&self) -> bool {
        match self {
            Self::NotFound | Self::NotRetryable(_) => true,
            // The allocation may complete yet; a queue is there again later.
            Self::NotAllocated | Self::Queue(_) => false,
            Self::Deal(e) => e.is_permanent(),
            Self::Ledger(e) => e.is_permanent(),
            Self::Store(e) => e.is_permanent(),
        }
    }
}

impl From<NudgeError> for SettlementError {
    fn from(e: NudgeError) -> Self {
        match e {
            NudgeError::Store(e) => Self::Store(e),
            NudgeError::Queue(e) => Self::Queue(e),
        }
    }
}

fn state_key(deal_id: &str) -> Key {
    Key::new(format!("SETTLE#{deal_id}"), "STATE")
}

fn state_item(state: &SettlementState) -> Result<Item, StoreError> {
    let item = Item::new(state_key(&state.deal_id), state)?;
    Ok(if state.finished() && state.deal_moved {
        item
    } else {
        work::listed(item, WORK, state.touched_at, &state.deal_id)
    })
}

/// Secondary-index partition of approved distributions, by approval time.
pub const ISSUANCES: &str = "SETTLEMENT#ISSUANCES";
/// How long an issuance's record is kept once done (reconciliations up to a week back).
const KEEP_ISSUANCE: TimeDelta = TimeDelta::days(7);

/// An approved distribution: from its approval until its units are all issued in the
/// ledger, the Custody holds units the ledger does not yet (see `docs/reconciliation.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issuance {
    pub deal_id: String,
    pub asset: String,
    pub approved_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<DateTime<Utc>>,
}

impl Issuance {
    /// Whether the distribution was approved and not yet wholly issued at `at`.
    pub fn issuing_at(&self, at: DateTime<Utc>) -> bool {
        self.approved_at <= at && self.issued_at.is_none_or(|issued| issued > at)
    }
}

fn issuance_item(state: &SettlementState) -> Result<Option<Item>, StoreError> {
    let Some(approved_at) = state.approved_at else { return Ok(None) };
    let issued_at = (state.phase == Phase::Issued).then_some(state.finished_at).flatten();
    let issuance = Issuance { deal_id: state.deal_id.clone(), asset: state.asset.clone(), approved_at, issued_at };
    let item = Item::new(Key::new(format!("ISSUANCE#{}", state.deal_id), "ISSUANCE"), &issuance)?
        .with_index(ISSUANCES, format!("{}#{}", sortable(approved_at), state.deal_id));
    Ok(Some(match issued_at {
        Some(at) => item.expiring_at(at + KEEP_ISSUANCE),
        None => item,
    }))
}

/// The ledger transfer that issues a subscription's units.
pub fn issue_transfer_id(deal_id: &str, subscription_id: &str) -> String {
    format!("settle:{deal_id}:{subscription_id}:issue")
}

fn leg_key(id: &str) -> Key {
    Key::new(format!("LEG#{id}"), "LEG")
}

fn leg_item(leg: &Leg) -> Result<Item, StoreError> {
    Ok(Item::new(leg_key(&leg.id), leg)?.with_index(format!("LEGS#{}", leg.deal_id), &leg.id))
}

fn leg_id(deal_id: &str, kind: LegKind) -> String {
    match kind {
        LegKind::Proceeds => format!("{deal_id}.proceeds"),
        LegKind::Distribution => format!("{deal_id}.distribution"),
    }
}

/// What a step did: go on to the next, or wait for a partner, an operator or a message.
enum Next {
    Continue,
    Wait,
}

pub struct Settlements {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    queue: Arc<dyn Queue>,
    custody: Arc<dyn Custody>,
    ledger: Ledger,
    deals: Deals,
    allocator: Allocator,
    audit: AuditLog,
}

impl Settlements {
    pub fn for_platform(platform: &crate::Platform) -> Self {
        Self {
            store: platform.store.clone(),
            clock: platform.clock.clone(),
            queue: platform.queue.clone(),
            custody: platform.custody.clone(),
            ledger: Ledger::for_platform(platform),
            deals: Deals::for_platform(platform),
            allocator: Allocator::for_platform(platform),
            audit: AuditLog::new(platform.store.clone(), platform.clock.clone()),
        }
    }

    pub async fn state(&self, deal_id: &str) -> Result<Option<SettlementState>, StoreError> {
        Ok(self.state_versioned(deal_id).await?.map(|(s, _)| s))
    }

    async fn state_versioned(&self, deal_id: &str) -> Result<Option<(SettlementState, u64)>, StoreError> {
        Ok(match self.store.get(&state_key(deal_id)).await? {
            Some(item) => Some((item.decode()?, item.version)),
            None => None,
        })
    }

    pub async fn leg(&self, id: &str) -> Result<Option<Leg>, StoreError> {
        self.store.get(&leg_key(id)).await?.map(|i| i.decode()).transpose()
    }

    /// A deal's external legs.
    pub async fn legs(&self, deal_id: &str) -> Result<Vec<Leg>, StoreError> {
        let page = self.store.query(&Query::secondary(format!("LEGS#{deal_id}")).limit(100)).await?;
        page.items.iter().map(Item::decode).collect()
    }

    /// Whether a leg waits for an operator: stuck, or still pending past its deadline.
    pub fn is_stuck(&self, leg: &Leg) -> bool {
        leg.status.waits_for_operator(leg.deadline, self.clock.now())
    }

    /// Handles one message of the settlement queue.
    pub async fn handle(&self, message: SettlementMessage) -> Result<(), SettlementError> {
        match message {
            SettlementMessage::Start { deal_id } => self.start(&deal_id).await,
            SettlementMessage::Advance { deal_id } => self.advance(&deal_id).await,
        }
    }

    /// Starts the settlement of a deal whose allocation is complete (again: resumes it).
    pub async fn start(&self, deal_id: &str) -> Result<(), SettlementError> {
        if self.state(deal_id).await?.is_none() {
            let deal = self.deals.get(deal_id).await?.ok_or(SettlementError::NotFound)?;
            let run = self.allocator.run(deal_id).await?.filter(|r| r.state == RunState::Complete);
            let run = run.ok_or(SettlementError::NotAllocated)?;
            let issuer = Account::of(Kind::IssuerSettlement, &deal.issuer_id, SGD);
            let issuance = Account::of(Kind::Issuance, &deal.id, &deal.asset);
            let now = self.clock.now();
            let state = SettlementState {
                deal_id: deal.id.clone(),
                asset: deal.asset.clone(),
                escrow_account: deal.escrow_account.clone(),
                issuer_account: issuer.id.clone(),
                issuance_account: issuance.id.clone(),
                phase: Phase::Legs,
                subscriptions: run.subscriptions,
                units: u64::try_from(run.allocated()).unwrap_or(u64::MAX),
                checksum: run.checksum.clone(),
                cursor: None,
                settled: 0,
                charged: 0,
                refunded: 0,
                pages_sent: 0,
                entries_sent: 0,
                issued: 0,
                issued_units: 0,
                decision: None,
                approved_at: None,
                started_at: now,
                touched_at: now,
                finished_at: None,
                deal_moved: false,
            };
            self.ledger.open(issuer).await?;
            self.ledger.open(issuance).await?;
            match self.store.put(state_item(&state)?, Condition::NotExists).await {
                Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        self.step(deal_id, Step::StartSettlement).await?;
        self.advance(deal_id).await
    }

    async fn step(&self, deal_id: &str, step: Step) -> Result<(), SettlementError> {
        match self.deals.step("system", deal_id, step).await {
            Ok(_) | Err(DealError::Transition(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Does the next steps: until the settlement waits or finishes, or for a while, then
    /// hands over to a new message.
    pub async fn advance(&self, deal_id: &str) -> Result<(), SettlementError> {
        for _ in 0..PAGES_PER_MESSAGE {
            let (state, version) = self.state_versioned(deal_id).await?.ok_or(SettlementError::NotFound)?;
            let next = match state.phase {
                Phase::Legs => self.money_legs(state, version).await?,
                Phase::Proceeds => self.proceeds(state, version).await?,
                Phase::Distribution => self.distribution(state, version).await?,
                Phase::AwaitingApproval => self.await_approval(state, version).await?,
                Phase::Issuing => self.issue(state, version).await?,
                Phase::Issued | Phase::Rejected => return self.move_deal(state, version).await,
            };
            if let Next::Wait = next {
                return Ok(());
            }
        }
        request_settlement_advance(self.queue.as_ref(), deal_id).await?;
        Ok(())
    }

    /// Writes the state at its version; `false` if someone else moved it first.
    async fn save(&self, mut state: SettlementState, version: u64) -> Result<bool, SettlementError> {
        state.touched_at = self.clock.now();
        let item = state_item(&state)?;
        // Once approved, the issuance's record moves with the state.
        let saved = match issuance_item(&state)? {
            Some(issuance) => {
                let writes =
                    vec![Write::put(item, Condition::VersionIs(version)), Write::put(issuance, Condition::None)];
                self.store.transact(writes).await
            }
            None => self.store.put(item, Condition::VersionIs(version)).await,
        };
        match saved {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Posts the charged part of each hold (the rest is released), or voids it.
    async fn money_legs(&self, mut state: SettlementState, version: u64) -> Result<Next, SettlementError> {
        let (page, next) = self.allocator.allocations(&state.deal_id, LEGS_PAGE, state.cursor.clone()).await?;
        let transfers: Vec<Transfer> = page.iter().map(|a| money_leg(&state, a)).collect();
        for chunk in transfers.chunks(MAX_LINKED) {
            self.ledger.submit_linked(chunk).await?;
        }
        state.settled += page.len() as u64;
        state.charged += page.iter().map(|a| u128::from(a.charged())).sum::<u128>();
        state.refunded += page.iter().map(|a| u128::from(a.refunded())).sum::<u128>();
        state.cursor = next.clone();
        if next.is_none() {
            state.phase = Phase::after_legs(state.charged);
        }
        self.save(state, version).await?;
        Ok(Next::Continue)
    }

    /// The leg of `kind`, made pending with a deadline on first use.
    async fn open_leg(&self, deal_id: &str, kind: LegKind) -> Result<Leg, SettlementError> {
        let id = leg_id(deal_id, kind);
        if let Some(leg) = self.leg(&id).await? {
            return Ok(leg);
        }
        let now = self.clock.now();
        let leg = Leg {
            reference: id.replace('.', ":"),
            id: id.clone(),
            deal_id: deal_id.to_owned(),
            kind,
            status: LegStatus::Pending,
            attempts: 0,
            deadline: now + LEG_DEADLINE,
            last_error: None,
            created_at: now,
            updated_at: now,
        };
        match self.store.put(leg_item(&leg)?, Condition::NotExists).await {
            Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.leg(&id).await?.ok_or(SettlementError::NotFound)
    }

    /// Records what became of a leg's call.
    async fn mark_leg(&self, id: &str, change: impl Fn(&mut Leg)) -> Result<Leg, SettlementError> {
        let mut contention = Contention::default();
        loop {
            let item = self.store.get(&leg_key(id)).await?.ok_or(SettlementError::NotFound)?;
            let mut leg: Leg = item.decode()?;
            change(&mut leg);
            leg.updated_at = self.clock.now();
            match self.store.put(leg_item(&leg)?, Condition::VersionIs(item.version)).await {
                Ok(()) => return Ok(leg),
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A failed call: try again on the next advance if the error is one to retry and the
    /// deadline has not passed; otherwise the leg waits for an operator.
    async fn leg_failed(&self, leg: &Leg, error: &PartnerError) -> Result<Next, SettlementError> {
        let stuck = LegStatus::stuck_after_failure(error.is_retryable(), leg.deadline, self.clock.now());
        let message = error.to_string();
        self.mark_leg(&leg.id, |l| {
            l.attempts += 1;
            l.last_error = Some(message.clone());
            if stuck {
                l.status = LegStatus::Stuck;
            }
        })
        .await?;
        tracing::warn!(leg = %leg.id, %error, stuck, "settlement leg not confirmed");
        Ok(Next::Wait)
    }

    /// A leg that waits for an operator: marked stuck once its deadline passed.
    async fn waits_for_operator(&self, leg: &Leg) -> Result<bool, SettlementError> {
        match leg.status {
            LegStatus::Stuck | LegStatus::Rejected => Ok(true),
            LegStatus::Pending if leg.deadline <= self.clock.now() => {
                self.mark_leg(&leg.id, |l| {
                    l.status = LegStatus::Stuck;
                    l.last_error.get_or_insert_with(|| "past its deadline".into());
                })
                .await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The proceeds to the issuer: held in the ledger, booked at the Custody (looked up
    /// first after an unanswered attempt), then posted.
    async fn proceeds(&self, mut state: SettlementState, version: u64) -> Result<Next, SettlementError> {
        let leg = self.open_leg(&state.deal_id, LegKind::Proceeds).await?;
        let amount = Amount::try_from(state.charged).map_err(|_| LedgerError::Invalid("proceeds too large".into()))?;
        let hold = Transfer::pending(
            format!("settle:{}:proceeds", state.deal_id),
            &state.escrow_account,
            &state.issuer_account,
            amount,
            SGD,
            codes::PROCEEDS,
        )
        .with_reference(&leg.reference);
        if leg.status != LegStatus::Confirmed {
            if self.waits_for_operator(&leg).await? {
                return Ok(Next::Wait);
            }
            self.ledger.submit(&hold).await?;
            let booked = match leg.attempts {
                0 => None,
                _ => match self.custody.find_transfer(&leg.reference).await {
                    Ok(found) => found,
                    Err(e) => return self.leg_failed(&leg, &e).await,
                },
            };
            if booked.is_none() {
                let transfer = CustodyTransfer {
                    reference: leg.reference.clone(),
                    debit: state.escrow_account.clone(),
                    credit: state.issuer_account.clone(),
                    asset: SGD.to_owned(),
                    amount,
                };
                match self.custody.transfer(&transfer).await {
                    Ok(_) => {}
                    // The reference is taken: booked by an attempt whose answer was lost,
                    // or still in flight. Found, it is booked; not yet, it is retried.
                    Err(PartnerError::Conflict(_)) => match self.custody.find_transfer(&leg.reference).await {
                        Ok(Some(_)) => {}
                        Ok(None) => return self.leg_failed(&leg, &PartnerError::Timeout).await,
                        Err(e) => return self.leg_failed(&leg, &e).await,
                    },
                    Err(e) => return self.leg_failed(&leg, &e).await,
                }
            }
            self.mark_leg(&leg.id, |l| {
                l.status = LegStatus::Confirmed;
                l.last_error = None;
            })
            .await?;
        }
        self.ledger.submit(&Transfer::post(format!("{}:post", hold.id), &hold, amount)).await?;
        state.phase = Phase::Distribution;
        state.cursor = None;
        self.save(state, version).await?;
        Ok(Next::Continue)
    }

    /// Sends the distribution's pages, then submits it.
    async fn distribution(&self, mut state: SettlementState, version: u64) -> Result<Next, SettlementError> {
        let leg = self.open_leg(&state.deal_id, LegKind::Distribution).await?;
        if self.waits_for_operator(&leg).await? {
            return Ok(Next::Wait);
        }
        let sent_all = state.pages_sent > 0 && state.cursor.is_none();
        if !sent_all {
            let (page, next) =
                self.allocator.allocations(&state.deal_id, DISTRIBUTION_PAGE, state.cursor.clone()).await?;
            let entries: Vec<DistributionEntry> = page
                .iter()
                .map(|a| DistributionEntry {
                    subscription_id: a.subscription_id.clone(),
                    account: Account::id_of(Kind::Holding, &a.investor_id, &state.asset),
                    units: a.units(),
                })
                .collect();
            if let Err(e) = self.custody.put_entries(&leg.reference, state.pages_sent, &entries).await {
                return self.leg_failed(&leg, &e).await;
            }
            state.pages_sent += 1;
            state.entries_sent += entries.len() as u64;
            state.cursor = next;
            self.save(state, version).await?;
            return Ok(Next::Continue);
        }
        let submitted = Distribution {
            reference: leg.reference.clone(),
            asset: state.asset.clone(),
            pages: state.pages_sent,
            entries: state.entries_sent,
            units: state.units,
            checksum: state.checksum.clone(),
        };
        let decision = match self.custody.decision(&leg.reference).await {
            Ok(Some(decision)) => decision,
            Ok(None) => match self.custody.submit(&submitted).await {
                Ok(decision) => decision,
                Err(e) => return self.leg_failed(&leg, &e).await,
            },
            Err(e) => return self.leg_failed(&leg, &e).await,
        };
        self.decided(state, version, decision).await
    }

    /// Polls the Custody for its decision.
    async fn await_approval(&self, state: SettlementState, version: u64) -> Result<Next, SettlementError> {
        let leg = self.open_leg(&state.deal_id, LegKind::Distribution).await?;
        if self.waits_for_operator(&leg).await? {
            return Ok(Next::Wait);
        }
        match self.custody.decision(&leg.reference).await {
            Ok(Some(decision)) => self.decided(state, version, decision).await,
            Ok(None) => {
                // Never submitted (lost): send the pages again.
                let mut state = state;
                (state.phase, state.cursor, state.pages_sent, state.entries_sent) = (Phase::Distribution, None, 0, 0);
                self.save(state, version).await?;
                Ok(Next::Continue)
            }
            Err(e) => self.leg_failed(&leg, &e).await,
        }
    }

    /// Applies the Custody's decision on the distribution.
    async fn decided(
        &self,
        mut state: SettlementState,
        version: u64,
        decision: Decision,
    ) -> Result<Next, SettlementError> {
        let id = leg_id(&state.deal_id, LegKind::Distribution);
        let status = match &decision {
            Decision::Pending => {
                if state.phase != Phase::AwaitingApproval {
                    state.phase = Phase::AwaitingApproval;
                    state.decision = Some(decision);
                    self.save(state, version).await?;
                }
                return Ok(Next::Wait);
            }
            decided => LegStatus::on_decision(matches!(decided, Decision::Approved)),
        };
        self.mark_leg(&id, |l| {
            l.status = status;
            l.last_error = None;
        })
        .await?;
        state.decision = Some(decision);
        state.cursor = None;
        if status == LegStatus::Rejected {
            return self.finish(state, version, Phase::Rejected).await;
        }
        state.phase = Phase::Issuing;
        state.approved_at = Some(self.clock.now());
        self.save(state, version).await?;
        Ok(Next::Continue)
    }

    /// Ends the settlement at `phase`; the deal follows on the next pass.
    async fn finish(&self, mut state: SettlementState, version: u64, phase: Phase) -> Result<Next, SettlementError> {
        state.phase = phase;
        state.finished_at = Some(self.clock.now());
        self.save(state, version).await?;
        Ok(Next::Continue)
    }

    /// Moves the deal to where its finished settlement ended, once; until then the
    /// settlement stays on the work index, so a crash before this is nudged to it.
    async fn move_deal(&self, mut state: SettlementState, version: u64) -> Result<(), SettlementError> {
        if state.deal_moved {
            return Ok(());
        }
        let step = if state.phase == Phase::Issued { Step::Issue } else { Step::RejectIssuance };
        self.step(&state.deal_id, step).await?;
        state.deal_moved = true;
        self.save(state, version).await?;
        Ok(())
    }

    /// Credits a page of holdings from the asset's issuance account.
    async fn issue(&self, mut state: SettlementState, version: u64) -> Result<Next, SettlementError> {
        let (page, next) = self.allocator.allocations(&state.deal_id, MAX_LINKED, state.cursor.clone()).await?;
        let given: Vec<&Allocation> = page.iter().filter(|a| a.units() > 0).collect();
        let mut transfers = Vec::with_capacity(given.len());
        for a in &given {
            let holding = Account::of(Kind::Holding, &a.investor_id, &state.asset);
            transfers.push(
                Transfer::single(
                    issue_transfer_id(&state.deal_id, &a.subscription_id),
                    &state.issuance_account,
                    &holding.id,
                    a.units(),
                    &state.asset,
                    codes::ISSUANCE,
                )
                .with_reference(&a.subscription_id),
            );
            self.ledger.open(holding).await?;
        }
        if !transfers.is_empty() {
            self.ledger.submit_linked(&transfers).await?;
        }
        state.issued += given.len() as u64;
        state.issued_units += given.iter().map(|a| u128::from(a.units())).sum::<u128>();
        state.cursor = next.clone();
        if next.is_none() {
            return self.finish(state, version, Phase::Issued).await;
        }
        self.save(state, version).await?;
        Ok(Next::Continue)
    }

    /// The Custody's signed callback: its decision on a distribution.
    pub async fn on_decision(&self, reference: &str, decision: Decision) -> Result<(), SettlementError> {
        let Some(deal_id) = reference.strip_suffix(":distribution") else { return Err(SettlementError::NotFound) };
        let (state, version) = self.state_versioned(deal_id).await?.ok_or(SettlementError::NotFound)?;
        if matches!(state.phase, Phase::Distribution | Phase::AwaitingApproval) && decision != Decision::Pending {
            self.decided(state, version, decision).await?;
            request_settlement_advance(self.queue.as_ref(), deal_id).await?;
        }
        Ok(())
    }

    /// A finance operator retries a stuck leg: pending again with a new deadline (audited).
    pub async fn retry(&self, actor: &str, leg_id: &str) -> Result<Leg, SettlementError> {
        let leg = self.leg(leg_id).await?.ok_or(SettlementError::NotFound)?;
        let status = leg.status.retried().map_err(SettlementError::NotRetryable)?;
        let deadline = self.clock.now() + LEG_DEADLINE;
        let leg = self
            .mark_leg(leg_id, |l| {
                l.status = status;
                l.deadline = deadline;
            })
            .await?;
        let reason =
            format!("attempts so far {}; last error: {}", leg.attempts, leg.last_error.as_deref().unwrap_or("-"));
        let event = Event::applied(actor, "settlement.leg.retry", &format!("leg:{leg_id}"), reason);
        self.audit.append(event).await?;
        request_settlement_advance(self.queue.as_ref(), &leg.deal_id).await?;
        Ok(leg)
    }

    /// Sends `advance` for every settlement that stood still longer than [`work::NUDGE_AFTER`].
    pub async fn nudge_stale(&self) -> Result<usize, SettlementError> {
        let advance = |deal_id: &str| SettlementMessage::Advance { deal_id: deal_id.to_owned() }.body();
        let (store, clock, queue) = (self.store.as_ref(), self.clock.as_ref(), self.queue.as_ref());
        Ok(work::nudge_stale(store, clock, queue, (WORK, QueueName::Settlement), advance).await?)
    }
}

/// A subscription's money leg: post what it was charged (the rest is released), or void.
fn money_leg(state: &SettlementState, a: &Allocation) -> Transfer {
    let hold = hold_of(&a.subscription_id, &a.investor_id, &state.escrow_account, a.held);
    let id = format!("settle:{}:{}", state.deal_id, a.subscription_id);
    match a.charged() {
        0 => Transfer::void(format!("{id}:void"), &hold),
        charged => Transfer::post(format!("{id}:post"), &hold, charged),
    }
}
