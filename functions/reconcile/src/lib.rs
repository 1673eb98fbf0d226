//! The `reconcile` function: the nightly proof that the ledger, the chain and the Custody
//! agree. It runs at 22:00 Asia/Singapore (EventBridge Scheduler in AWS, the in-process
//! scheduler locally) and on an operator's demand.
//!
//! The matching engine arrives with the ledger, chain and Custody books it compares; until
//! then a run reports that it has no sources, as an error, so nobody mistakes it for a
//! clean reconciliation.

use chrono::{DateTime, Days, NaiveTime, TimeZone, Utc};
use chrono_tz::Asia::Singapore;
use serde::{Deserialize, Serialize};
use shared::Platform;

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

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("no reconciliation sources are configured in this build")]
    NoSources,
}

/// Runs one reconciliation.
pub async fn run(_platform: &Platform, trigger: Trigger) -> Result<(), ReconcileError> {
    tracing::warn!(cut_off = ?trigger.cut_off, "reconciliation requested, but no sources are configured");
    Err(ReconcileError::NoSources)
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
