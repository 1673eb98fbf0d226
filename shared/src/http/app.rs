//! Wraps a function's routes in what every HTTP entry point shares: the health route,
//! the OpenAPI document, 404/405 problems, the body limit, panic containment and
//! request ids. Lambda, the local runner and tests all serve the result.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::ToSchema;

use super::json::BODY_LIMIT;
use super::problem::ApiError;
use super::{Json, request_id};
use crate::Platform;
use crate::ports::store::Key;

/// The health answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unavailable` when the store cannot be read.
    pub status: &'static str,
    pub version: &'static str,
    /// `embedded` or `aws`.
    pub backend: &'static str,
}

/// Whether the platform can serve: answers 200 when its store answers a read.
#[utoipa::path(get, path = "/health", tag = "platform",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
pub async fn health(State(platform): State<Platform>) -> (StatusCode, Json<Health>) {
    let (status, word) = match platform.store.get(&Key::new("HEALTH", "probe")).await {
        Ok(_) => (StatusCode::OK, "ok"),
        Err(error) => {
            tracing::error!(%error, "health check: store unreadable");
            (StatusCode::SERVICE_UNAVAILABLE, "unavailable")
        }
    };
    (status, Json(Health { status: word, version: env!("CARGO_PKG_VERSION"), backend: platform.backend.as_str() }))
}

/// Serves `routes` with the shared routes and layers; `docs` is served at `/openapi.json`.
pub fn service(routes: Router, platform: &Platform, docs: serde_json::Value) -> Router {
    let docs = std::sync::Arc::new(docs);
    routes
        .route("/health", get(health).with_state(platform.clone()))
        .route("/openapi.json", get(move || async move { axum::Json(docs.as_ref().clone()) }))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn(refuse_oversize))
        .layer(CatchPanicLayer::custom(|_| ApiError::internal_without_cause().into_response()))
        .layer(middleware::from_fn(request_id::middleware))
}

/// Refuses a body announced larger than the limit before reading any of it.
async fn refuse_oversize(request: Request, next: Next) -> Response {
    let announced =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|length| length > BODY_LIMIT as u64) {
        return ApiError::payload_too_large(BODY_LIMIT).into_response();
    }
    next.run(request).await
}
