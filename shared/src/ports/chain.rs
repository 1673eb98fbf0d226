//! The internal blockchain ledger: an independent book of every posted transfer that
//! touches an investor's or issuer's account (contract: `docs/partners/chain.md`).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::partner::PartnerError;
use crate::domain::ledger::Amount;

/// A posted transfer as the chain records it; the transfer id makes recording idempotent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainTransfer {
    pub transfer_id: String,
    pub debit: String,
    pub credit: String,
    pub asset: String,
    pub amount: Amount,
    pub code: u16,
    pub at: DateTime<Utc>,
}

/// Where a transfer landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    /// The block that holds it.
    pub height: u64,
    /// The transfer was already recorded (at `height`); nothing changed.
    pub duplicate: bool,
}

#[async_trait]
pub trait Chain: Send + Sync {
    /// Records a transfer once; recording the same id again answers the first receipt,
    /// the same id with other fields is refused.
    async fn record(&self, transfer: &ChainTransfer) -> Result<Receipt, PartnerError>;

    /// An account's balance in an asset (credits minus debits) as of a block height, or
    /// the latest when `height` is `None`.
    async fn balance(&self, account: &str, asset: &str, height: Option<u64>) -> Result<i128, PartnerError>;

    /// The latest block height.
    async fn height(&self) -> Result<u64, PartnerError>;

    /// The block at a cut-off: the height of the longest run of blocks from the first whose
    /// transfers happened at or before `at` (0: none).
    async fn height_at(&self, at: DateTime<Utc>) -> Result<u64, PartnerError>;

    /// Balances in `asset` as of block `height`, sorted by account: up to `limit` accounts
    /// after `after`. Accounts with no transfer by then are absent.
    async fn balances(
        &self,
        asset: &str,
        height: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, i128)>, PartnerError>;
}
