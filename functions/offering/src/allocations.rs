//! The caller's allocations.

use std::collections::HashMap;

use axum::extract::State;
use serde::Serialize;
use shared::app::allocation::{Run, RunState};
use shared::domain::access::{Action, Resource};
use shared::domain::money::format_cents;
use shared::http::auth::{Authenticated, authorize};
use shared::http::page::{PageOf, Paging};
use shared::http::{ApiError, Json};
use utoipa::ToSchema;

use crate::OfferingState;

/// One of the caller's allocations, once the deal's run is complete.
#[derive(Debug, Serialize, ToSchema)]
pub struct AllocationView {
    pub deal_id: String,
    pub subscription_id: String,
    pub units_requested: u64,
    pub units_allocated: u64,
    /// SGD, decimal strings: what was held, what the units cost, what comes back.
    pub amount_held: String,
    pub amount_charged: String,
    pub amount_refunded: String,
    /// The deal's allocation ratio, 15 decimals (display only).
    pub ratio: String,
}

/// The caller's allocations, newest subscription first; a deal's appear once its run is complete.
#[utoipa::path(get, path = "/v1/me/allocations", tag = "settlement", security(("bearer" = [])),
    params(("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = PageOf<AllocationView>)))]
pub async fn mine(
    State(state): State<OfferingState>,
    Authenticated(me): Authenticated,
    paging: Paging,
) -> Result<Json<PageOf<AllocationView>>, ApiError> {
    authorize(&state.platform, &me, Action::ReadOwned, Resource::OwnedBy(&me.user_id), "allocations.mine").await?;
    let internal = |e: shared::ports::store::StoreError| ApiError::internal(&e);
    let (subs, next) =
        state.subscriptions.of_investor(&me.user_id, paging.limit, paging.cursor).await.map_err(internal)?;
    let allocations = &state.allocations;
    let mut runs: HashMap<String, Option<Run>> = HashMap::new();
    let mut items = Vec::new();
    for sub in subs {
        if !runs.contains_key(&sub.deal_id) {
            let run = allocations.run(&sub.deal_id).await.map_err(internal)?;
            runs.insert(sub.deal_id.clone(), run.filter(|r| r.state == RunState::Complete));
        }
        let Some(run) = &runs[&sub.deal_id] else { continue };
        let Some(a) = allocations.allocation(&sub.id).await.map_err(internal)? else { continue };
        items.push(AllocationView {
            units_allocated: a.units(),
            amount_charged: format_cents(i128::from(a.charged())),
            amount_refunded: format_cents(i128::from(a.refunded())),
            amount_held: format_cents(i128::from(a.held)),
            deal_id: a.deal_id,
            subscription_id: a.subscription_id,
            units_requested: a.requested,
            ratio: run.ratio.clone(),
        });
    }
    Ok(Json(PageOf::new(items, next)))
}
