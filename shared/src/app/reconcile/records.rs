//! What a run leaves behind: the run with its counts, and each row that is not matched.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::app::ledger::sortable;
use crate::domain::reconcile::{Class, Lifecycle, Pair, Row, RowVerdict, RuleId, RunVerdict, Verdict};
use crate::ports::store::Key;

pub(super) const RUNS: &str = "RECON#RUNS";

/// How many rows of a pair and class got a verdict of a kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Count {
    pub pair: Pair,
    pub class: Class,
    pub verdict: RowVerdict,
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconRun {
    pub id: String,
    pub cut_off: DateTime<Utc>,
    /// The run of the same cut-off before this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<String>,
    pub chain_height: u64,
    pub verdict: RunVerdict,
    pub counts: Vec<Count>,
    pub breaks: u64,
    /// Breaks no earlier run found (what alarms an operator).
    #[serde(default)]
    pub new_breaks: u64,
    /// Timing differences and accepted breaks.
    pub timing: u64,
    /// Breaks of earlier runs that this run no longer finds.
    #[serde(default)]
    pub resolved: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// A row that is not matched, as stored with its run and shown to operators (amounts as
/// decimal strings of the asset's smallest unit: they may exceed what JSON numbers hold
/// exactly).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredRow {
    pub account: String,
    pub asset: String,
    pub pair: Pair,
    pub class: Class,
    /// Absent: the book does not hold the position.
    pub ledger: Option<String>,
    pub other: Option<String>,
    pub verdict: RowVerdict,
    /// The other book minus the ledger.
    pub difference: String,
    /// For a timing difference the rules that explain it; for a break, those whose grace ran out.
    pub rules: Vec<RuleId>,
    /// For a break: where it stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
}

impl From<&Row> for StoredRow {
    fn from(r: &Row) -> Self {
        let difference = r.other.unwrap_or(0) - r.ledger.unwrap_or(0);
        let rules = match &r.verdict {
            Verdict::Timing { rules } => rules.clone(),
            Verdict::Break { expired, .. } => expired.clone(),
            Verdict::Matched => Vec::new(),
        };
        Self {
            account: r.position.account.clone(),
            asset: r.position.asset.clone(),
            pair: r.pair,
            class: r.class,
            ledger: r.ledger.map(|b| b.to_string()),
            other: r.other.map(|b| b.to_string()),
            verdict: RowVerdict::of(&r.verdict),
            difference: difference.to_string(),
            rules,
            lifecycle: None,
        }
    }
}

pub(super) fn run_key(id: &str) -> Key {
    Key::new(format!("RECON#RUN#{id}"), "RUN")
}

pub(super) fn row_key(run: &str, row: &StoredRow) -> Key {
    Key::new(format!("RECON#RUN#{run}"), format!("ROW#{}#{}#{}", row.account, row.asset, row.pair.other_book()))
}

pub(super) fn cut_off_key(cut_off: DateTime<Utc>) -> Key {
    Key::new(format!("RECON#CUTOFF#{}", sortable(cut_off)), "LOCK")
}

/// The last run of a cut-off.
pub(super) fn latest_key(cut_off: DateTime<Utc>) -> Key {
    Key::new(format!("RECON#CUTOFF#{}", sortable(cut_off)), "LATEST")
}
