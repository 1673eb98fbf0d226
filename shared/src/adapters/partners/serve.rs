//! The simulators behind the partners' documented HTTP contracts, so the HTTP adapters
//! are tested against the same behaviour the simulators give in process.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::{BankSimulator, ChainSimulator};
use crate::ports::bank::{Bank, Payout};
use crate::ports::chain::{Chain, ChainTransfer};
use crate::ports::partner::PartnerError;

fn status_of(error: &PartnerError) -> StatusCode {
    match error {
        PartnerError::Refused(_) => StatusCode::CONFLICT,
        PartnerError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        PartnerError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn answer<T: serde::Serialize>(result: Result<T, PartnerError>) -> Response {
    match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(e) => (status_of(&e), e.to_string()).into_response(),
    }
}

fn authorised(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("Bearer "))
}

/// `docs/partners/chain.md` over a [`ChainSimulator`].
pub fn chain_router(chain: Arc<ChainSimulator>) -> Router {
    #[derive(Deserialize)]
    struct At {
        asset: String,
        height: Option<u64>,
    }
    async fn record(State(c): State<Arc<ChainSimulator>>, h: HeaderMap, body: axum::Json<ChainTransfer>) -> Response {
        if !authorised(&h) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        answer(c.record(&body.0).await)
    }
    async fn balance(
        State(c): State<Arc<ChainSimulator>>,
        Path(account): Path<String>,
        Query(at): Query<At>,
    ) -> Response {
        answer(c.balance(&account, &at.asset, at.height).await.map(|b| serde_json::json!({"balance": b.to_string()})))
    }
    async fn height(State(c): State<Arc<ChainSimulator>>) -> Response {
        answer(c.height().await.map(|h| serde_json::json!({"height": h})))
    }
    Router::new()
        .route("/v1/transfers", post(record))
        .route("/v1/accounts/{account}/balance", get(balance))
        .route("/v1/height", get(height))
        .with_state(chain)
}

/// `docs/partners/bank.md` (payout instructions) over a [`BankSimulator`].
pub fn bank_router(bank: Arc<BankSimulator>) -> Router {
    async fn payout(State(b): State<Arc<BankSimulator>>, h: HeaderMap, body: axum::Json<Payout>) -> Response {
        let key = h.get("idempotency-key").and_then(|v| v.to_str().ok());
        if !authorised(&h) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        if key != Some(body.reference.as_str()) {
            return (StatusCode::BAD_REQUEST, "Idempotency-Key must be the reference").into_response();
        }
        answer(b.instruct_payout(&body.0).await)
    }
    Router::new().route("/v1/payouts", post(payout)).with_state(bank)
}
