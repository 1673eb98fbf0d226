//! The `auth` function: sign-up, email verification, and (as they land) stepwise login,
//! token refresh and rotation, sessions and the JWKS.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use shared::Platform;
use shared::app::accounts::{AccountError, Accounts};
use shared::http::problem::Problem;
use shared::http::{ApiError, FieldError, Json};
use utoipa::{OpenApi, ToSchema};

/// `POST /v1/auth/signup`. No `Debug`: it holds a password.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    pub email: String,
    /// 12 to 128 characters, not a known breached password, not containing the address.
    pub password: String,
}

/// `POST /v1/auth/email/verify`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmail {
    pub email: String,
    /// The six digits from the email.
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct Status {
    pub status: &'static str,
}

fn api_error(error: AccountError) -> ApiError {
    match error {
        AccountError::Invalid(errors) => ApiError::validation(errors),
        AccountError::InvalidCode => ApiError::validation(vec![FieldError::new("code", "invalid or expired code")]),
        other => ApiError::internal(&other),
    }
}

/// Registers an account and emails a verification code. The answer is the same whether or
/// not the address was already registered.
#[utoipa::path(post, path = "/v1/auth/signup", tag = "auth", request_body = SignUp,
    responses(
        (status = 202, description = "A code was emailed", body = Status),
        (status = 400, description = "Invalid email or password", body = Problem, content_type = "application/problem+json"),
    ))]
async fn sign_up(
    State(accounts): State<Arc<Accounts>>,
    Json(body): Json<SignUp>,
) -> Result<(StatusCode, Json<Status>), ApiError> {
    accounts.sign_up(&body.email, &body.password).await.map_err(api_error)?;
    Ok((StatusCode::ACCEPTED, Json(Status { status: "verification_sent" })))
}

/// Verifies the address with the emailed code.
#[utoipa::path(post, path = "/v1/auth/email/verify", tag = "auth", request_body = VerifyEmail,
    responses(
        (status = 200, description = "The address is verified", body = Status),
        (status = 400, description = "Invalid or expired code", body = Problem, content_type = "application/problem+json"),
    ))]
async fn verify_email(
    State(accounts): State<Arc<Accounts>>,
    Json(body): Json<VerifyEmail>,
) -> Result<Json<Status>, ApiError> {
    accounts.verify_email(&body.email, &body.code).await.map_err(api_error)?;
    Ok(Json(Status { status: "verified" }))
}

#[derive(OpenApi)]
#[openapi(
    paths(sign_up, verify_email),
    components(schemas(SignUp, VerifyEmail, Status)),
    tags((name = "auth", description = "Accounts, login, tokens and sessions"))
)]
struct Doc;

/// This function's own routes.
pub fn routes(platform: &Platform) -> Router {
    Router::new()
        .route("/v1/auth/signup", post(sign_up))
        .route("/v1/auth/email/verify", post(verify_email))
        .with_state(Arc::new(Accounts::new(platform)))
}

/// This function's part of the OpenAPI document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    Doc::openapi()
}

/// The routes with everything every HTTP function shares, as Lambda serves them; the
/// document at `/openapi.json` is the whole API's.
pub fn app(platform: &Platform) -> Router {
    shared::http::service(routes(platform), platform, shared::http::openapi::published())
}
