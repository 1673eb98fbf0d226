//! The simulators behind the partners' documented HTTP contracts, so the HTTP adapters
//! are tested against the same behaviour the simulators give in process.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use super::http::{BalanceLine, BalancesPage, EntriesPage};
use super::{BankSimulator, ChainSimulator, CustodySimulator};
use crate::ports::bank::{Bank, Payout};
use crate::ports::chain::{Chain, ChainTransfer};
use crate::ports::custody::{Custody, CustodyTransfer, Distribution};
use crate::ports::partner::PartnerError;
use axum::Json;

fn status_of(error: &PartnerError) -> StatusCode {
    StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

fn answer<T: serde::Serialize>(result: Result<T, PartnerError>) -> Response {
    match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(e) => (status_of(&e), e.to_string()).into_response(),
    }
}

/// A lookup's answer: `404` when there is nothing.
fn found<T: serde::Serialize>(result: Result<Option<T>, PartnerError>) -> Response {
    match result {
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Ok(Some(value)) => answer(Ok(value)),
        Err(e) => answer::<T>(Err(e)),
    }
}

/// Balances on the wire: integers as strings (they may exceed 2^53).
fn balance_page(items: Vec<(String, i128)>) -> BalancesPage {
    BalancesPage {
        items: items
            .into_iter()
            .map(|(account, balance)| BalanceLine { account, balance: balance.to_string() })
            .collect(),
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
    #[derive(Deserialize)]
    struct HeightAt {
        at: Option<chrono::DateTime<chrono::Utc>>,
    }
    async fn height(State(c): State<Arc<ChainSimulator>>, Query(q): Query<HeightAt>) -> Response {
        let height = match q.at {
            Some(at) => c.height_at(at).await,
            None => c.height().await,
        };
        answer(height.map(|h| serde_json::json!({"height": h})))
    }
    #[derive(Deserialize)]
    struct Page {
        asset: String,
        height: u64,
        after: Option<String>,
        limit: Option<usize>,
    }
    async fn balances(State(c): State<Arc<ChainSimulator>>, Query(q): Query<Page>) -> Response {
        let limit = q.limit.unwrap_or(1_000).clamp(1, 1_000);
        let page = c.balances(&q.asset, q.height, q.after.as_deref(), limit).await;
        answer(page.map(balance_page))
    }
    Router::new()
        .route("/v1/transfers", post(record))
        .route("/v1/accounts/{account}/balance", get(balance))
        .route("/v1/height", get(height))
        .route("/v1/balances", get(balances))
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
    async fn find_payout(State(b): State<Arc<BankSimulator>>, h: HeaderMap, Path(reference): Path<String>) -> Response {
        if !authorised(&h) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        found(b.find_payout(&reference).await)
    }
    Router::new().route("/v1/payouts", post(payout)).route("/v1/payouts/{reference}", get(find_payout)).with_state(bank)
}

/// `docs/partners/custody.md` over a [`CustodySimulator`].
pub fn custody_router(custody: Arc<CustodySimulator>) -> Router {
    type C = State<Arc<CustodySimulator>>;
    #[derive(Deserialize)]
    struct AsOf {
        asset: String,
        as_of: chrono::DateTime<chrono::Utc>,
        after: Option<String>,
        limit: Option<usize>,
    }
    async fn transfer(State(c): C, h: HeaderMap, body: axum::Json<CustodyTransfer>) -> Response {
        let key = h.get("idempotency-key").and_then(|v| v.to_str().ok());
        if !authorised(&h) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        if key != Some(body.reference.as_str()) {
            return (StatusCode::BAD_REQUEST, "Idempotency-Key must be the reference").into_response();
        }
        answer(c.transfer(&body.0).await)
    }
    async fn find_transfer(State(c): C, Path(reference): Path<String>) -> Response {
        found(c.find_transfer(&reference).await)
    }
    async fn put_entries(
        State(c): C,
        Path((reference, page)): Path<(String, u32)>,
        body: Json<EntriesPage>,
    ) -> Response {
        answer(c.put_entries(&reference, page, &body.0.entries).await.map(|()| serde_json::json!({})))
    }
    async fn submit(State(c): C, Path(reference): Path<String>, body: Json<Distribution>) -> Response {
        if body.reference != reference {
            return (StatusCode::BAD_REQUEST, "the body's reference must be the path's").into_response();
        }
        answer(c.submit(&body.0).await)
    }
    async fn decision(State(c): C, Path(reference): Path<String>) -> Response {
        found(c.decision(&reference).await)
    }
    async fn balances(State(c): C, Query(q): Query<AsOf>) -> Response {
        let limit = q.limit.unwrap_or(1_000).clamp(1, 1_000);
        let page = c.balances(&q.asset, q.as_of, q.after.as_deref(), limit).await;
        answer(page.map(|items| balance_page(items.into_iter().map(|b| (b.account, b.balance)).collect())))
    }
    Router::new()
        .route("/v1/transfers", post(transfer))
        .route("/v1/transfers/{reference}", get(find_transfer))
        .route("/v1/distributions/{reference}/pages/{page}", axum::routing::put(put_entries))
        .route("/v1/distributions/{reference}/submit", post(submit))
        .route("/v1/distributions/{reference}", get(decision))
        .route("/v1/balances", get(balances))
        .with_state(custody)
}
