//! The `reconcile` function: the nightly proof that the ledger, the chain and the Custody
//! agree (see [`shared::app::reconcile`]). It runs at 22:00 Asia/Singapore (EventBridge
//! Scheduler in AWS, the in-process scheduler locally) and on an operator's demand, which
//! comes on the reconcile queue (a run can take longer than an HTTP request may); it also
//! serves finance's reconciliation routes.

pub mod routes;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Days, NaiveTime, TimeZone, Utc};
use chrono_tz::Asia::Singapore;
use serde::{Deserialize, Serialize};
use shared::Platform;
use shared::app::audit::{AuditError, AuditLog, Checked};
use shared::app::consumer::{BatchHandler, after_failure};
use shared::app::failure::{Failure, Permanence};
use shared::app::reconcile::{ReconRun, ReconcileError, Requested, RunVerdict};
use shared::ports::queue::{Message, QueueName};
use shared::ports::store::{Condition, Item, Key};

/// The queue of runs operators asked for ([`shared::app::reconcile::request`]).
pub const QUEUE: QueueName = shared::app::reconcile::QUEUE;

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
    let run = platform.reconciler().run(cut_off).await?;
    tracing::info!(run = %run.id, %cut_off, verdict = ?run.verdict, breaks = run.breaks, "reconciliation finished");
    let incomplete = u64::from(run.verdict == RunVerdict::Incomplete);
    shared::telemetry::metrics(
        &[("ReconciliationIncomplete", incomplete), ("ReconciliationNewBreaks", run.new_breaks)],
        run.finished_at,
    );
    match run.verdict {
        RunVerdict::Incomplete => Err(RunError::Incomplete(run.error.unwrap_or_default())),
        _ => Ok(run),
    }
}

/// Runs requested runs, one message at a time. A message delivered again after its run
/// finished does nothing (a marker per message id); a run that is incomplete, or whose
/// cut-off another run holds, fails its message so the queue delivers it again later.
pub struct Handler {
    platform: Platform,
}

pub fn handler(platform: &Platform) -> Arc<dyn BatchHandler> {
    Arc::new(Handler { platform: platform.clone() })
}

fn done_key(message_id: &str) -> Key {
    Key::new(format!("RECON#REQUEST#{message_id}"), "DONE")
}

impl Handler {
    async fn one(&self, message: &Message) -> Result<(), Failure> {
        let (store, id) = (&self.platform.store, &message.id);
        if store.get(&done_key(id)).await.map_err(|e| Failure::of(id, &e))?.is_some() {
            return Ok(());
        }
        let requested: Requested = serde_json::from_str(&message.body)
            .map_err(|e| Failure::permanent(id, format!("not a run request: {e}")))?;
        let run = run(&self.platform, Trigger { cut_off: Some(requested.cut_off) }).await;
        let run = run.map_err(|e| Failure::of(id, &e))?;
        tracing::info!(run = %run.id, requested_by = %requested.requested_by, "requested reconciliation done");
        let done = Item::new(done_key(id), &run.id).map_err(|e| Failure::of(id, &e))?;
        let expires = self.platform.clock.now() + chrono::TimeDelta::days(14);
        store.put(done.expiring_at(expires), Condition::None).await.map_err(|e| Failure::of(id, &e))
    }
}

#[async_trait]
impl BatchHandler for Handler {
    async fn handle(&self, batch: &[Message]) -> Vec<String> {
        let mut failed = Vec::new();
        for message in batch {
            if let Err(failure) = self.one(message).await {
                failed.extend(after_failure(self.platform.queue.as_ref(), QUEUE, message, &failure).await);
            }
        }
        failed
    }
}

/// The schedules' events: `{"check_audit": true}` checks the audit log and answers what
/// it found; anything else is a [`Trigger`]: runs and answers the run's id.
pub async fn scheduled(
    platform: &Platform,
    payload: serde_json::Value,
) -> Result<serde_json::Value, shared::lambda::Error> {
    if payload.get("check_audit").is_some() {
        return Ok(serde_json::to_value(check_audit(platform).await?)?);
    }
    let run = run(platform, serde_json::from_value(payload)?).await?;
    Ok(serde_json::to_value(run.id)?)
}

/// Anchors the audit log's settled days and verifies it: every break is logged and
/// counted in the `AuditChainBreaks` metric, which alarms.
pub async fn check_audit(platform: &Platform) -> Result<Checked, AuditError> {
    let log = AuditLog::new(platform.store.clone(), platform.clock.clone());
    let checked = log.check(platform.audit_keyring.as_ref()).await?;
    for found in &checked.breaks {
        tracing::error!(%found, "the audit log is broken");
    }
    tracing::info!(anchored = checked.anchored.len(), verified = checked.verified, "audit log checked");
    shared::telemetry::metrics(&[("AuditChainBreaks", checked.breaks.len() as u64)], platform.clock.now());
    Ok(checked)
}

/// Finance's reconciliation routes.
pub fn routes(platform: &Platform) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/admin/reconciliation/runs", get(routes::list).post(routes::start))
        .route("/v1/admin/reconciliation/runs/{id}", get(routes::get))
        .route("/v1/admin/reconciliation/runs/{id}/breaks", get(routes::breaks))
        .route("/v1/admin/reconciliation/runs/{id}/report.csv", get(routes::report))
        .route("/v1/admin/reconciliation/breaks/accept", post(routes::accept))
        .with_state(shared::http::auth::ApiState::with(platform, platform.reconciler()))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(routes::list, routes::start, routes::get, routes::breaks, routes::report, routes::accept),
    components(schemas(routes::RunRequest, routes::ReconRunView, routes::AcceptRequest, routes::RunQueued,
        shared::app::reconcile::StoredRow, shared::app::reconcile::RunVerdict, shared::app::reconcile::Count,
        shared::domain::reconcile::Pair, shared::domain::reconcile::Class, shared::domain::reconcile::RuleId)),
    tags((name = "reconciliation", description = "Ledger vs chain vs Custody as of a cut-off: runs, unmatched rows, CSV"))
)]
struct Doc;

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    <Doc as utoipa::OpenApi>::openapi()
}

/// The routes with everything every HTTP function shares, as Lambda serves them.
pub fn app(platform: &Platform) -> axum::Router {
    shared::http::service(routes(platform), platform, shared::http::openapi::published())
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the reconciliation is incomplete: {0}")]
    Incomplete(String),
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
}

impl Permanence for RunError {
    /// A source that failed may answer on the next try; so may the store.
    fn is_permanent(&self) -> bool {
        match self {
            Self::Incomplete(_) => false,
            Self::Reconcile(e) => e.is_permanent(),
        }
    }
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
