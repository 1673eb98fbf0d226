//! List endpoints page with `?limit=&cursor=` and answer `{items, next_cursor}`.

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};

use super::{ApiError, FieldError};
use crate::ports::store::Cursor;

pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 200;

#[derive(Deserialize)]
struct Raw {
    limit: Option<String>,
    cursor: Option<String>,
}

/// A validated page request.
#[derive(Debug, Clone)]
pub struct Paging {
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl<S: Send + Sync> FromRequestParts<S> for Paging {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Query(raw) =
            Query::<Raw>::try_from_uri(&parts.uri).map_err(|_| ApiError::malformed("malformed query string"))?;
        let limit = match raw.limit {
            None => DEFAULT_LIMIT,
            Some(text) => text.parse::<usize>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                ApiError::validation(vec![FieldError::new("limit", format!("a whole number from 1 to {MAX_LIMIT}"))])
            })?,
        };
        let cursor = raw
            .cursor
            .map(|text| Cursor::decode(&text))
            .transpose()
            .map_err(|_| ApiError::validation(vec![FieldError::new("cursor", "not a cursor this API gave out")]))?;
        Ok(Self { limit, cursor })
    }
}

/// One page of a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PageOf<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> PageOf<T> {
    pub fn new(items: Vec<T>, next: Option<Cursor>) -> Self {
        Self { items, next_cursor: next.map(|c| c.encode()) }
    }
}
