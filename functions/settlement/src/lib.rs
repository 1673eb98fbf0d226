//! The `settlement` function: settlement steps (money legs, issuance), Custody callbacks,
//! and the ledger's follow-ups: the chain mirror's outbox, holds past their timeout, and
//! payout instructions the bank did not answer.
//!
//! It consumes the settlement queue (`start` and `advance`, see [`shared::app::settlement`]).
//! The table's stream (outbox items) and a one-minute schedule wake the sweep, which also
//! starts the allocation of closed deals and nudges allocation runs and settlements that
//! stood still.

use std::sync::Arc;

use async_trait::async_trait;
use shared::Platform;
use shared::app::allocation::{self, Allocator};
use shared::app::consumer::{BatchHandler, each_message};
use shared::app::deals::Deals;
use shared::app::deposits::DepositAccounts;
use shared::app::ledger::Ledger;
use shared::app::mirror::ChainMirror;
use shared::app::settlement::{SettlementMessage, Settlements};
use shared::app::subscriptions::Subscriptions;
use shared::ports::Queue;
use shared::ports::queue::{Message, QueueName};

/// The queue this function consumes.
pub const QUEUE: QueueName = QueueName::Settlement;

pub struct Handler {
    settlements: Settlements,
}

#[async_trait]
impl BatchHandler for Handler {
    async fn handle(&self, batch: &[Message]) -> Vec<String> {
        each_message(QUEUE, batch, |message: SettlementMessage| self.settlements.handle(message)).await
    }
}

/// The batch handler, as Lambda and the local runner run it.
pub fn handler(platform: &Platform) -> Arc<dyn BatchHandler> {
    Arc::new(Handler { settlements: Settlements::for_platform(platform) })
}

/// Chain records delivered per sweep (the rest waits for the next).
const MIRROR_BATCH: usize = 1_000;
const EXPIRY_BATCH: usize = 100;
const RETRY_BATCH: usize = 50;

/// What one sweep did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    pub mirrored: usize,
    pub expired: usize,
    pub retried: usize,
    /// Deals opened and closed by their window.
    pub opened: usize,
    pub closed: usize,
    /// Allocation runs started or nudged, and settlements nudged.
    pub allocations: usize,
    pub settlements: usize,
}

/// The ledger's follow-ups, run by the stream and the schedule in AWS, in a loop locally.
pub struct Sweeper {
    mirror: ChainMirror,
    ledger: Ledger,
    deposits: Arc<DepositAccounts>,
    deals: Deals,
    subscriptions: Subscriptions,
    allocator: Allocator,
    settlements: Settlements,
    queue: Arc<dyn Queue>,
}

impl Sweeper {
    pub fn new(platform: &Platform) -> Self {
        let deposits = Arc::new(DepositAccounts::for_platform(platform));
        Self {
            mirror: ChainMirror::for_platform(platform),
            ledger: Ledger::for_platform(platform),
            deals: Deals::for_platform(platform),
            subscriptions: Subscriptions::new(platform, deposits.clone()),
            deposits,
            allocator: Allocator::for_platform(platform),
            settlements: Settlements::for_platform(platform),
            queue: platform.queue.clone(),
        }
    }

    /// Delivers the chain outbox, voids expired holds, re-instructs unanswered payouts,
    /// opens and closes deals by their window, starts the allocation of closed deals, and
    /// nudges allocation runs and settlements that stood still.
    /// Each part is idempotent; one failing does not stop the others.
    pub async fn run_once(&self) -> Result<Swept, shared::lambda::Error> {
        let mut swept = Swept::default();
        let mut failures = Vec::new();
        match self.mirror.drain(MIRROR_BATCH).await {
            Ok(drained) => swept.mirrored = drained.delivered,
            Err(e) => failures.push(e.to_string()),
        }
        match self.ledger.expire_due(EXPIRY_BATCH).await {
            Ok(n) => swept.expired = n,
            Err(e) => failures.push(e.to_string()),
        }
        match self.deposits.retry_pending(RETRY_BATCH).await {
            Ok(n) => swept.retried = n,
            Err(e) => failures.push(e.to_string()),
        }
        match self.subscriptions.retry_pending(RETRY_BATCH).await {
            Ok(n) => swept.retried += n,
            Err(e) => failures.push(e.to_string()),
        }
        match self.deals.follow_windows().await {
            Ok(windows) => {
                (swept.opened, swept.closed) = (windows.opened, windows.closed);
                for deal in &windows.to_allocate {
                    match allocation::request_start(self.queue.as_ref(), deal).await {
                        Ok(()) => swept.allocations += 1,
                        Err(e) => failures.push(e.to_string()),
                    }
                }
            }
            Err(e) => failures.push(e.to_string()),
        }
        match self.allocator.nudge_stale().await {
            Ok(n) => swept.allocations += n,
            Err(e) => failures.push(e.to_string()),
        }
        match self.settlements.nudge_stale().await {
            Ok(n) => swept.settlements = n,
            Err(e) => failures.push(e.to_string()),
        }
        if failures.is_empty() { Ok(swept) } else { Err(failures.join("; ").into()) }
    }
}
