//! A settlement's persisted state, and the record of an approved distribution that
//! reconciliation reads until its units are issued.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::{SettlementError, Settlements};
use crate::app::ledger::sortable;
use crate::app::work;
use crate::domain::settlement::Phase;
use crate::ports::custody::Decision;
use crate::ports::store::{Condition, Cursor, Item, Key, StoreError, Write};

pub(super) const WORK: &str = "WORK#SETTLEMENT";

/// A deal's settlement: where it stands and what it has done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementState {
    pub deal_id: String,
    pub asset: String,
    /// The deal's name and allocation ratio, for the investors' notices.
    #[serde(default)]
    pub deal_name: String,
    #[serde(default)]
    pub ratio: String,
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

fn state_key(deal_id: &str) -> Key {
    Key::new(format!("SETTLE#{deal_id}"), "STATE")
}

pub(super) fn state_item(state: &SettlementState) -> Result<Item, StoreError> {
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

impl Settlements {
    pub(super) async fn state_versioned(&self, deal_id: &str) -> Result<Option<(SettlementState, u64)>, StoreError> {
        Ok(match self.store.get(&state_key(deal_id)).await? {
            Some(item) => Some((item.decode()?, item.version)),
            None => None,
        })
    }

    /// Writes the state at its version; `false` if someone else moved it first.
    pub(super) async fn save(&self, mut state: SettlementState, version: u64) -> Result<bool, SettlementError> {
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
}
