//! The Custody: the regulated custodian that holds the issuers' settlement money and
//! approves every DABS distribution before units are issued (contract:
//! `docs/partners/custody.md`). Every request carries the platform's reference, so a
//! retry is harmless and an unanswered call can be looked up.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::partner::PartnerError;
use crate::domain::ledger::Amount;

/// Money moved at the Custody, once per reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodyTransfer {
    pub reference: String,
    pub debit: String,
    pub credit: String,
    pub asset: String,
    pub amount: Amount,
}

/// The Custody's record of a transfer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodyReceipt {
    pub reference: String,
    /// When the Custody booked it.
    pub at: DateTime<Utc>,
    /// The reference was booked before; nothing changed.
    pub duplicate: bool,
}

/// One line of a distribution: a subscription's units, into the investor's DABS account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DistributionEntry {
    pub subscription_id: String,
    pub account: String,
    pub units: u64,
}

/// A distribution submitted for approval, once all its pages are sent: the Custody
/// checks the pages add up to `entries`, `units` and the allocation run's `checksum`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distribution {
    pub reference: String,
    pub asset: String,
    pub pages: u32,
    pub entries: u64,
    pub units: u64,
    pub checksum: String,
}

/// Where a distribution stands at the Custody.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Decision {
    /// Submitted; not decided yet.
    Pending,
    Approved,
    Rejected {
        reason: String,
    },
}

/// An account's balance at the Custody.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustodyBalance {
    pub account: String,
    pub balance: i128,
}

/// What the Custody's signed callback (`POST /v1/webhooks/custody`) says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CustodyEvent {
    DistributionDecided { event_id: String, reference: String, decision: Decision },
}

#[async_trait]
pub trait Custody: Send + Sync {
    /// Books a transfer once: the same reference answers the first receipt; the same
    /// reference with other fields is refused.
    async fn transfer(&self, transfer: &CustodyTransfer) -> Result<CustodyReceipt, PartnerError>;

    /// A transfer by reference, if the Custody booked it (after a timeout: did it land?).
    async fn find_transfer(&self, reference: &str) -> Result<Option<CustodyReceipt>, PartnerError>;

    /// Sends page `page` (from 0) of a distribution's entries; sending a page again replaces it.
    async fn put_entries(&self, reference: &str, page: u32, entries: &[DistributionEntry]) -> Result<(), PartnerError>;

    /// Submits a distribution whose pages were sent; submitting again answers where it stands.
    async fn submit(&self, distribution: &Distribution) -> Result<Decision, PartnerError>;

    /// Where a submitted distribution stands; `None` if it was never submitted.
    async fn decision(&self, reference: &str) -> Result<Option<Decision>, PartnerError>;

    /// Balances in `asset` as of `as_of`, sorted by account, the first `limit` after
    /// `after` (a page; accounts never booked are absent).
    async fn balances(
        &self,
        asset: &str,
        as_of: DateTime<Utc>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CustodyBalance>, PartnerError>;
}
