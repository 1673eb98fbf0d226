//! Notices to people, waiting for the notification work to send them (email, PDF). Each is
//! written in the same transaction as the fact it reports, so none is lost, and taken off
//! the pending index once sent.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::reconcile::RunVerdict;
use crate::ports::Store;
use crate::ports::store::{Item, Key, Query, StoreError};

/// Secondary-index partition of notices not sent yet, oldest first.
pub const PENDING: &str = "NOTICE#PENDING";

/// Who a notice is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Every finance operator.
    Finance,
    /// One investor, by user id.
    Investor(String),
}

/// What a notice says, with a snapshot of the facts it needs as they were when it was
/// written: it renders the same whenever it is rendered. Amounts are in cents (SGD) or
/// whole units (DABS); the templates format them exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// Money from the investor's bank reached their deposit account.
    DepositCredited { amount: u64, balance: u64, bank_reference: String, at: DateTime<Utc> },
    /// A deal's allocation: what the investor asked for, what they got, what it cost and
    /// what came back.
    AllocationResult {
        deal_name: String,
        subscription_id: String,
        requested: u64,
        allocated: u64,
        /// The deal's allocation ratio, a decimal string to 15 places.
        ratio: String,
        unit_price: u64,
        charged: u64,
        refunded: u64,
        at: DateTime<Utc>,
    },
    /// A reconciliation run finished (whatever its verdict, incomplete included).
    ReconciliationFinished {
        run_id: String,
        cut_off: DateTime<Utc>,
        verdict: RunVerdict,
        breaks: u64,
        timing: u64,
        resolved: u64,
    },
}

impl Notice {
    /// The kind's name, as its templates are named.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::DepositCredited { .. } => "deposit_credited",
            Self::AllocationResult { .. } => "allocation_result",
            Self::ReconciliationFinished { .. } => "reconciliation_finished",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub id: String,
    pub audience: Audience,
    pub notice: Notice,
    pub at: DateTime<Utc>,
}

/// The item that queues a notice; put it in the transaction of what it reports.
pub fn item(pending: &Pending) -> Result<Item, StoreError> {
    Ok(Item::new(Key::new(format!("NOTICE#{}", pending.id), "NOTICE"), pending)?
        .with_index(PENDING, format!("{}#{}", super::ledger::sortable(pending.at), pending.id)))
}

/// Notices waiting to be sent, oldest first.
pub async fn waiting(store: &dyn Store, limit: usize) -> Result<Vec<Pending>, StoreError> {
    let page = store.query(&Query::secondary(PENDING).limit(limit)).await?;
    page.items.iter().map(Item::decode).collect()
}
