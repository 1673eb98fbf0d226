//! axum glue shared by every HTTP function: RFC 9457 problems, the JSON extractor,
//! request ids, limits, the health route and the OpenAPI document.

pub mod app;
pub mod auth;
pub mod client;
pub mod extract;
pub mod idempotency;
pub mod json;
pub mod openapi;
pub mod page;
pub mod problem;
pub mod request_id;
pub mod webhook;

pub use app::{BODY_LIMIT, service};
pub use extract::{Path, Query};
pub use json::Json;
pub use problem::{ApiError, FieldError, Problem};

/// A maker-checker refusal as the API answers it.
pub fn change_error(e: crate::app::changes::ChangeError) -> ApiError {
    use crate::app::changes::ChangeError;
    match e {
        ChangeError::Forbidden(reason) => ApiError::forbidden(reason),
        ChangeError::NotFound => ApiError::not_found("no such user, issuer, deal or change request"),
        ChangeError::Invalid(reason) => ApiError::conflict(reason),
        ChangeError::DuplicatePending => ApiError::conflict("a request for the same change is already pending"),
        ChangeError::AlreadyDecided => ApiError::conflict("the request was already decided"),
        ChangeError::Expired => ApiError::conflict("the request expired; propose it again"),
        ChangeError::Store(e) => ApiError::internal(&e),
    }
}
