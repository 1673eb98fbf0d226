//! The `reconcile` function: the nightly proof that the ledger, the chain and the Custody
//! agree (see [`shared::app::reconcile`]). It runs at 22:00 Asia/Singapore (EventBridge
//! Scheduler in AWS, the in-process scheduler locally) and on an operator's demand.

use chrono::{DateTime, Days, NaiveTime, TimeZone, Utc};
use chrono_tz::Asia::Singapore;
use serde::{Deserialize, Serialize};
use shared::Platform;
use shared::app::reconcile::{ReconRun, ReconcileError, Reconciler, RunVerdict};

/// The daily run time, in Singapore's zone.
pub const RUN_AT: NaiveTime = match NaiveTime::from_hms_opt(22, 0, 0) {
    Some(t) => t,
    None => panic!("22:00 is a valid time"),
};

/// The first scheduled run strictly after `now`.
pub fn next_run_after(now: DateTime<Utc>) -> DateTime<Utc> {
    let local = now.with_timezone(&Singapore);
    let mut day = local.date_naive();
    loop {
        // Singapore has no daylight saving: 22:00 exists exactly once every day.
        if let Some(at) = Singapore.from_local_datetime(&day.and_time(RUN_AT)).single() {
            let at = at.with_timezone(&Utc);
            if at > now {
                return at;
            }
        }
        day = day.checked_add_days(Days::new(1)).unwrap_or(day);
    }
}

/// What starts a run: the schedule (no cut-off: the run's own time) or an operator.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct Trigger {
    pub cut_off: Option<DateTime<Utc>>,
}

/// Runs one reconciliation, as of the trigger's cut-off or now. An incomplete run (a
/// source failed) is an error, so the schedule retries it.
pub async fn run(platform: &Platform, trigger: Trigger) -> Result<ReconRun, RunError> {
    let cut_off = trigger.cut_off.unwrap_or_else(|| platform.clock.now());
    let run = Reconciler::for_platform(platform).run(cut_off).await?;
    tracing::info!(run = %run.id, %cut_off, verdict = ?run.verdict, breaks = run.breaks, "reconciliation finished");
    match run.verdict {
        RunVerdict::Incomplete => Err(RunError::Incomplete(run.error.unwrap_or_default())),
        _ => Ok(run),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the reconciliation is incomplete: {0}")]
    Incomplete(String),
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(text: &str) -> DateTime<Utc> {
        text.parse().unwrap()
    }

    #[test]
    fn the_run_is_at_22_00_singapore_which_is_14_00_utc() {
        assert_eq!(next_run_after(utc("2026-11-25T09:00:00Z")), utc("2026-11-25T14:00:00Z"));
        assert_eq!(next_run_after(utc("2026-11-25T14:00:00Z")), utc("2026-11-26T14:00:00Z"));
        assert_eq!(next_run_after(utc("2026-11-25T13:59:59Z")), utc("2026-11-25T14:00:00Z"));
        // 23:30 in Singapore is 15:30 UTC: the next run is tomorrow.
        assert_eq!(next_run_after(utc("2026-12-31T15:30:00Z")), utc("2027-01-01T14:00:00Z"));
    }

    proptest! {
        #[test]
        fn the_next_run_is_within_a_day_and_at_22_00_local(seconds in 0i64..4_102_444_800) {
            let now = DateTime::from_timestamp(seconds, 0).unwrap();
            let next = next_run_after(now);
            prop_assert!(next > now);
            prop_assert!(next - now <= chrono::TimeDelta::days(1));
            prop_assert_eq!(next.with_timezone(&Singapore).time(), RUN_AT);
        }
    }
}
