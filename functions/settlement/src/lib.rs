//! The `settlement` function: settlement steps (money legs, issuance), Custody callbacks,
//! and the ledger's follow-ups: the chain mirror's outbox, holds past their timeout, and
//! payout instructions the bank did not answer.
//!
//! It consumes the settlement queue. Until its message kinds exist, every message is refused,
//! logged and, after the queue's receive limit, left in the dead-letter queue for
//! operators. The table's stream (outbox items) and a one-minute schedule wake the sweep.

use std::sync::Arc;

use shared::Platform;
use shared::app::consumer::{BatchHandler, RejectUnknown};
use shared::app::deals::Deals;
use shared::app::deposits::DepositAccounts;
use shared::app::ledger::Ledger;
use shared::app::mirror::ChainMirror;
use shared::app::subscriptions::Subscriptions;
use shared::ports::queue::QueueName;

/// The queue this function consumes.
pub const QUEUE: QueueName = QueueName::Settlement;

/// The batch handler, as Lambda and the local runner run it.
pub fn handler(_platform: &Platform) -> Arc<dyn BatchHandler> {
    Arc::new(RejectUnknown { queue: QUEUE })
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
}

/// The ledger's follow-ups, run by the stream and the schedule in AWS, in a loop locally.
pub struct Sweeper {
    mirror: ChainMirror,
    ledger: Ledger,
    deposits: Arc<DepositAccounts>,
    deals: Deals,
    subscriptions: Subscriptions,
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
        }
    }

    /// Delivers the chain outbox, voids expired holds, re-instructs unanswered payouts, and
    /// opens and closes deals by their window.
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
            Ok((opened, closed)) => (swept.opened, swept.closed) = (opened, closed),
            Err(e) => failures.push(e.to_string()),
        }
        if failures.is_empty() { Ok(swept) } else { Err(failures.join("; ").into()) }
    }
}
