//! The `Idempotency-Key` header of requests that move money or create things: required,
//! 1 to 100 characters of letters, digits and `-_.:`.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::{ApiError, FieldError};

pub const HEADER: &str = "idempotency-key";

#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let refuse = |message: &str| ApiError::validation(vec![FieldError::new("Idempotency-Key", message)]);
        let value = parts.headers.get(HEADER).ok_or_else(|| refuse("this request needs an Idempotency-Key header"))?;
        let key = value.to_str().map_err(|_| refuse("not text"))?;
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-_.:".contains(c);
        if key.is_empty() || key.len() > 100 || !key.chars().all(allowed) {
            return Err(refuse("1 to 100 characters: letters, digits, '-', '_', '.', ':'"));
        }
        Ok(Self(key.to_owned()))
    }
}
