//! Subscriptions: apply and cancel while a deal is open; the investor's own lists; the
//! operators' book and totals.

use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::app::ledger::LedgerError;
use shared::app::subscriptions::{Subscription, SubscriptionError, SubscriptionStatus};
use shared::domain::access::{Action, Resource};
use shared::domain::ledger::Kind;
use shared::domain::money::format_cents;
use shared::http::Path;
use shared::http::auth::{Authenticated, authorize};
use shared::http::idempotency::IdempotencyKey;
use shared::http::page::{PageOf, Paging};
use shared::http::problem::{PROBLEM_JSON, Problem};
use shared::http::{ApiError, FieldError, Json};
use utoipa::ToSchema;

use crate::OfferingState;

/// `POST /v1/deals/{id}/subscriptions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionRequest {
    /// Whole DABS units, within the deal's minimum and maximum.
    pub units: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionView {
    pub id: String,
    pub deal_id: String,
    pub units: u64,
    /// SGD held, a decimal string.
    pub amount: String,
    pub status: SubscriptionStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Subscription> for SubscriptionView {
    fn from(s: Subscription) -> Self {
        Self {
            id: s.id,
            deal_id: s.deal_id,
            units: s.units,
            amount: format_cents(i128::from(s.amount)),
            status: s.status,
            reason: s.reason,
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// One DABS holding.
#[derive(Debug, Serialize, ToSchema)]
pub struct HoldingView {
    /// The deal's DABS asset.
    pub asset: String,
    pub units: u64,
    pub available_units: u64,
}

/// A deal's book totals over live subscriptions.
#[derive(Debug, Serialize, ToSchema)]
pub struct TotalsView {
    pub deal_id: String,
    pub live_subscriptions: u64,
    pub units_requested: u64,
    /// SGD, a decimal string.
    pub amount_held: String,
    /// What the escrow account holds pending, from the ledger: equals `amount_held`.
    pub escrow_pending: String,
}

fn subscription_error(e: SubscriptionError) -> ApiError {
    match e {
        SubscriptionError::NotFound => ApiError::not_found("no such deal or subscription"),
        SubscriptionError::NotOpen => ApiError::conflict("the deal is not open for subscriptions"),
        SubscriptionError::Units(refusal) => {
            ApiError::validation(vec![FieldError::refused("units", refusal.to_string())])
        }
        SubscriptionError::AlreadySubscribed => {
            ApiError::conflict("you already have a live subscription to this deal: cancel it to apply again")
        }
        SubscriptionError::KeyReused => {
            ApiError::unprocessable("the Idempotency-Key was used for another subscription")
        }
        SubscriptionError::NotCancellable(why) => ApiError::conflict(format!("cannot cancel while {why}")),
        SubscriptionError::Ledger(LedgerError::Busy) => ApiError::unavailable("the deal is busy; retry"),
        SubscriptionError::Ledger(e) => ApiError::internal(&e),
        SubscriptionError::Account(e) => ApiError::internal(&e),
        SubscriptionError::Store(e) => ApiError::internal(&e),
    }
}

/// Applies for units of an open deal (level 3): the amount is held from the deposit
/// account until allocation. The same `Idempotency-Key` and body answer the same subscription.
#[utoipa::path(post, path = "/v1/deals/{id}/subscriptions", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = String, Path), ("Idempotency-Key" = String, Header)), request_body = SubscriptionRequest,
    responses(
        (status = 201, body = SubscriptionView),
        (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "Below level 3", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "Not open, or a live subscription exists", body = Problem, content_type = PROBLEM_JSON),
        (status = 422, description = "More than the available balance", body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn subscribe(
    State(state): State<OfferingState>,
    Authenticated(me): Authenticated,
    Path(deal_id): Path<String>,
    IdempotencyKey(key): IdempotencyKey,
    Json(body): Json<SubscriptionRequest>,
) -> Result<(StatusCode, Json<SubscriptionView>), ApiError> {
    // The stored level: an investor who opted out is refused at once.
    let now = shared::http::auth::as_of_now(&state.platform, &me).await?;
    authorize(&state.platform, &now, Action::Subscribe, Resource::OwnedBy(&me.user_id), "subscription.create").await?;
    let sub =
        state.subscriptions.subscribe(&me.user_id, &deal_id, &key, body.units).await.map_err(subscription_error)?;
    if sub.status == SubscriptionStatus::Rejected {
        let reason = sub.reason.unwrap_or_default();
        return Err(ApiError::unprocessable(format!("the subscription was rejected: {reason}")));
    }
    Ok((StatusCode::CREATED, Json(sub.into())))
}

/// Cancels the caller's live subscription while the deal is open; the hold is released.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/cancel", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = SubscriptionView), (status = 404, body = Problem, content_type = PROBLEM_JSON),
        (status = 409, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn cancel(
    State(state): State<OfferingState>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<SubscriptionView>, ApiError> {
    authorize(&state.platform, &me, Action::ReadOwned, Resource::OwnedBy(&me.user_id), "subscription.cancel").await?;
    let sub = state.subscriptions.cancel(&me.user_id, &id).await.map_err(subscription_error)?;
    Ok(Json(sub.into()))
}

/// The caller's subscriptions, newest first.
#[utoipa::path(get, path = "/v1/me/subscriptions", tag = "subscriptions", security(("bearer" = [])),
    params(("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = PageOf<SubscriptionView>)))]
pub async fn mine(
    State(state): State<OfferingState>,
    Authenticated(me): Authenticated,
    paging: Paging,
) -> Result<Json<PageOf<SubscriptionView>>, ApiError> {
    authorize(&state.platform, &me, Action::ReadOwned, Resource::OwnedBy(&me.user_id), "subscriptions.mine").await?;
    let (subs, next) = state.subscriptions.of_investor(&me.user_id, paging.limit, paging.cursor).await?;
    Ok(Json(PageOf::new(subs.into_iter().map(SubscriptionView::from).collect(), next)))
}

/// The caller's DABS holdings, one per deal issued to them.
#[utoipa::path(get, path = "/v1/me/holdings", tag = "subscriptions", security(("bearer" = [])),
    responses((status = 200, body = [HoldingView])))]
pub async fn holdings(
    State(state): State<OfferingState>,
    Authenticated(me): Authenticated,
) -> Result<Json<Vec<HoldingView>>, ApiError> {
    authorize(&state.platform, &me, Action::ReadOwned, Resource::OwnedBy(&me.user_id), "holdings.mine").await?;
    let accounts = state.deposits.ledger().accounts_of(&me.user_id).await.map_err(|e| ApiError::internal(&e))?;
    let units = |v: i128| u64::try_from(v).unwrap_or(0);
    let holdings = accounts
        .into_iter()
        .filter(|a| a.kind == Kind::Holding)
        .map(|a| HoldingView {
            units: units(a.posted_balance()),
            available_units: units(a.available()),
            asset: a.asset,
        })
        .collect();
    Ok(Json(holdings))
}

/// A deal's subscription book, oldest first (deal operators).
#[utoipa::path(get, path = "/v1/admin/deals/{id}/subscriptions", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = String, Path), ("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = PageOf<SubscriptionView>), (status = 403, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn book(
    State(state): State<OfferingState>,
    Authenticated(me): Authenticated,
    Path(deal_id): Path<String>,
    paging: Paging,
) -> Result<Json<PageOf<SubscriptionView>>, ApiError> {
    authorize(&state.platform, &me, Action::ManageDeals, Resource::None, "deal.book").await?;
    let (subs, next) = state.subscriptions.book(&deal_id, paging.limit, paging.cursor).await?;
    Ok(Json(PageOf::new(subs.into_iter().map(SubscriptionView::from).collect(), next)))
}

/// A deal's totals over live subscriptions, streamed from the book, beside the escrow's
/// pending balance from the ledger (deal operators).
#[utoipa::path(get, path = "/v1/admin/deals/{id}/totals", tag = "subscriptions", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = TotalsView), (status = 403, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn totals(
    State(state): State<OfferingState>,
    Authenticated(me): Authenticated,
    Path(deal_id): Path<String>,
) -> Result<Json<TotalsView>, ApiError> {
    authorize(&state.platform, &me, Action::ManageDeals, Resource::None, "deal.totals").await?;
    let deal = state.deals.get(&deal_id).await?.ok_or_else(|| ApiError::not_found("no such deal"))?;
    let totals = state.subscriptions.totals(&deal_id).await?;
    let escrow = state.deposits.ledger().account(&deal.escrow_account).await.map_err(|e| ApiError::internal(&e))?;
    Ok(Json(TotalsView {
        deal_id,
        live_subscriptions: totals.live,
        units_requested: u64::try_from(totals.units).unwrap_or(u64::MAX),
        amount_held: format_cents(totals.amount as i128),
        escrow_pending: format_cents(escrow.map_or(0, |a| a.credits_pending) as i128),
    }))
}
