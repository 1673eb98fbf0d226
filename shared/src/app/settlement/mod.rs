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

mod legs;
mod phases;
mod state;

use std::sync::Arc;

use self::legs::leg_key;
pub use self::legs::{LEG_DEADLINE, Leg};
pub use self::state::{ISSUANCES, Issuance, SettlementState, issue_transfer_id};
use self::state::{WORK, state_item};
use super::allocation::{AllocationRecords, RunState};
use super::audit::{AuditLog, Event};
use super::deals::{DealError, Deals};
use super::ledger::{Ledger, LedgerError};
use super::messages::request_settlement_advance;
pub use super::messages::{SettlementMessage, request_settlement_start as request_start};
use super::work::{self, NudgeError};
use crate::domain::deal::Step;
use crate::domain::ledger::{Account, Kind, SGD};
pub use crate::domain::settlement::{LegKind, LegStatus, Phase};
use crate::ports::custody::{Custody, Decision};
use crate::ports::queue::{QueueError, QueueName};
use crate::ports::store::{Condition, Item, Query, StoreError};
use crate::ports::{Clock, Queue, Store};

/// Allocations settled per page (per state write).
const LEGS_PAGE: usize = 98;
/// Distribution entries per page sent to the Custody.
const DISTRIBUTION_PAGE: usize = 500;
/// Pages done per message before handing over to a new message.
const PAGES_PER_MESSAGE: usize = 40;

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

impl super::failure::Permanence for SettlementError {
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
    allocations: AllocationRecords,
    audit: AuditLog,
}

impl Settlements {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        queue: Arc<dyn Queue>,
        custody: Arc<dyn Custody>,
        ledger: Ledger,
        deals: Deals,
        audit: AuditLog,
    ) -> Self {
        let allocations = AllocationRecords::new(store.clone());
        Self { store, clock, queue, custody, ledger, deals, allocations, audit }
    }

    pub async fn state(&self, deal_id: &str) -> Result<Option<SettlementState>, StoreError> {
        Ok(self.state_versioned(deal_id).await?.map(|(s, _)| s))
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
            let run = self.allocations.run(deal_id).await?.filter(|r| r.state == RunState::Complete);
            let run = run.ok_or(SettlementError::NotAllocated)?;
            let issuer = Account::of(Kind::IssuerSettlement, &deal.issuer_id, SGD);
            let issuance = Account::of(Kind::Issuance, &deal.id, &deal.asset);
            let now = self.clock.now();
            let state = SettlementState {
                deal_id: deal.id.clone(),
                asset: deal.asset.clone(),
                deal_name: deal.terms.building.name.clone(),
                ratio: run.ratio.clone(),
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
