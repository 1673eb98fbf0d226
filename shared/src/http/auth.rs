//! The bearer-token extractor: a handler that takes [`Authenticated`] runs only for a
//! caller with a valid, unrevoked access token; anyone else gets a 401 problem.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::ApiError;
use crate::app::sessions::{Principal, SessionError, Sessions};
use crate::app::verifier::TokenVerifier;

/// State that verifies access tokens.
pub trait VerifierSource: Send + Sync {
    fn verifier(&self) -> &TokenVerifier;
}

/// What a function's handlers share: the platform, a token verifier, and the function's
/// services (`S`), built once when the function starts rather than on every request.
pub struct ApiState<S = ()> {
    pub platform: crate::Platform,
    pub services: Arc<S>,
    verifier: Arc<TokenVerifier>,
}

impl<S> Clone for ApiState<S> {
    fn clone(&self) -> Self {
        Self { platform: self.platform.clone(), services: self.services.clone(), verifier: self.verifier.clone() }
    }
}

impl ApiState {
    pub fn new(platform: &crate::Platform) -> Self {
        Self::with(platform, ())
    }
}

impl<S> ApiState<S> {
    pub fn with(platform: &crate::Platform, services: S) -> Self {
        let policy = crate::domain::session::SessionPolicy::default();
        Self {
            platform: platform.clone(),
            services: Arc::new(services),
            verifier: Arc::new(platform.token_verifier(policy)),
        }
    }
}

impl<S: Send + Sync> VerifierSource for ApiState<S> {
    fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }
}

/// The session service of the auth function, built on first use (unsealing the signing
/// key costs a keyring call) and shared by every request after.
#[derive(Clone)]
pub struct LazySessions {
    platform: crate::Platform,
    policy: crate::domain::session::SessionPolicy,
    cell: Arc<tokio::sync::OnceCell<Arc<Sessions>>>,
}

impl LazySessions {
    pub fn new(platform: &crate::Platform, policy: crate::domain::session::SessionPolicy) -> Self {
        Self { platform: platform.clone(), policy, cell: Arc::default() }
    }

    pub async fn get(&self) -> Result<Arc<Sessions>, ApiError> {
        self.cell
            .get_or_try_init(|| async {
                let sessions = self.platform.sessions(self.policy).await.map_err(|e| ApiError::internal(&e))?;
                Ok(Arc::new(sessions))
            })
            .await
            .cloned()
    }
}

/// The verified caller.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

/// For routes open to everyone that show more to some: no `Authorization` header is an
/// anonymous caller; a header with a bad token is still refused.
impl<S: VerifierSource> axum::extract::OptionalFromRequestParts<S> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Option<Self>, Self::Rejection> {
        if !parts.headers.contains_key(header::AUTHORIZATION) {
            return Ok(None);
        }
        <Self as FromRequestParts<S>>::from_request_parts(parts, state).await.map(Some)
    }
}

impl<S: VerifierSource> FromRequestParts<S> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| ApiError::unauthorized("send an access token as `Authorization: Bearer <token>`"))?;
        match state.verifier().authenticate(token.trim()).await {
            Ok(principal) => Ok(Self(principal)),
            // The table or the key set could not be read: our failure, not the caller's.
            Err(SessionError::Store(e)) => Err(ApiError::internal(&e)),
            Err(SessionError::Keys(e)) => Err(ApiError::internal(&e)),
            Err(_) => Err(ApiError::unauthorized("invalid or expired access token")),
        }
    }
}

/// The caller as of now: the token's level lowered to the stored one, so an investor who
/// opted out of accredited-investor status loses level 3 at once, not when the access
/// token expires.
pub async fn as_of_now(platform: &crate::Platform, me: &Principal) -> Result<Principal, ApiError> {
    let stored = platform.accounts().user(&me.user_id).await.map_err(|e| ApiError::internal(&e))?;
    let mut me = me.clone();
    me.level = me.level.min(stored.map_or(0, |u| u.level));
    Ok(me)
}

/// Checks an action with the access policy; a refusal is written to the audit log and
/// answered 403. `name` is the action as the audit log records it. Refusals are throttled
/// per caller ([`crate::app::throttle::REFUSED`]): past the limit the caller gets 429 and
/// nothing is written, so a self-registered account flooding admin routes cannot flood
/// the audit log or hold up the writes that share its chain.
pub async fn authorize(
    platform: &crate::Platform,
    me: &Principal,
    action: crate::domain::access::Action,
    resource: crate::domain::access::Resource<'_>,
    name: &str,
) -> Result<(), ApiError> {
    let roles = me.known_roles();
    let decision = crate::domain::access::decide(&me.subject(&roles), action, resource);
    if decision.is_allowed() {
        return Ok(());
    }
    let throttle = crate::app::throttle::Throttle::new(platform.store.clone(), platform.clock.clone());
    let scope = format!("refused:{}", me.user_id);
    let attempt = throttle.reserve(&[(&scope, &crate::app::throttle::REFUSED)]).await;
    if let crate::app::throttle::Attempt::Refused { until } = attempt? {
        return Err(ApiError::too_many_requests(until, platform.clock.now()));
    }
    let event = crate::app::audit::Event::denied(&me.user_id, name, "-", decision.reason());
    let audit = crate::app::audit::AuditLog::new(platform.store.clone(), platform.clock.clone());
    audit.append(event).await?;
    Err(ApiError::forbidden(decision.reason()))
}
