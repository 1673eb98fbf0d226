//! Breaks tracked across runs: new when first found, open while runs find them again,
//! accepted by two finance operators, resolved by the first complete run that does not.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::Reconciler;
use super::records::StoredRow;
use crate::domain::reconcile::Pair;
use crate::ports::store::{Condition, Item, Key, Query, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BreakStatus {
    Open,
    /// A finance operator accepted it with a note, and a second one approved: runs that
    /// find the same difference report it as accepted, not as a break.
    Accepted,
    /// A later run no longer found it.
    Resolved,
}

/// A break tracked across runs: open from the run that first found it until a run that
/// no longer does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackedBreak {
    pub account: String,
    pub asset: String,
    pub pair: Pair,
    pub status: BreakStatus,
    pub first_seen: String,
    pub first_cut_off: DateTime<Utc>,
    pub last_seen: String,
    /// The difference when last seen.
    pub difference: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    /// Why it was accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

const OPEN_BREAKS: &str = "RECON#BREAKS#OPEN";

pub(crate) fn break_key(pair: Pair, account: &str, asset: &str) -> Key {
    Key::new(format!("RECON#BREAK#{}#{account}#{asset}", pair.other_book()), "BREAK")
}

/// Open and accepted breaks are on the index a complete run walks to resolve those gone.
pub(crate) fn break_item(b: &TrackedBreak) -> Result<Item, StoreError> {
    let item = Item::new(break_key(b.pair, &b.account, &b.asset), b)?;
    Ok(match b.status {
        BreakStatus::Open | BreakStatus::Accepted => {
            item.with_index(OPEN_BREAKS, format!("{}#{}#{}", b.pair.other_book(), b.account, b.asset))
        }
        BreakStatus::Resolved => item,
    })
}

impl Reconciler {
    /// The break as this run leaves it: new, the open one an earlier run found, or the
    /// accepted one if the difference is still the one accepted (a different difference
    /// is a new break).
    pub(super) async fn track(
        &self,
        run: &str,
        cut_off: DateTime<Utc>,
        row: &StoredRow,
    ) -> Result<TrackedBreak, StoreError> {
        let earlier: Option<TrackedBreak> =
            self.store.get(&break_key(row.pair, &row.account, &row.asset)).await?.map(|i| i.decode()).transpose()?;
        if let Some(mut accepted) = earlier.clone().filter(|b| b.status == BreakStatus::Accepted)
            && accepted.difference == row.difference
        {
            accepted.last_seen = run.to_owned();
            return Ok(accepted);
        }
        let (first_seen, first_cut_off) = match earlier {
            Some(b) if b.status == BreakStatus::Open => (b.first_seen, b.first_cut_off),
            _ => (run.to_owned(), cut_off),
        };
        Ok(TrackedBreak {
            account: row.account.clone(),
            asset: row.asset.clone(),
            pair: row.pair,
            status: BreakStatus::Open,
            first_seen,
            first_cut_off,
            last_seen: run.to_owned(),
            difference: row.difference.clone(),
            resolved_by: None,
            note: None,
        })
    }

    /// Resolves the open breaks this complete run did not find again; answers how many.
    pub(super) async fn resolve_gone(&self, run: &str) -> Result<u64, StoreError> {
        let mut resolved = 0;
        let mut cursor = None;
        loop {
            let page = self.store.query(&Query::secondary(OPEN_BREAKS).limit(100).after(cursor)).await?;
            for item in &page.items {
                let mut b: TrackedBreak = item.decode()?;
                if b.last_seen == run {
                    continue;
                }
                b.status = BreakStatus::Resolved;
                b.resolved_by = Some(run.to_owned());
                match self.store.put(break_item(&b)?, Condition::VersionIs(item.version)).await {
                    Ok(()) => resolved += 1,
                    // A run of another cut-off touched it meanwhile: it decides.
                    Err(StoreError::ConditionFailed { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(resolved),
            }
        }
    }
}
