//! Finance's settlement routes and the Custody's callback.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::app::allocation::{AllocationRecords, Run, RunState};
use shared::app::audit::{AuditLog, Event};
use shared::app::deals::Deals;
use shared::app::settlement::{Leg, LegKind, LegStatus, Phase, SettlementError, SettlementState, Settlements};
use shared::domain::access::{Action, Resource};
use shared::domain::deal::DealState;
use shared::domain::money::format_cents;
use shared::http::Path;
use shared::http::auth::{ApiState, Authenticated, authorize};
use shared::http::problem::{PROBLEM_JSON, Problem};
use shared::http::{ApiError, Json};
use shared::ports::custody::{CustodyEvent, Decision};
use utoipa::ToSchema;

/// What the settlement routes use, built once when the function starts.
pub struct Services {
    pub deals: Deals,
    pub settlements: Settlements,
    pub allocations: AllocationRecords,
}

impl Services {
    pub fn for_platform(platform: &shared::Platform) -> Self {
        Self {
            deals: platform.deals(),
            settlements: platform.settlements(),
            allocations: platform.allocation_records(),
        }
    }
}

fn units(value: u128) -> u64 {
    u64::try_from(value).unwrap_or(u64::MAX)
}

fn cents(value: u128) -> String {
    format_cents(i128::try_from(value).unwrap_or(i128::MAX))
}

