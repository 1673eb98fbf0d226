//! axum glue shared by every HTTP function: RFC 9457 problems, the JSON extractor,
//! request ids, limits, the health route and the OpenAPI document.

pub mod app;
pub mod auth;
pub mod client;
pub mod idempotency;
pub mod json;
pub mod openapi;
pub mod page;
pub mod problem;
pub mod request_id;

pub use app::{BODY_LIMIT, service};
pub use json::Json;
pub use problem::{ApiError, FieldError, Problem};
