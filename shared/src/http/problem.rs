//! One API error type, rendered as RFC 9457 `application/problem+json`. Internal causes
//! are logged once, inside the request's span, and never sent to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid input, named by its JSON path (`amount`, `items[2].units`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into() }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A URI reference naming the kind of problem, e.g. `/problems/validation`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// An error an HTTP handler returns.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    slug: &'static str,
    title: &'static str,
    detail: String,
    errors: Vec<FieldError>,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, slug: &'static str, title: &'static str, detail: impl Into<String>) -> Self {
        Self { status, slug, title, detail: detail.into(), errors: Vec::new(), retry_after: None }
    }

    /// 429 until a throttled scope unlocks at `until`, with `Retry-After` the whole seconds
    /// from `now` (at least one).
    pub fn too_many_requests(until: chrono::DateTime<chrono::Utc>, now: chrono::DateTime<chrono::Utc>) -> Self {
        let retry_after = (until - now).num_seconds().max(1) as u64;
        Self {
            retry_after: Some(retry_after),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-requests",
                "Too many attempts",
                format!("try again in {retry_after} s"),
            )
        }
    }

    /// 400: the request body is not JSON, or not the expected shape.
    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "malformed-request", "Malformed request", detail)
    }

    /// 400 from the (field, message) pairs a domain check answers.
    pub fn invalid_fields<F: Into<String>>(problems: impl IntoIterator<Item = (F, String)>) -> Self {
        Self::validation(problems.into_iter().map(|(field, message)| FieldError::new(field, message)).collect())
    }

    /// 400 with the offending fields named.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        Self { errors, ..Self::new(StatusCode::BAD_REQUEST, "validation", "Invalid request", detail) }
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", "Authentication required", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed", detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "Not found", detail)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            "Method not allowed",
            "this route does not take that method",
        )
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", "Conflict", detail)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload-too-large",
            "Payload too large",
            format!("the body exceeds {limit} bytes"),
        )
    }

    pub fn unsupported_media_type(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", "Unsupported media type", detail)
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "unprocessable", "Unprocessable request", detail)
    }

    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Service unavailable", detail)
    }

    /// Answers 500 and logs the cause here, once, with its source chain; the client sees
    /// none of it. Two store errors anywhere in the chain are the client's or the moment's, not ours: a
    /// cursor given out for another query is a 400 naming `cursor`, and a write that lost
    /// every race for a hot item is a 503 to retry.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = cause.to_string();
        let mut link = Some(cause);
        while let Some(error) = link {
            match error.downcast_ref::<crate::ports::store::StoreError>() {
                Some(crate::ports::store::StoreError::ForeignCursor) => {
                    return Self::validation(vec![FieldError::new("cursor", "not a cursor this list gave out")]);
                }
                Some(crate::ports::store::StoreError::Conflict) => {
                    tracing::warn!(error = %chain, "contention outlasted the retries");
                    return Self::unavailable("the item is busy; retry");
                }
                _ => {}
            }
            link = error.source();
            if let Some(next) = link.map(ToString::to_string).filter(|next| !chain.ends_with(next.as_str())) {
                chain.push_str(": ");
                chain.push_str(&next);
            }
        }
        tracing::error!(error = %chain, "internal error");
        Self::internal_without_cause()
    }

    pub(crate) fn internal_without_cause() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", "something went wrong on our side")
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("/problems/{}", self.slug),
            title: self.title.to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            errors: self.errors.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.title, self.detail)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_default();
        let mut response = (self.status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::ApiError;
    use crate::app::ledger::LedgerError;
    use crate::ports::store::StoreError;
    use axum::http::StatusCode;

    #[test]
    fn store_errors_that_are_not_ours_keep_their_meaning_through_wrappers() {
        let forged = ApiError::internal(&LedgerError::Store(StoreError::ForeignCursor));
        assert_eq!((forged.status, forged.errors[0].field.as_str()), (StatusCode::BAD_REQUEST, "cursor"));
        let busy = ApiError::internal(&LedgerError::Store(StoreError::Conflict));
        assert_eq!(busy.status, StatusCode::SERVICE_UNAVAILABLE);
        let broken = ApiError::internal(&LedgerError::Store(StoreError::Codec("bad".into())));
        assert_eq!(broken.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn retry_after_counts_whole_seconds_and_never_zero() {
        let now = chrono::Utc::now();
        assert_eq!(ApiError::too_many_requests(now + chrono::TimeDelta::seconds(90), now).retry_after, Some(90));
        assert_eq!(ApiError::too_many_requests(now, now).retry_after, Some(1));
    }
}
