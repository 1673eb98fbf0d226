//! Issuers: onboarding by an issuer user, review by deal operators (maker-checker).

use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use shared::app::changes::{Change, ChangeRequest};
use shared::app::issuers::{Issuer, IssuerError, Onboarding};
use shared::app::sessions::Principal;
use shared::domain::access::{self, Action, LEVEL_SECOND_FACTOR, Resource, Role};
use shared::http::Path;
use shared::http::auth::{Authenticated, authorize};
use shared::http::page::{PageOf, Paging};
use shared::http::problem::{PROBLEM_JSON, Problem};
use shared::http::{ApiError, Json};
use utoipa::ToSchema;

use crate::OfferingState;

fn issuer_error(e: IssuerError) -> ApiError {
    match e {
        IssuerError::Invalid(problems) => ApiError::invalid_fields(problems),
        IssuerError::AlreadyOnboarded => ApiError::conflict("the caller already acts for an issuer"),
        IssuerError::UenTaken => ApiError::conflict("an issuer with this UEN is already onboarded"),
        IssuerError::NoUser => ApiError::unauthorized("the caller's account is gone"),
        IssuerError::Keyring(e) => ApiError::internal(&e),
        IssuerError::Store(e) => ApiError::internal(&e),
    }
}

/// Submits the issuer's onboarding; the caller (an issuer user with a second factor) then
/// acts for this issuer (their next token carries it).
#[utoipa::path(post, path = "/v1/issuers", tag = "issuers", security(("bearer" = [])),
    request_body = Onboarding,
    responses(
        (status = 201, body = Issuer),
        (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "Not an issuer user, or no second factor", body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "Already onboarded, or the UEN is taken", body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn submit(
    State(state): State<OfferingState>,
    Authenticated(me): Authenticated,
    Json(body): Json<Onboarding>,
) -> Result<(StatusCode, Json<Issuer>), ApiError> {
    if !me.known_roles().contains(&Role::Issuer) {
        return Err(ApiError::forbidden("only issuer users onboard an issuer"));
    }
    if me.level < LEVEL_SECOND_FACTOR {
        return Err(ApiError::forbidden("issuer users need a second factor"));
    }
    let issuer = state.issuers.submit(&me.user_id, body).await.map_err(issuer_error)?;
    Ok((StatusCode::CREATED, Json(issuer)))
}

/// Whether `me` may see issuer `id`: its own users, and the operators who review issuers.
fn may_see(me: &Principal, id: &str) -> bool {
    let roles = me.known_roles();
    let subject = me.subject(&roles);
    access::decide(&subject, Action::ActForIssuer, Resource::OfIssuer(id)).is_allowed()
        || access::decide(&subject, Action::ReviewIssuers, Resource::None).is_allowed()
}

/// One issuer, for its own users and for deal operators (404 for anyone else).
#[utoipa::path(get, path = "/v1/issuers/{id}", tag = "issuers", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Issuer), (status = 404, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn get(
    State(state): State<OfferingState>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Issuer>, ApiError> {
    let not_found = || ApiError::not_found("no such issuer");
    if !may_see(&me, &id) {
        return Err(not_found());
    }
    let issuer = state.issuers.get(&id).await.map_err(issuer_error)?;
    issuer.map(Json).ok_or_else(not_found)
}

/// Every issuer, oldest first (deal operators).
#[utoipa::path(get, path = "/v1/admin/issuers", tag = "issuers", security(("bearer" = [])),
    params(("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = PageOf<Issuer>), (status = 403, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn list(
    State(state): State<OfferingState>,
    Authenticated(me): Authenticated,
    paging: Paging,
) -> Result<Json<PageOf<Issuer>>, ApiError> {
    authorize(&state.platform, &me, Action::ReviewIssuers, Resource::None, "issuers.list").await?;
    let issuers = state.issuers;
    let (items, next) = issuers.list(paging.limit, paging.cursor).await.map_err(issuer_error)?;
    Ok(Json(PageOf::new(items, next)))
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Reject,
}

/// `POST /v1/admin/issuers/{id}/decision`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    pub decision: Verdict,
}

/// Proposes approving or rejecting an issuer; another deal operator decides it at
/// `POST /v1/admin/change-requests/{id}/approve` (or `reject`).
#[utoipa::path(post, path = "/v1/admin/issuers/{id}/decision", tag = "issuers", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = DecisionRequest,
    responses(
        (status = 202, body = ChangeRequest),
        (status = 403, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "Already decided, or a decision is pending", body = Problem, content_type = PROBLEM_JSON),
    ))]
pub async fn propose_decision(
    State(state): State<OfferingState>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
    Json(body): Json<DecisionRequest>,
) -> Result<(StatusCode, Json<ChangeRequest>), ApiError> {
    let roles = me.known_roles();
    let change = Change::DecideIssuer { issuer_id: id, approve: matches!(body.decision, Verdict::Approve) };
    let request = state.changes.propose(&me.subject(&roles), change).await.map_err(shared::http::change_error)?;
    Ok((StatusCode::ACCEPTED, Json(request)))
}
