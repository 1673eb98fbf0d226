//! The `offering` function: issuers, deals, subscriptions, holdings and allocations.

pub mod allocations;
pub mod deals;
pub mod issuers;
pub mod subscriptions;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, patch, post};
use shared::Platform;
use shared::app::allocation::AllocationRecords;
use shared::app::changes::ChangeRequests;
use shared::app::deals::Deals;
use shared::app::deposits::DepositAccounts;
use shared::app::issuers::Issuers;
use shared::app::subscriptions::Subscriptions;
use shared::app::verifier::TokenVerifier;
use shared::domain::session::SessionPolicy;
use shared::http::auth::VerifierSource;
use utoipa::OpenApi;

/// What the handlers share: the services, built once when the function starts.
#[derive(Clone)]
pub struct OfferingState {
    pub platform: Platform,
    pub deposits: Arc<DepositAccounts>,
    pub subscriptions: Arc<Subscriptions>,
    pub deals: Arc<Deals>,
    pub issuers: Arc<Issuers>,
    pub changes: Arc<ChangeRequests>,
    pub allocations: AllocationRecords,
    verifier: Arc<TokenVerifier>,
}

impl VerifierSource for OfferingState {
    fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }
}

/// This function's own routes.
pub fn routes(platform: &Platform) -> Router {
    let deposits = Arc::new(platform.deposit_accounts());
    let p = platform;
    let state = OfferingState {
        platform: platform.clone(),
        subscriptions: Arc::new(platform.subscriptions(deposits.clone())),
        deposits,
        deals: Arc::new(platform.deals()),
        issuers: Arc::new(platform.issuers()),
        changes: Arc::new(ChangeRequests::new(p.store.clone(), p.clock.clone(), p.ids.clone())),
        allocations: platform.allocation_records(),
        verifier: Arc::new(platform.token_verifier(SessionPolicy::default())),
    };
    Router::new()
        .route("/v1/issuers", post(issuers::submit))
        .route("/v1/issuers/{id}", get(issuers::get))
        .route("/v1/admin/issuers", get(issuers::list))
        .route("/v1/admin/issuers/{id}/decision", post(issuers::propose_decision))
        .route("/v1/issuers/{id}/deals", get(deals::of_issuer))
        .route("/v1/deals", get(deals::list_public))
        .route("/v1/deals/{id}", get(deals::get))
        .route("/v1/admin/deals", post(deals::register))
        .route("/v1/admin/deals/{id}", patch(deals::edit))
        .route("/v1/admin/deals/{id}/publish", post(deals::publish))
        .route("/v1/admin/deals/{id}/close", post(deals::close))
        .route("/v1/admin/deals/{id}/cancel", post(deals::cancel))
        .route("/v1/deals/{id}/subscriptions", post(subscriptions::subscribe))
        .route("/v1/subscriptions/{id}/cancel", post(subscriptions::cancel))
        .route("/v1/me/subscriptions", get(subscriptions::mine))
        .route("/v1/me/holdings", get(subscriptions::holdings))
        .route("/v1/admin/deals/{id}/subscriptions", get(subscriptions::book))
        .route("/v1/admin/deals/{id}/totals", get(subscriptions::totals))
        .route("/v1/me/allocations", get(allocations::mine))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(
        issuers::submit, issuers::get, issuers::list, issuers::propose_decision, deals::register, deals::edit,
        deals::publish, deals::close, deals::cancel, deals::list_public, deals::get, deals::of_issuer,
        subscriptions::subscribe, subscriptions::cancel, subscriptions::mine, subscriptions::holdings,
        subscriptions::book, subscriptions::totals, allocations::mine
    ),
    components(schemas(
        shared::app::issuers::Issuer, shared::app::issuers::Onboarding,
        shared::app::issuers::Contact, shared::app::issuers::BankDetails, shared::app::issuers::IssuerStatus,
        issuers::DecisionRequest, issuers::Verdict, deals::NewDeal, deals::EditDeal, deals::DealView,
        deals::BuildingView, shared::domain::deal::DealState, shared::domain::deal::BuildingType,
        subscriptions::SubscriptionRequest, subscriptions::SubscriptionView, subscriptions::HoldingView,
        subscriptions::TotalsView, shared::app::subscriptions::SubscriptionStatus, allocations::AllocationView)),
    tags(
        (name = "issuers", description = "Issuer onboarding and review"),
        (name = "deals", description = "Deals: registration, maker-checker publication, the window, public reads"),
        (name = "subscriptions", description = "Subscriptions, holdings, a deal's book and totals"),
        (name = "settlement", description = "Allocations, settlement progress, stuck legs and their retry")
    )
)]
struct Doc;

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// The routes with everything every HTTP function shares, as Lambda serves them; the
/// document at `/openapi.json` is the whole API's.
pub fn app(platform: &Platform) -> Router {
    shared::http::service(routes(platform), platform, shared::http::openapi::published())
}