/// A deal's allocation run.
#[derive(Debug, Serialize, ToSchema)]
pub struct RunView {
    pub state: RunState,
    pub supply: u64,
    pub subscriptions: u64,
    pub units_requested: u64,
    pub units_allocated: u64,
    pub batches: u64,
    pub batches_done: u64,
    pub leftover_units: u64,
    pub leftover_given: u64,
    pub ratio: String,
    /// Checksum of every subscription's units (what the Custody is asked to approve).
    pub checksum: String,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<Run> for RunView {
    fn from(r: Run) -> Self {
        Self {
            units_allocated: units(r.allocated()),
            state: r.state,
            supply: r.supply,
            subscriptions: r.subscriptions,
            units_requested: units(r.requested),
            batches: r.batches,
            batches_done: r.batches_done,
            leftover_units: r.leftover,
            leftover_given: r.leftover_given,
            ratio: r.ratio,
            checksum: r.checksum,
            started_at: r.started_at,
            completed_at: r.completed_at,
        }
    }
}

/// A deal's settlement progress.
#[derive(Debug, Serialize, ToSchema)]
pub struct SettlementView {
    pub phase: Phase,
    pub subscriptions: u64,
    /// Subscriptions whose hold was posted or voided.
    pub settled: u64,
    pub amount_charged: String,
    pub amount_refunded: String,
    pub distribution_pages_sent: u32,
    pub units_to_issue: u64,
    pub units_issued: u64,
    pub decision: Option<Decision>,
    pub started_at: DateTime<Utc>,
    pub touched_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<SettlementState> for SettlementView {
    fn from(s: SettlementState) -> Self {
        Self {
            phase: s.phase,
            subscriptions: s.subscriptions,
            settled: s.settled,
            amount_charged: cents(s.charged),
            amount_refunded: cents(s.refunded),
            distribution_pages_sent: s.pages_sent,
            units_to_issue: s.units,
            units_issued: units(s.issued_units),
            decision: s.decision,
            started_at: s.started_at,
            touched_at: s.touched_at,
            finished_at: s.finished_at,
        }
    }
}

/// An external leg of a settlement.
#[derive(Debug, Serialize, ToSchema)]
pub struct LegView {
    pub id: String,
    pub kind: LegKind,
    pub reference: String,
    pub status: LegStatus,
    /// Waits for a finance operator's retry: refused, or past its deadline.
    pub stuck: bool,
    pub attempts: u32,
    pub deadline: DateTime<Utc>,
    pub last_error: Option<String>,
    pub updated_at: DateTime<Utc>,
}

fn leg_view(settlements: &Settlements, leg: Leg) -> LegView {
    LegView {
        stuck: settlements.is_stuck(&leg),
        id: leg.id,
        kind: leg.kind,
        reference: leg.reference,
        status: leg.status,
        attempts: leg.attempts,
        deadline: leg.deadline,
        last_error: leg.last_error,
        updated_at: leg.updated_at,
    }
}

/// `GET /v1/admin/deals/{id}/settlement`.
#[derive(Debug, Serialize, ToSchema)]
pub struct DealSettlementView {
    pub deal_id: String,
    pub deal_state: DealState,
    pub allocation: Option<RunView>,
    pub settlement: Option<SettlementView>,
    pub legs: Vec<LegView>,
}

fn settlement_error(e: SettlementError) -> ApiError {
    match e {
        SettlementError::NotFound => ApiError::not_found("no such leg"),
        SettlementError::NotRetryable(_) => ApiError::conflict(e.to_string()),
        other => ApiError::internal(&other),
    }
}

/// A deal's allocation run, settlement progress and external legs (finance operators;
/// every read is audited).
#[utoipa::path(get, path = "/v1/admin/deals/{id}/settlement", tag = "settlement", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = DealSettlementView), (status = 403, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn view(
    State(state): State<ApiState<Services>>,
    Authenticated(me): Authenticated,
    Path(deal_id): Path<String>,
) -> Result<Json<DealSettlementView>, ApiError> {
    authorize(&state.platform, &me, Action::ManageSettlement, Resource::None, "settlement.view").await?;
    let internal = |e: shared::ports::store::StoreError| ApiError::internal(&e);
    let deal = state
        .services
        .deals
        .get(&deal_id)
        .await
        .map_err(internal)?
        .ok_or_else(|| ApiError::not_found("no such deal"))?;
    let settlements = &state.services.settlements;
    let run = state.services.allocations.run(&deal_id).await.map_err(internal)?;
    let settlement = settlements.state(&deal_id).await.map_err(internal)?;
    let legs = settlements.legs(&deal_id).await.map_err(internal)?;
    let audit = AuditLog::new(state.platform.store.clone(), state.platform.clock.clone());
    let event = Event::applied(&me.user_id, "settlement.view", &format!("deal:{deal_id}"), "read");
    audit.append(event).await.map_err(internal)?;
    Ok(Json(DealSettlementView {
        deal_id,
        deal_state: deal.state,
        allocation: run.map(RunView::from),
        settlement: settlement.map(SettlementView::from),
        legs: legs.into_iter().map(|l| leg_view(settlements, l)).collect(),
    }))
}

/// Retries a stuck leg (finance operators, audited): pending again with a new deadline,
/// and the settlement advances.
#[utoipa::path(post, path = "/v1/admin/settlement/legs/{id}/retry", tag = "settlement", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = LegView), (status = 403, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "Confirmed or rejected", body = Problem, content_type = PROBLEM_JSON)))]
pub async fn retry(
    State(state): State<ApiState<Services>>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<LegView>, ApiError> {
    authorize(&state.platform, &me, Action::ManageSettlement, Resource::None, "settlement.leg.retry").await?;
    let settlements = &state.services.settlements;
    let leg = settlements.retry(&me.user_id, &id).await.map_err(settlement_error)?;
    Ok(Json(leg_view(settlements, leg)))
}

/// What the platform answers a partner's callback.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallbackAnswer {
    pub status: &'static str,
}

/// The Custody's decisions on distributions, signed: `Custody-Timestamp` (Unix seconds)
/// and `Custody-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`. Applying a
/// decision again changes nothing.
#[utoipa::path(post, path = "/v1/webhooks/custody", tag = "webhooks",
    params(("Custody-Timestamp" = String, Header), ("Custody-Signature" = String, Header)),
    request_body(content = Object, description = "A Custody event (see docs/partners/custody.md)"),
    responses(
        (status = 200, body = CallbackAnswer),
        (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "Bad signature or stale timestamp", body = Problem, content_type = PROBLEM_JSON),
        (status = 404, description = "No such distribution", body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn custody_webhook(
    State(state): State<ApiState<Services>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<CallbackAnswer>, ApiError> {
    let keys = state.platform.config.custody_keys.as_ref();
    shared::http::webhook::verify_signed(&state.platform, keys, "custody", &headers, &body).await?;
    let CustodyEvent::DistributionDecided { reference, decision, .. } = shared::http::json::parse(&body)?;
    state.services.settlements.on_decision(&reference, decision).await.map_err(|e| match e {
        SettlementError::NotFound => ApiError::not_found("no such distribution"),
        other => ApiError::internal(&other),
    })?;
    Ok(Json(CallbackAnswer { status: "applied" }))
}
