//! One API error type, rendered as RFC 9457 `application/problem+json`. Internal causes
//! are logged once, inside the request's span, and never sent to the client.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// What the schema says of an amount (a decimal string of SGD), as `parse_cents` reads it.
pub const AMOUNT_PATTERN: &str = r"^[0-9]{1,13}(\.[0-9]{1,2})?$";

/// One invalid input, named by its JSON path (`amount`, `items[2].units`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
    /// A rule of content the schema cannot state (a password too easy to guess, a code
    /// that is not the one mailed): answered 422, where a break of the schema is a 400.
    #[serde(skip)]
    pub refused: bool,
}

impl FieldError {
    /// The value breaks the documented schema (a type, a length, a pattern, an enum).
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { field: field.into(), message: message.into(), refused: false }
    }

    /// The value meets the schema, and a rule of content refuses it.
    pub fn refused(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { refused: true, ..Self::new(field, message) }
    }

    /// An amount's refusal: a malformed one breaks the schema's pattern ([`AMOUNT_PATTERN`]);
    /// zero or too large, a rule.
    pub fn amount(field: impl Into<String>, error: &crate::domain::money::MoneyError) -> Self {
        match error {
            crate::domain::money::MoneyError::Format => Self::new(field, error.to_string()),
            _ => Self::refused(field, error.to_string()),
        }
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

    /// 422 from the (field, message) pairs a domain check answers (rules of content).
    pub fn invalid_fields<F: Into<String>>(problems: impl IntoIterator<Item = (F, String)>) -> Self {
        Self::validation(problems.into_iter().map(|(field, message)| FieldError::refused(field, message)).collect())
    }

    /// The offending fields named: 400 when one breaks the schema, 422 when each meets it
    /// and a rule of content refuses it.
    pub fn validation(errors: Vec<FieldError>) -> Self {
        let detail = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; ");
        if !errors.is_empty() && errors.iter().all(|e| e.refused) {
            return Self {
                errors,
                ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "refused", "Refused by a rule of content", detail)
            };
        }
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

    /// 502: a partner answered something unusable.
    pub fn bad_gateway(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "bad-gateway", "Bad gateway", detail)
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

/// Failures of the platform's own machinery answer as [`ApiError::internal`] decides
/// (a lost race 503, a forged cursor 400, the rest 500), with `?`. Errors a use case
/// gives a meaning to (a refused withdrawal, a wrong password) are mapped where they
/// arise, never through these.
macro_rules! internal_from {
    ($($error:ty),* $(,)?) => {
        $(impl From<$error> for ApiError {
            fn from(error: $error) -> Self {
                Self::internal(&error)
            }
        })*
    };
}

internal_from!(
    crate::ports::store::StoreError,
    crate::ports::keyring::KeyringError,
    crate::ports::queue::QueueError,
    crate::app::signing_keys::SigningKeyError,
);

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

    #[test]
    fn a_break_of_the_schema_is_a_400_and_a_refusal_by_a_rule_alone_a_422() {
        use super::FieldError;
        use crate::domain::money::{MoneyError, parse_cents};
        let refused = ApiError::validation(vec![FieldError::refused("password", "too easy to guess")]);
        assert_eq!((refused.status, refused.slug), (StatusCode::UNPROCESSABLE_ENTITY, "refused"));
        let mixed = vec![FieldError::refused("password", "weak"), FieldError::new("email", "not an address")];
        assert_eq!(ApiError::validation(mixed).status, StatusCode::BAD_REQUEST);
        // An amount's pattern is the schema's; zero meets it and is a rule's refusal.
        let pattern = amount_pattern_matcher(super::AMOUNT_PATTERN);
        for (text, status) in [("abc", 400), ("1.001", 400), ("0", 422), ("100.50", 0)] {
            let error = parse_cents(text).err();
            assert_eq!(pattern(text), !matches!(error, Some(MoneyError::Format)), "{text}");
            let answered = error.map_or(0, |e| ApiError::validation(vec![FieldError::amount("a", &e)]).status.as_u16());
            assert_eq!(answered, status, "{text}");
        }
    }

    /// `^[0-9]{1,13}(\.[0-9]{1,2})?$` by hand (no regex engine among the dependencies).
    fn amount_pattern_matcher(pattern: &str) -> impl Fn(&str) -> bool {
        assert_eq!(pattern, r"^[0-9]{1,13}(\.[0-9]{1,2})?$", "update this matcher with the pattern");
        |text: &str| {
            let (whole, fraction) = text.split_once('.').map_or((text, None), |(w, f)| (w, Some(f)));
            let digits = |s: &str, max: usize| (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
            digits(whole, 13) && fraction.is_none_or(|f| digits(f, 2))
        }
    }
}
