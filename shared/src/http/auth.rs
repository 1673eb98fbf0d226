//! The bearer-token extractor: a handler that takes [`Authenticated`] runs only for a
//! caller with a valid, unrevoked access token; anyone else gets a 401 problem.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::ApiError;
use crate::app::sessions::{Principal, SessionError, Sessions};

/// State that can hand out the session service.
pub trait SessionSource: Send + Sync {
    fn sessions(&self) -> impl std::future::Future<Output = Result<Arc<Sessions>, ApiError>> + Send;
}

/// The verified caller.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl<S: SessionSource> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("send an access token as `Authorization: Bearer <token>`"))?;
        let sessions = state.sessions().await?;
        match sessions.authenticate(token.trim()).await {
            Ok(principal) => Ok(Self(principal)),
            Err(SessionError::Store(e)) => Err(ApiError::internal(&e)),
            Err(_) => Err(ApiError::unauthorized("invalid or expired access token")),
        }
    }
}
