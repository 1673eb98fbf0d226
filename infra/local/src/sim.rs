//! `/sim`: controls for the partner simulators, in the local runner only (the Lambda
//! functions are built without them).

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use shared::Simulators;
use shared::adapters::partners::Fault;
use shared::http::{ApiError, FieldError, Json};
use shared::ports::Chain;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Deposit {
    virtual_account: String,
    /// A decimal string, like `"100.00"`.
    amount: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Partner {
    Bank,
    Chain,
    Custody,
}

#[derive(Deserialize)]
struct FaultRequest {
    partner: Partner,
    #[serde(flatten)]
    fault: Fault,
}

#[derive(Deserialize)]
struct BalanceQuery {
    asset: String,
    height: Option<u64>,
}

#[derive(Serialize)]
struct Balance {
    account: String,
    asset: String,
    /// Credits minus debits in the asset's smallest unit, as a string.
    balance: String,
    height: u64,
}

/// The simulator routes.
pub fn routes(simulators: Simulators) -> Router {
    Router::new()
        .route("/sim/bank/deposits", post(deposit))
        .route("/sim/bank/calls", get(bank_calls))
        .route("/sim/chain/calls", get(chain_calls))
        .route("/sim/chain/accounts/{account}/balance", get(chain_balance))
        .route("/sim/custody/calls", get(custody_calls))
        .route("/sim/faults", post(inject).delete(clear))
        .with_state(simulators.clone())
        .merge(simulators.singpass.router())
}

/// Makes the bank send its webhooks for money arriving at a virtual account.
async fn deposit(
    State(sims): State<Simulators>,
    Json(body): Json<Deposit>,
) -> Result<impl axum::response::IntoResponse, ApiError> {
    shared::domain::money::parse_cents(&body.amount)
        .map_err(|e| ApiError::validation(vec![FieldError::new("amount", e.to_string())]))?;
    Ok((StatusCode::CREATED, Json(sims.bank.deposit(&body.virtual_account, &body.amount).await)))
}

async fn bank_calls(State(sims): State<Simulators>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "items": sims.bank.sent() }))
}

async fn chain_calls(State(sims): State<Simulators>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "items": sims.chain.calls() }))
}

async fn custody_calls(State(sims): State<Simulators>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "items": sims.custody.calls() }))
}

async fn chain_balance(
    State(sims): State<Simulators>,
    Path(account): Path<String>,
    Query(query): Query<BalanceQuery>,
) -> Result<Json<Balance>, ApiError> {
    let unavailable = |e: shared::ports::partner::PartnerError| ApiError::unavailable(e.to_string());
    let height = match query.height {
        Some(h) => h,
        None => sims.chain.height().await.map_err(unavailable)?,
    };
    let balance = sims.chain.balance(&account, &query.asset, Some(height)).await.map_err(unavailable)?;
    Ok(Json(Balance { account, asset: query.asset, balance: balance.to_string(), height }))
}

/// Queues a fault for the partner's next calls: `{partner, kind, times, delay_ms}`; for
/// the Custody, `reject` and `approve_late` decide its next distributions.
async fn inject(State(sims): State<Simulators>, Json(body): Json<FaultRequest>) -> Result<StatusCode, ApiError> {
    let decision = body.fault.kind.is_decision();
    match body.partner {
        Partner::Custody => sims.custody.inject(body.fault),
        _ if decision => {
            return Err(ApiError::validation(vec![FieldError::new("kind", "only the Custody decides distributions")]));
        }
        Partner::Bank => sims.bank.faults.inject(body.fault),
        Partner::Chain => sims.chain.faults.inject(body.fault),
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Clears every queued fault.
async fn clear(State(sims): State<Simulators>) -> StatusCode {
    sims.bank.faults.clear();
    sims.chain.faults.clear();
    sims.custody.clear_faults();
    StatusCode::NO_CONTENT
}
