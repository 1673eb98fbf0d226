//! The `offering` function: deposit accounts (balances, statements, withdrawals, the
//! bank's webhook) and the finance view of the ledger; issuers, deals and subscriptions;
//! allocations, the settlement view and its retries, and the Custody's callback; the
//! finance view of reconciliation.

pub mod accounts;
pub mod deals;
pub mod issuers;
pub mod reconciliation;
pub mod settlement;
pub mod subscriptions;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, patch, post};
use shared::Platform;
use shared::app::deposits::DepositAccounts;
use shared::app::subscriptions::Subscriptions;
use shared::app::verifier::TokenVerifier;
use shared::domain::session::SessionPolicy;
use shared::http::auth::VerifierSource;
use utoipa::OpenApi;

/// What the handlers share.
#[derive(Clone)]
pub struct OfferingState {
    pub platform: Platform,
    pub deposits: Arc<DepositAccounts>,
    pub subscriptions: Arc<Subscriptions>,
    verifier: Arc<TokenVerifier>,
}

impl VerifierSource for OfferingState {
    fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }
}

/// This function's own routes.
pub fn routes(platform: &Platform) -> Router {
    let deposits = Arc::new(DepositAccounts::for_platform(platform));
    let state = OfferingState {
        platform: platform.clone(),
        subscriptions: Arc::new(Subscriptions::new(platform, deposits.clone())),
        deposits,
        verifier: Arc::new(TokenVerifier::for_platform(platform, SessionPolicy::default())),
    };
    Router::new()
        .route("/v1/accounts/me", get(accounts::my_accounts))
        .route("/v1/accounts/me/statement", get(accounts::my_statement))
        .route("/v1/accounts/me/withdrawals", post(accounts::withdraw))
        .route("/v1/accounts/me/withdrawals/{id}", get(accounts::my_withdrawal))
        .route("/v1/webhooks/bank", post(accounts::bank_webhook))
        .route("/v1/admin/accounts/{id}", get(accounts::admin_account))
        .route("/v1/admin/accounts/{id}/statement", get(accounts::admin_statement))
        .route("/v1/admin/ledger/totals", get(accounts::ledger_totals))
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
        .route("/v1/me/allocations", get(settlement::mine))
        .route("/v1/admin/deals/{id}/settlement", get(settlement::view))
        .route("/v1/admin/settlement/legs/{id}/retry", post(settlement::retry))
        .route("/v1/webhooks/custody", post(settlement::custody_webhook))
        .route("/v1/admin/reconciliation/runs", get(reconciliation::list).post(reconciliation::start))
        .route("/v1/admin/reconciliation/runs/{id}", get(reconciliation::get))
        .route("/v1/admin/reconciliation/runs/{id}/breaks", get(reconciliation::breaks))
        .route("/v1/admin/reconciliation/runs/{id}/report.csv", get(reconciliation::report))
        .route("/v1/admin/reconciliation/breaks/accept", post(reconciliation::accept))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(
        accounts::my_accounts, accounts::my_statement, accounts::withdraw, accounts::my_withdrawal,
        accounts::bank_webhook, accounts::admin_account, accounts::admin_statement, accounts::ledger_totals,
        issuers::submit, issuers::get, issuers::list, issuers::propose_decision, deals::register, deals::edit,
        deals::publish, deals::close, deals::cancel, deals::list_public, deals::get, deals::of_issuer,
        subscriptions::subscribe, subscriptions::cancel, subscriptions::mine, subscriptions::holdings,
        subscriptions::book, subscriptions::totals, settlement::mine, settlement::view, settlement::retry,
        settlement::custody_webhook, reconciliation::list, reconciliation::start, reconciliation::get,
        reconciliation::breaks, reconciliation::report, reconciliation::accept
    ),
    components(schemas(accounts::BalanceView, accounts::MyAccounts, accounts::EntryView, accounts::WithdrawalRequest,
        accounts::WithdrawalView, accounts::WebhookAnswer, accounts::TotalsView,
        shared::app::deposits::WithdrawalStatus, shared::app::issuers::Issuer, shared::app::issuers::Onboarding,
        shared::app::issuers::Contact, shared::app::issuers::BankDetails, shared::app::issuers::IssuerStatus,
        issuers::DecisionRequest, issuers::Verdict, deals::NewDeal, deals::EditDeal, deals::DealView,
        deals::BuildingView, shared::domain::deal::DealState, shared::domain::deal::BuildingType,
        subscriptions::SubscriptionRequest, subscriptions::SubscriptionView, subscriptions::HoldingView,
        subscriptions::TotalsView, shared::app::subscriptions::SubscriptionStatus, settlement::AllocationView,
        settlement::RunView, settlement::SettlementView, settlement::LegView, settlement::DealSettlementView,
        settlement::CallbackAnswer, shared::app::allocation::RunState, shared::app::settlement::Phase,
        shared::app::settlement::LegKind, shared::app::settlement::LegStatus, shared::ports::custody::Decision,
        reconciliation::RunRequest, reconciliation::RunView, reconciliation::AcceptRequest, reconciliation::RunQueued, shared::app::reconcile::StoredRow,
        shared::app::reconcile::RunVerdict, shared::app::reconcile::Count, shared::domain::reconcile::Pair,
        shared::domain::reconcile::Class, shared::domain::reconcile::RuleId)),
    tags(
        (name = "accounts", description = "Deposit accounts: balances, statements, withdrawals"),
        (name = "webhooks", description = "Partner callbacks, signed"),
        (name = "ledger", description = "Finance operators: any account, the ledger's totals"),
        (name = "issuers", description = "Issuer onboarding and review"),
        (name = "deals", description = "Deals: registration, maker-checker publication, the window, public reads"),
        (name = "subscriptions", description = "Subscriptions, holdings, a deal's book and totals"),
        (name = "settlement", description = "Allocations, settlement progress, stuck legs and their retry"),
        (name = "reconciliation", description = "Ledger vs chain vs Custody as of a cut-off: runs, unmatched rows, CSV")
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
