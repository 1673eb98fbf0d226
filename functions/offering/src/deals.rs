//! Deals: register, edit, publish (maker-checker), close early, cancel; public reads.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shared::app::changes::{Change, ChangeRequest};
use shared::app::deals::{Deal, DealError, DealPatch};
use shared::app::sessions::Principal;
use shared::domain::access::{self, Action, Resource};
use shared::domain::deal::{Building, BuildingType, DealState, Step, Terms};
use shared::domain::money::{format_cents, parse_cents};
use shared::http::auth::{Authenticated, as_of_now, authorize};
use shared::http::openapi::DecimalAmount;
use shared::http::page::{PageOf, Paging};
use shared::http::problem::{PROBLEM_JSON, Problem};
use shared::http::{ApiError, FieldError, Json};
use shared::http::{Path, Query};
use utoipa::ToSchema;

use crate::OfferingState;
use shared::http::{change_error, deal_error};

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BuildingView {
    pub name: String,
    pub address: String,
    #[serde(rename = "type")]
    pub kind: BuildingType,
    /// SGD, a decimal string.
    #[schema(value_type = DecimalAmount)]
    pub valuation: String,
}

/// `POST /v1/admin/deals`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDeal {
    pub issuer_id: String,
    pub building: BuildingView,
    /// Whole DABS units on offer.
    pub supply: u64,
    /// SGD per unit, a decimal string.
    #[schema(value_type = DecimalAmount)]
    pub unit_price: String,
    pub min_units: u64,
    pub max_units: u64,
    pub opens_at: DateTime<Utc>,
    pub closes_at: DateTime<Utc>,
    #[serde(default)]
    pub documents: Vec<String>,
}

