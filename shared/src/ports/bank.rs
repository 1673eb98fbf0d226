//! The bank that holds the omnibus account: it tells the platform about incoming money
//! with signed webhooks and pays withdrawals out on instruction (contract:
//! `docs/partners/bank.md`).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::partner::PartnerError;

/// A payout instruction; `reference` makes it idempotent at the bank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payout {
    pub reference: String,
    /// The investor's virtual account, which the bank maps to their nominated account.
    pub virtual_account: String,
    /// Decimal string, like `"100.00"`.
    pub amount: String,
    pub currency: String,
}

/// The bank took the instruction; the outcome comes later as a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutAccepted {
    pub reference: String,
    pub status: String,
}

/// What the bank's webhook reports. Fields it does not know are ignored: a bank adding one
/// must not stop deposits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type")]
pub enum BankEvent {
    /// Money arrived for a virtual account and is being cleared.
    #[serde(rename = "deposit.received")]
    DepositReceived { event_id: String, deposit_id: String, virtual_account: String, amount: String },
    /// The deposit cleared.
    #[serde(rename = "deposit.confirmed")]
    DepositConfirmed { event_id: String, deposit_id: String, virtual_account: String, amount: String },
    /// The deposit was sent back to the payer.
    #[serde(rename = "deposit.returned")]
    DepositReturned { event_id: String, deposit_id: String, virtual_account: String, amount: String },
    /// A payout reached the investor's account.
    #[serde(rename = "payout.settled")]
    PayoutSettled { event_id: String, reference: String },
    /// A payout failed; the money is back in the omnibus account.
    #[serde(rename = "payout.failed")]
    PayoutFailed { event_id: String, reference: String, reason: String },
}

impl BankEvent {
    pub fn event_id(&self) -> &str {
        match self {
            Self::DepositReceived { event_id, .. }
            | Self::DepositConfirmed { event_id, .. }
            | Self::DepositReturned { event_id, .. }
            | Self::PayoutSettled { event_id, .. }
            | Self::PayoutFailed { event_id, .. } => event_id,
        }
    }
}

#[async_trait]
pub trait Bank: Send + Sync {
    /// Instructs a payout from the omnibus account. Sending the same reference again is
    /// harmless: the bank answers the first acceptance.
    async fn instruct_payout(&self, payout: &Payout) -> Result<PayoutAccepted, PartnerError>;

    /// The payout the bank holds under `reference`, if any: asked after the bank answered
    /// `409` (the reference is taken, perhaps by an attempt whose answer was lost).
    async fn find_payout(&self, reference: &str) -> Result<Option<PayoutAccepted>, PartnerError>;
}
