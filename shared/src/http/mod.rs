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

pub use app::service;
pub use extract::{Path, Query};
pub use json::BODY_LIMIT;
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
        ChangeError::Deal(e) => deal_error(e),
        ChangeError::Store(e) => ApiError::internal(&e),
    }
}

/// A deal's refusal as the API answers it.
pub fn deal_error(e: crate::app::deals::DealError) -> ApiError {
    use crate::app::deals::DealError;
    match e {
        DealError::Invalid(problems) => ApiError::invalid_fields(problems),
        DealError::NotFound => ApiError::not_found("no such deal"),
        DealError::IssuerNotApproved => {
            ApiError::validation(vec![FieldError::refused("issuer_id", "no approved issuer has this id")])
        }
        DealError::Frozen(field) => ApiError::conflict(format!("{field} cannot change once the deal is published")),
        DealError::Closed => ApiError::conflict("nothing can change once the deal closed"),
        DealError::AwaitingApproval => ApiError::conflict(
            "the deal awaits approval for publication: have the request rejected (or let it lapse), then edit",
        ),
        DealError::NeedsApproval => {
            ApiError::conflict("a published deal changes only with a second operator's approval: propose it")
        }
        DealError::Transition(t) => ApiError::conflict(t.to_string()),
        DealError::Ledger(e) => ApiError::internal(&e),
        DealError::Store(e) => ApiError::internal(&e),
    }
}