/// `PATCH /v1/admin/deals/{id}`: absent fields stay; economic ones only before publication.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EditDeal {
    pub building_name: Option<String>,
    pub building_address: Option<String>,
    pub building_type: Option<BuildingType>,
    pub documents: Option<Vec<String>>,
    #[schema(value_type = Option<DecimalAmount>)]
    pub valuation: Option<String>,
    pub supply: Option<u64>,
    #[schema(value_type = Option<DecimalAmount>)]
    pub unit_price: Option<String>,
    pub min_units: Option<u64>,
    pub max_units: Option<u64>,
    pub opens_at: Option<DateTime<Utc>>,
    pub closes_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DealView {
    pub id: String,
    pub issuer_id: String,
    pub state: DealState,
    /// The DABS asset of the deal's holdings.
    pub asset: String,
    pub building: BuildingView,
    pub supply: u64,
    pub unit_price: String,
    pub min_units: u64,
    pub max_units: u64,
    pub opens_at: DateTime<Utc>,
    pub closes_at: DateTime<Utc>,
    pub documents: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Deal> for DealView {
    fn from(d: Deal) -> Self {
        let t = d.terms;
        Self {
            id: d.id,
            issuer_id: d.issuer_id,
            state: d.state,
            asset: d.asset,
            building: BuildingView {
                name: t.building.name,
                address: t.building.address,
                kind: t.building.kind,
                valuation: format_cents(i128::from(t.building.valuation)),
            },
            supply: t.supply,
            unit_price: format_cents(i128::from(t.unit_price)),
            min_units: t.min_units,
            max_units: t.max_units,
            opens_at: t.opens_at,
            closes_at: t.closes_at,
            documents: t.documents,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

fn cents(field: &str, text: &str) -> Result<u64, ApiError> {
    parse_cents(text).map_err(|e| ApiError::validation(vec![FieldError::amount(field, &e)]))
}

/// Whether `me` may see a deal that is not public: deal operators, and its issuer's users.
fn may_see_unpublished(me: &Principal, deal: &Deal) -> bool {
    let roles = me.known_roles();
    let subject = me.subject(&roles);
    access::decide(&subject, Action::ManageDeals, Resource::None).is_allowed()
        || access::decide(&subject, Action::ActForIssuer, Resource::OfIssuer(&deal.issuer_id)).is_allowed()
}

/// Registers a draft deal for an approved issuer (deal operators).
#[utoipa::path(post, path = "/v1/admin/deals", tag = "deals", security(("bearer" = [])), request_body = NewDeal,
    responses((status = 201, body = DealView), (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 403, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn register(
    State(state): State<OfferingState>,
    Authenticated(me): Authenticated,
    Json(body): Json<NewDeal>,
) -> Result<(StatusCode, Json<DealView>), ApiError> {
    authorize(&state.platform, &me, Action::ManageDeals, Resource::None, "deal.register").await?;
    let terms = Terms {
        building: Building {
            name: body.building.name,
            address: body.building.address,
            kind: body.building.kind,
            valuation: cents("building.valuation", &body.building.valuation)?,
        },
        supply: body.supply,
        unit_price: cents("unit_price", &body.unit_price)?,
        min_units: body.min_units,
        max_units: body.max_units,
        opens_at: body.opens_at,
        closes_at: body.closes_at,
        documents: body.documents,
    };
    let deal = state.deals.register(&me.user_id, &body.issuer_id, terms).await.map_err(deal_error)?;
    Ok((StatusCode::CREATED, Json(deal.into())))
}

/// Edits a deal. A draft changes at once (200). A published or open deal's descriptions
/// and documents change only with a second deal operator's approval: the edit becomes a
/// change request (202) approved at `POST /v1/admin/change-requests/{id}/approve`.
/// Economic terms never change once published. The audit log records every changed
/// field with its old and new value.
#[utoipa::path(patch, path = "/v1/admin/deals/{id}", tag = "deals", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = EditDeal,
    responses((status = 200, description = "The draft as edited", body = DealView),
        (status = 202, description = "A published deal's edit, awaiting approval", body = ChangeRequest),
        (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 403, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "The state does not allow the change, or the same change is pending", body = Problem, content_type = PROBLEM_JSON)))]
pub async fn edit(
    State(state): State<OfferingState>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
    Json(body): Json<EditDeal>,
) -> Result<Response, ApiError> {
    authorize(&state.platform, &me, Action::ManageDeals, Resource::None, "deal.update").await?;
    let patch = DealPatch {
        building_name: body.building_name,
        building_address: body.building_address,
        building_type: body.building_type,
        documents: body.documents,
        valuation: body.valuation.as_deref().map(|v| cents("valuation", v)).transpose()?,
        supply: body.supply,
        unit_price: body.unit_price.as_deref().map(|v| cents("unit_price", v)).transpose()?,
        min_units: body.min_units,
        max_units: body.max_units,
        opens_at: body.opens_at,
        closes_at: body.closes_at,
    };
    match state.deals.update(&me.user_id, &id, &patch).await {
        Ok(deal) => Ok(Json(DealView::from(deal)).into_response()),
        Err(DealError::NeedsApproval) => propose(&state, &me, Change::EditDeal { deal_id: id, patch }).await,
        Err(e) => Err(deal_error(e)),
    }
}

/// Proposes a change to a deal; answers the request, 202.
async fn propose(state: &OfferingState, me: &Principal, change: Change) -> Result<Response, ApiError> {
    let roles = me.known_roles();
    let request = state.changes.propose(&me.subject(&roles), change).await.map_err(change_error)?;
    Ok((StatusCode::ACCEPTED, Json(request)).into_response())
}

/// Proposes publishing a draft deal (it goes to pending approval); another deal operator
/// approves it at `POST /v1/admin/change-requests/{id}/approve`.
#[utoipa::path(post, path = "/v1/admin/deals/{id}/publish", tag = "deals", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 202, body = ChangeRequest), (status = 403, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON),
        (status = 409, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn publish(
    State(state): State<OfferingState>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    propose(&state, &me, Change::PublishDeal { deal_id: id }).await
}

/// Proposes closing an open deal before its window ends (finance operators); another
/// finance operator approves it at `POST /v1/admin/change-requests/{id}/approve`, and
/// the allocation starts on the next sweep.
#[utoipa::path(post, path = "/v1/admin/deals/{id}/close", tag = "deals", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 202, body = ChangeRequest), (status = 403, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON),
        (status = 409, description = "The deal is not open, or its end is already proposed", body = Problem, content_type = PROBLEM_JSON)))]
pub async fn close(
    State(state): State<OfferingState>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    propose(&state, &me, Change::CloseDeal { deal_id: id }).await
}

/// Cancels a deal before it closes (deal operators). A draft is cancelled at once (200).
/// A published or open deal is cancelled only with a second deal operator's approval
/// (202, a change request); the sweep then releases every subscription's hold.
/// Cancelling a cancelled deal again answers it and finishes any release left undone.
#[utoipa::path(post, path = "/v1/admin/deals/{id}/cancel", tag = "deals", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "Cancelled", body = DealView),
        (status = 202, description = "A published deal's cancellation, awaiting approval", body = ChangeRequest),
        (status = 403, body = Problem, content_type = PROBLEM_JSON),
        (status = 404, body = Problem, content_type = PROBLEM_JSON),
        (status = 409, body = Problem, content_type = PROBLEM_JSON),
        (status = 503, description = "Cancelled; releasing the holds failed: cancel again", body = Problem, content_type = PROBLEM_JSON)))]
