//! The `settlement` function: settlement steps (money legs, issuance), the Custody's
//! callback and finance's settlement routes, and the ledger's follow-ups: the chain
//! mirror's outbox, holds past their timeout, and payout instructions the bank did not
//! answer.
//!
//! It consumes the settlement queue (`start` and `advance`, see [`shared::app::settlement`]).
//! The table's stream (chain outbox items) wakes the mirror's drain alone; a one-minute
//! schedule runs the whole sweep, which also starts the allocation of closed deals and
//! nudges allocation runs and settlements that stood still.

pub mod routes;

use std::sync::Arc;

use async_trait::async_trait;
use shared::Platform;
use shared::app::allocation::{self, Allocator};
use shared::app::consumer::{BatchHandler, each_message};
use shared::app::deals::Deals;
use shared::app::deposits::DepositAccounts;
use shared::app::failure::Failure;
use shared::app::ledger::Ledger;
use shared::app::mirror::ChainMirror;
use shared::app::settlement::{SettlementMessage, Settlements};
use shared::app::subscriptions::Subscriptions;
use shared::ports::Queue;
use shared::ports::queue::{Message, QueueName};

/// The queue this function consumes.
pub const QUEUE: QueueName = QueueName::Settlement;

pub struct Handler {
    settlements: Settlements,
    queue: Arc<dyn Queue>,
}

#[async_trait]
impl BatchHandler for Handler {
    async fn handle(&self, batch: &[Message]) -> Vec<String> {
        each_message(self.queue.as_ref(), QUEUE, batch, |message: SettlementMessage| self.settlements.handle(message))
            .await
    }
}

/// The batch handler, as Lambda and the local runner run it.
pub fn handler(platform: &Platform) -> Arc<dyn BatchHandler> {
    Arc::new(Handler { settlements: platform.settlements(), queue: platform.queue.clone() })
}

/// This function's routes: finance's settlement view and retries, the Custody's callback.
pub fn routes(platform: &Platform) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route("/v1/admin/deals/{id}/settlement", get(routes::view))
        .route("/v1/admin/settlement/legs/{id}/retry", post(routes::retry))
        .route("/v1/webhooks/custody", post(routes::custody_webhook))
        .with_state(shared::http::auth::ApiState::with(platform, routes::Services::for_platform(platform)))
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(routes::view, routes::retry, routes::custody_webhook),
    components(schemas(routes::RunView, routes::SettlementView, routes::LegView, routes::DealSettlementView,
        routes::CallbackAnswer, shared::app::allocation::RunState, shared::app::settlement::Phase,
        shared::app::settlement::LegKind, shared::app::settlement::LegStatus, shared::ports::custody::Decision)),
    tags((name = "settlement", description = "Allocations, settlement progress, stuck legs and their retry"))
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

/// What a stream batch or the schedule wakes: a stream batch, the chain mirror's drain
/// alone (a failing sweep must not hold a stream shard); the schedule (`{"sweep": true}`),
/// the whole sweep. Both work from the table: the event's contents do not matter and
/// redelivery is harmless.
pub async fn woken(sweeper: &Sweeper, event: serde_json::Value) -> Result<serde_json::Value, shared::lambda::Error> {
    if event.pointer("/Records/0/eventSource").and_then(|s| s.as_str()) == Some("aws:dynamodb") {
        let mirrored = sweeper.drain_outbox().await?;
        tracing::info!(mirrored, "outbox drained");
    } else {
        let swept = sweeper.run_once().await?;
        tracing::info!(?swept, "swept");
    }
    Ok(serde_json::Value::Null)
}

/// Chain records delivered per sweep (the rest waits for the next).
const MIRROR_BATCH: usize = 1_000;
const EXPIRY_BATCH: usize = 100;
const RETRY_BATCH: usize = 50;

/// What one sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    pub mirrored: usize,
    pub expired: usize,
    pub retried: usize,
    /// Deals opened and closed by their window.
    pub opened: usize,
    pub closed: usize,
    /// Subscriptions of cancelled deals whose holds were released.
    pub released: usize,
    /// Allocation runs started or nudged, and settlements nudged.
    pub allocations: usize,
    pub settlements: usize,
    /// Work that failed for good (a payout the bank will not take, a hold the ledger
    /// refuses): it stays pending for an operator. Logged and counted in the
    /// `SweepPermanentFailures` metric, which alarms; no reason to fail the sweep.
    pub permanent: Vec<Failure>,
}

