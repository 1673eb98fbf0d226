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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Every finance operator.
    Finance,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
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
