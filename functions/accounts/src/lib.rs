//! The `accounts` function: deposit accounts (balances, statements, withdrawals), the
//! bank's signed webhook, and finance operators' reads of the ledger.

pub mod routes;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use shared::Platform;
use shared::app::deposits::DepositAccounts;
use shared::app::verifier::TokenVerifier;
use shared::domain::session::SessionPolicy;
use shared::http::auth::VerifierSource;
use utoipa::OpenApi;

/// What the handlers share.
#[derive(Clone)]
pub struct AccountsState {
    pub platform: Platform,
    pub deposits: Arc<DepositAccounts>,
    verifier: Arc<TokenVerifier>,
}

impl VerifierSource for AccountsState {
    fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }
}

/// This function's own routes.
pub fn routes(platform: &Platform) -> Router {
    let state = AccountsState {
        platform: platform.clone(),
        deposits: Arc::new(platform.deposit_accounts()),
        verifier: Arc::new(platform.token_verifier(SessionPolicy::default())),
    };
    Router::new()
        .route("/v1/accounts/me", get(routes::my_accounts))
        .route("/v1/accounts/me/statement", get(routes::my_statement))
        .route("/v1/accounts/me/withdrawals", post(routes::withdraw))
        .route("/v1/accounts/me/withdrawals/{id}", get(routes::my_withdrawal))
        .route("/v1/webhooks/bank", post(routes::bank_webhook))
        .route("/v1/admin/accounts/{id}", get(routes::admin_account))
        .route("/v1/admin/accounts/{id}/statement", get(routes::admin_statement))
        .route("/v1/admin/ledger/totals", get(routes::ledger_totals))
        .with_state(state)
}

#[derive(OpenApi)]
#[openapi(
    paths(
        routes::my_accounts, routes::my_statement, routes::withdraw, routes::my_withdrawal, routes::bank_webhook,
        routes::admin_account, routes::admin_statement, routes::ledger_totals
    ),
    components(schemas(routes::BalanceView, routes::MyAccounts, routes::EntryView, routes::WithdrawalRequest,
        routes::WithdrawalView, routes::WebhookAnswer, routes::LedgerTotalsView, shared::app::deposits::WithdrawalStatus)),
    tags(
        (name = "accounts", description = "Deposit accounts: balances, statements, withdrawals"),
        (name = "webhooks", description = "Partner callbacks, signed"),
        (name = "ledger", description = "Finance operators: any account, the ledger's totals")
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