/// A sweep that met failures that may pass: it is run again (the schedule retries it,
/// and the next minute's sweep comes anyway).
#[derive(Debug, thiserror::Error)]
#[error("sweep incomplete: {}", .0.iter().map(Failure::to_string).collect::<Vec<_>>().join("; "))]
pub struct SweepIncomplete(pub Vec<Failure>);

/// The ledger's follow-ups, run by the stream and the schedule in AWS, in a loop locally.
pub struct Sweeper {
    mirror: ChainMirror,
    ledger: Ledger,
    deposits: Arc<DepositAccounts>,
    deals: Deals,
    subscriptions: Subscriptions,
    allocator: Allocator,
    settlements: Settlements,
    queue: Arc<dyn Queue>,
}

impl Sweeper {
    pub fn new(platform: &Platform) -> Self {
        let deposits = Arc::new(platform.deposit_accounts());
        Self {
            mirror: platform.chain_mirror(),
            ledger: platform.ledger(),
            deals: platform.deals(),
            subscriptions: platform.subscriptions(deposits.clone()),
            deposits,
            allocator: platform.allocator(),
            settlements: platform.settlements(),
            queue: platform.queue.clone(),
        }
    }

    /// Delivers the chain outbox only: what a change in the table must be followed by.
    pub async fn drain_outbox(&self) -> Result<usize, shared::lambda::Error> {
        Ok(self.mirror.drain(MIRROR_BATCH).await?.delivered)
    }

    /// Delivers the chain outbox, voids expired holds, re-instructs unanswered payouts,
    /// opens and closes deals by their window, starts the allocation of closed deals, and
    /// nudges allocation runs and settlements that stood still.
    /// Each part is idempotent; one failing does not stop the others. Failures keep their
    /// kind to here, where it decides: see [`Swept::permanent`] and [`SweepIncomplete`].
    pub async fn run_once(&self) -> Result<Swept, SweepIncomplete> {
        let mut swept = Swept::default();
        let mut failures = Vec::new();
        match self.mirror.drain(MIRROR_BATCH).await {
            Ok(drained) => swept.mirrored = drained.delivered,
            Err(e) => failures.push(Failure::of("chain mirror", &e)),
        }
        match self.ledger.expire_due(EXPIRY_BATCH).await {
            Ok(expired) => {
                swept.expired = expired.tried - expired.failed.len();
                failures.extend(expired.failed);
            }
            Err(e) => failures.push(Failure::of("expiry of holds", &e)),
        }
        match self.deposits.retry_pending(RETRY_BATCH).await {
            Ok(retried) => {
                swept.retried += retried.tried;
                failures.extend(retried.failed);
            }
            Err(e) => failures.push(Failure::of("pending deposits and withdrawals", &e)),
        }
        match self.subscriptions.retry_pending(RETRY_BATCH).await {
            Ok(retried) => {
                swept.retried += retried.tried;
                failures.extend(retried.failed);
            }
            Err(e) => failures.push(Failure::of("pending subscriptions", &e)),
        }
        match self.deals.follow_windows().await {
            Ok(windows) => {
                (swept.opened, swept.closed) = (windows.opened, windows.closed);
                for deal in &windows.to_allocate {
                    match allocation::request_start(self.queue.as_ref(), deal).await {
                        Ok(()) => swept.allocations += 1,
                        Err(e) => failures.push(Failure::of(format!("allocation of deal {deal}"), &e)),
                    }
                }
                for deal in &windows.to_release {
                    match self.subscriptions.release_cancelled(deal).await {
                        Ok(n) => swept.released += n,
                        Err(e) => failures.push(Failure::of(format!("holds of cancelled deal {deal}"), &e)),
                    }
                }
            }
            Err(e) => failures.push(Failure::of("deal windows", &e)),
        }
        match self.allocator.nudge_stale().await {
            Ok(n) => swept.allocations += n,
            Err(e) => failures.push(Failure::of("stale allocation runs", &e)),
        }
        match self.settlements.nudge_stale().await {
            Ok(n) => swept.settlements = n,
            Err(e) => failures.push(Failure::of("stale settlements", &e)),
        }
        let (permanent, passing): (Vec<_>, Vec<_>) = failures.into_iter().partition(|f| f.permanent);
        for failure in &permanent {
            tracing::error!(subject = %failure.subject, reason = %failure.reason, "sweep: failed for good; left for an operator");
        }
        shared::telemetry::metrics(&[("SweepPermanentFailures", permanent.len() as u64)], chrono::Utc::now());
        swept.permanent = permanent;
        if passing.is_empty() { Ok(swept) } else { Err(SweepIncomplete(passing)) }
    }
}