pub async fn cancel(
    State(state): State<OfferingState>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&state.platform, &me, Action::ManageDeals, Resource::None, "deal.cancel").await?;
    let deals = &state.deals;
    let deal = match deals.step(&me.user_id, &id, Step::Cancel).await {
        Ok(deal) => deal,
        Err(DealError::NeedsApproval) => return propose(&state, &me, Change::CancelDeal { deal_id: id }).await,
        // Cancelling again finishes releasing the holds (if a first attempt died half way).
        Err(DealError::Transition(t)) if t.from == DealState::Cancelled => {
            deals.get(&id).await?.ok_or_else(|| ApiError::not_found("no such deal"))?
        }
        Err(e) => return Err(deal_error(e)),
    };
    let released = state.subscriptions.release_cancelled(&id).await;
    released
        .map_err(|e| ApiError::unavailable(format!("cancelled; releasing the holds failed ({e}): cancel again")))?;
    Ok(Json(DealView::from(deal)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct StateFilter {
    state: Option<String>,
}

/// Offer terms are for opted-in accredited investors only (SFA s275: no offer to the
/// public). Operators and issuers read deals through their own routes.
async fn offer_reader(state: &OfferingState, me: &Principal) -> Result<(), ApiError> {
    authorize(&state.platform, &as_of_now(&state.platform, me).await?, Action::ReadOffers, Resource::None, "deals.read")
        .await
}

/// Published and later deals, oldest first; `state` narrows to one state. Opted-in
/// accredited investors (level 3) only.
#[utoipa::path(get, path = "/v1/deals", tag = "deals", security(("bearer" = [])),
    params(("state" = Option<String>, Query), ("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = PageOf<DealView>), (status = 400, body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "No sign-in: offer terms are not shown to the public", body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "Not an opted-in accredited investor (level 3)", body = Problem, content_type = PROBLEM_JSON)))]
pub async fn list_public(
    State(state): State<OfferingState>,
    Authenticated(me): Authenticated,
    Query(filter): Query<StateFilter>,
    paging: Paging,
) -> Result<Json<PageOf<DealView>>, ApiError> {
    offer_reader(&state, &me).await?;
    let public: Vec<DealState> = DealState::ALL.into_iter().filter(|s| s.is_public()).collect();
    let states = match filter.state.as_deref() {
        None => public,
        Some(text) => match DealState::parse(text).filter(|s| s.is_public()) {
            Some(one) => vec![one],
            None => {
                let names: Vec<&str> = public.iter().map(|s| s.as_str()).collect();
                return Err(ApiError::validation(vec![FieldError::new(
                    "state",
                    format!("one of {}", names.join(", ")),
                )]));
            }
        },
    };
    let (deals, next) = state.deals.list(&states, paging.limit, paging.cursor).await?;
    Ok(Json(PageOf::new(deals.into_iter().map(DealView::from).collect(), next)))
}

/// One deal: for deal operators and its issuer's users in any state; once published, for
/// opted-in accredited investors (level 3) too.
#[utoipa::path(get, path = "/v1/deals/{id}", tag = "deals", security(("bearer" = [])), params(("id" = String, Path)),
    responses((status = 200, body = DealView), (status = 404, body = Problem, content_type = PROBLEM_JSON),
        (status = 401, description = "No sign-in, or an invalid or expired token", body = Problem, content_type = PROBLEM_JSON),
        (status = 403, description = "Not an opted-in accredited investor (level 3)", body = Problem, content_type = PROBLEM_JSON)))]
pub async fn get(
    State(state): State<OfferingState>,
    Authenticated(me): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<DealView>, ApiError> {
    let not_found = || ApiError::not_found("no such deal");
    let deal = state.deals.get(&id).await?.ok_or_else(not_found)?;
    if may_see_unpublished(&me, &deal) {
        return Ok(Json(deal.into()));
    }
    offer_reader(&state, &me).await?;
    if !deal.state.is_public() {
        return Err(not_found());
    }
    Ok(Json(deal.into()))
}

/// Every deal of one issuer in any state: its own users and deal operators.
#[utoipa::path(get, path = "/v1/issuers/{id}/deals", tag = "deals", security(("bearer" = [])),
    params(("id" = String, Path), ("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = PageOf<DealView>), (status = 404, body = Problem, content_type = PROBLEM_JSON)))]
pub async fn of_issuer(
    State(state): State<OfferingState>,
    Authenticated(me): Authenticated,
    Path(issuer): Path<String>,
    paging: Paging,
) -> Result<Json<PageOf<DealView>>, ApiError> {
    let roles = me.known_roles();
    let subject = me.subject(&roles);
    let allowed = access::decide(&subject, Action::ActForIssuer, Resource::OfIssuer(&issuer)).is_allowed()
        || access::decide(&subject, Action::ManageDeals, Resource::None).is_allowed();
    if !allowed {
        return Err(ApiError::not_found("no such issuer"));
    }
    let (deals, next) = state.deals.list(&DealState::ALL, paging.limit, paging.cursor).await?;
    let own = deals.into_iter().filter(|d| d.issuer_id == issuer).map(DealView::from).collect();
    Ok(Json(PageOf::new(own, next)))
}
