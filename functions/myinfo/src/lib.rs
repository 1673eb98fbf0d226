//! The `myinfo` function: Singpass/Myinfo (FAPI 2.0) onboarding.
//!
//! Its routes arrive with the capability that needs them; until then it serves the shared
//! routes only (`/health`, `/openapi.json`).

use axum::Router;
use shared::Platform;

/// This function's own routes.
pub fn routes(_platform: &Platform) -> Router {
    Router::new()
}

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    utoipa::openapi::OpenApiBuilder::new().build()
}

/// The routes with everything every HTTP function shares, as Lambda serves them; the
/// document at `/openapi.json` is the whole API's.
pub fn app(platform: &Platform) -> Router {
    shared::http::service(routes(platform), platform, shared::http::openapi::published())
}
