//! Sessions: refresh-token families in the store, access tokens signed with the token
//! keys, revocation through a denylist that lives as long as the tokens it denies.

use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::accounts::{User, user_key};
use super::signing_keys::{KEYS_FRESH_FOR, PublicKeys, Rotation, SigningKeyError, TokenKeys};
use crate::domain::session::{Family, Refresh, RevokedBecause, SessionPolicy, refresh};
use crate::ports::store::{Condition, Contention, Item, Key, Query, StoreError, Write};
use crate::ports::{Clock, Ids, Keyring, Store};

pub const ISSUER: &str = "dabs-platform";
pub const AUDIENCE: &str = "dabs-api";
/// RFC 9068's media type for JWT access tokens, in the `typ` header.
pub const ACCESS_TYP: &str = "at+jwt";
const REFRESH_PREFIX: &str = "rt1";

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    /// The session (refresh-token family) the token was issued in.
    pub sid: String,
    pub roles: Vec<String>,
    /// Investor verification level.
    pub lvl: u8,
    /// The issuer an issuer user acts for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// When the session's login proved a second factor (Unix seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<i64>,
    /// When the session's login happened (Unix seconds, OpenID Connect's `auth_time`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<i64>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// Who is calling, from a verified access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: String,
    pub session_id: String,
    pub roles: Vec<String>,
    pub level: u8,
    pub issuer_id: Option<String>,
    /// When the session's login proved a second factor.
    pub second_factor_at: Option<DateTime<Utc>>,
    /// When the session's login happened.
    pub authenticated_at: Option<DateTime<Utc>>,
}

impl Principal {
    /// Whether the session proved a second factor no longer than `within` before `now`.
    pub fn second_factor_within(&self, within: chrono::TimeDelta, now: DateTime<Utc>) -> bool {
        self.second_factor_at.is_some_and(|at| now - at <= within)
    }

    /// Whether the session's login happened no longer than `within` before `now` (a step-up).
    pub fn authenticated_within(&self, within: chrono::TimeDelta, now: DateTime<Utc>) -> bool {
        self.authenticated_at.is_some_and(|at| now - at <= within)
    }

    /// The roles this principal holds that the platform knows.
    pub fn known_roles(&self) -> Vec<crate::domain::access::Role> {
        self.roles.iter().filter_map(|r| crate::domain::access::Role::parse(r)).collect()
    }

    /// The principal as the access policy sees it, with `roles` from [`Principal::known_roles`].
    pub fn subject<'a>(&'a self, roles: &'a [crate::domain::access::Role]) -> crate::domain::access::Subject<'a> {
        crate::domain::access::Subject {
            user_id: &self.user_id,
            roles,
            level: self.level,
            issuer_id: self.issuer_id.as_deref(),
            second_factor: self.second_factor_at.is_some(),
        }
    }
}

/// What a login or refresh answers.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens").field("expires_in", &self.expires_in).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Missing, malformed, forged, expired or revoked credentials; deliberately vague.
    #[error("invalid or expired credentials")]
    Unauthorized,
    /// A spent refresh token was presented; its family is now revoked.
    #[error("refresh token reuse detected; the session is revoked")]
    ReuseDetected { family_id: String, user_id: String },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] SigningKeyError),
}

fn family_key(id: &str) -> Key {
    Key::new(format!("SESSION#{id}"), "FAMILY")
}

pub(crate) fn deny_key(id: &str) -> Key {
    Key::new(format!("DENY#{id}"), "SESSION")
}

fn user_sessions(user_id: &str) -> String {
    format!("USER#{user_id}#SESSIONS")
}

/// Sessions as the auth function runs them: it alone unseals the signing key and the
/// refresh secret. Verifying access tokens is [`super::verifier::TokenVerifier`]'s job.
pub struct Sessions {
    store: Arc<dyn Store>,
    keyring: Arc<dyn Keyring>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    /// The keys as unsealed, and when the published set was last looked at.
    keys: RwLock<(Arc<TokenKeys>, DateTime<Utc>)>,
    policy: SessionPolicy,
}

impl Sessions {
    /// Loads the token keys (creating the first one if needed, replacing the signing key
    /// once it is older than the policy allows) and serves sessions.
    pub async fn load(
        store: Arc<dyn Store>,
        keyring: Arc<dyn Keyring>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn Ids>,
        policy: SessionPolicy,
    ) -> Result<Self, SessionError> {
        let keys = TokenKeys::rotate_if_older(
            store.as_ref(),
            keyring.as_ref(),
            clock.as_ref(),
            ids.as_ref(),
            policy.signing_key_max_age,
            policy.key_overlap(),
        )
        .await?;
        let keys = RwLock::new((Arc::new(keys), clock.now()));
        Ok(Self { store, keyring, clock, ids, keys, policy })
    }

    /// Sessions over a platform's store, token keyring, clock and ids.
    /// Rotates the token keys as `rotation` says and signs with the new key from now on;
    /// answers the new key's id and the ids of the keys retired.
    pub async fn rotate_keys(&self, rotation: Rotation) -> Result<(String, Vec<String>), SessionError> {
        let overlap = self.policy.key_overlap();
        let (store, keyring, clock, ids) =
            (self.store.as_ref(), self.keyring.as_ref(), self.clock.as_ref(), self.ids.as_ref());
        let (keys, retired) = TokenKeys::rotate_with(store, keyring, clock, ids, overlap, rotation).await?;
        let kid = keys.current().kid.clone();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = (Arc::new(keys), self.clock.now());
        Ok((kid, retired))
    }

    /// The keys as last unsealed.
    pub fn keys(&self) -> Arc<TokenKeys> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).0.clone()
    }

    /// The keys to sign with. Another auth process may have rotated them: once this copy
    /// is older than [`KEYS_FRESH_FOR`], the published set is read again and a newer
    /// signing key unsealed, so this process never signs with a key whose overlap window
    /// (after which every verifier refuses it) may have ended.
    async fn signing_keys(&self) -> Result<Arc<TokenKeys>, SessionError> {
        let now = self.clock.now();
        let (keys, looked_at) = self.keys.read().unwrap_or_else(|p| p.into_inner()).clone();
        if now - looked_at < KEYS_FRESH_FOR {
            return Ok(keys);
        }
        let published = PublicKeys::load(self.store.as_ref()).await?;
        let keys = match published.newest() {
            Some(newest) if newest.kid != keys.current().kid => {
                let (store, keyring) = (self.store.as_ref(), self.keyring.as_ref());
                Arc::new(TokenKeys::load(store, keyring, self.clock.as_ref(), self.ids.as_ref()).await?)
            }
            _ => keys,
        };
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = (keys.clone(), now);
        Ok(keys)
    }

    fn family_item(family: &Family) -> Result<Item, StoreError> {
        Ok(Item::new(family_key(&family.id), family)?
            .with_index(user_sessions(&family.user_id), format!("{}#{}", family.created_at.to_rfc3339(), family.id))
            .expiring_at(family.absolute_expires_at))
    }

    /// Starts a session for `user` after a password-only login.
    pub async fn start(&self, user: &User) -> Result<Tokens, SessionError> {
        self.start_session(user, false).await
    }

    /// Starts a session for `user` after a login that proved the second factor.
    pub async fn start_after_second_factor(&self, user: &User) -> Result<Tokens, SessionError> {
        self.start_session(user, true).await
    }

    async fn start_session(&self, user: &User, second_factor: bool) -> Result<Tokens, SessionError> {
        let now = self.clock.now();
        let mut family = Family::start(self.ids.new_id("ses"), user.id.clone(), now, &self.policy);
        family.second_factor_at = second_factor.then_some(now);
        self.store.put(Self::family_item(&family)?, Condition::NotExists).await?;
        self.issue(&family, family.generation, user).await
    }

    /// Rotates a refresh token (see [`crate::domain::session`]).
    pub async fn refresh(&self, token: &str) -> Result<Tokens, SessionError> {
        // A refresh secret rotated by another auth process reaches this one within a minute.
        self.signing_keys().await?;
        let (family_id, generation) = self.open_refresh_token(token).ok_or(SessionError::Unauthorized)?;
        let mut contention = Contention::default();
        loop {
            let Some(item) = self.store.get(&family_key(&family_id)).await? else {
                return Err(SessionError::Unauthorized);
            };
            let family: Family = item.decode()?;
            let now = self.clock.now();
            let written = match refresh(&family, generation, now, &self.policy) {
                Refresh::Rotate(next) => {
                    match self.store.put(Self::family_item(&next)?, Condition::VersionIs(item.version)).await {
                        Ok(()) => {
                            let user = self.user(&next.user_id).await?;
                            return self.issue(&next, next.generation, &user).await;
                        }
                        Err(e) => e,
                    }
                }
                Refresh::Replay { generation } => {
                    let user = self.user(&family.user_id).await?;
                    return self.issue(&family, generation, &user).await;
                }
                Refresh::Reuse(revoked) => match self.write_revocation(&revoked, item.version).await {
                    Ok(()) => {
                        tracing::warn!(session = %family.id, user = %family.user_id, "refresh token reuse: session revoked");
                        return Err(SessionError::ReuseDetected { family_id: family.id, user_id: family.user_id });
                    }
                    Err(e) => e,
                },
                Refresh::Refuse(_) => return Err(SessionError::Unauthorized),
            };
            match written {
                // Someone else changed the family first: decide again on what they wrote.
                StoreError::ConditionFailed { .. } | StoreError::Conflict => contention.lost().await?,
                other => return Err(other.into()),
            }
        }
    }

    /// Ends one session; its access tokens are refused from now on.
    pub async fn revoke(&self, family_id: &str, because: RevokedBecause) -> Result<(), SessionError> {
        let mut contention = Contention::default();
        loop {
            let Some(item) = self.store.get(&family_key(family_id)).await? else { return Ok(()) };
            let mut family: Family = item.decode()?;
            if family.revoked.is_some() {
                return Ok(());
            }
            family.revoked = Some((self.clock.now(), because));
            match self.write_revocation(&family, item.version).await {
                Ok(()) => return Ok(()),
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Ends every session of a user; returns how many were live.
    pub async fn revoke_all(&self, user_id: &str, because: RevokedBecause) -> Result<usize, SessionError> {
        let live = self.list(user_id).await?;
        for family in &live {
            self.revoke(&family.id, because).await?;
        }
        Ok(live.len())
    }

    /// The user's live sessions, oldest first.
    pub async fn list(&self, user_id: &str) -> Result<Vec<Family>, SessionError> {
        let now = self.clock.now();
        let mut live = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.store.query(&Query::secondary(user_sessions(user_id)).limit(100).after(cursor)).await?;
            for item in &page.items {
                let family: Family = item.decode()?;
                if family.is_live(now) {
                    live.push(family);
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(live),
            }
        }
    }

    async fn user(&self, id: &str) -> Result<User, SessionError> {
        let item = self.store.get(&user_key(id)).await?.ok_or(SessionError::Unauthorized)?;
        Ok(item.decode()?)
    }

    /// Revokes the family and denies its access tokens until the last one expires.
    async fn write_revocation(&self, family: &Family, version: u64) -> Result<(), StoreError> {
        let until = self.clock.now() + self.policy.access_ttl + self.policy.leeway;
        let deny =
            Item::new(deny_key(&family.id), &serde_json::json!({ "user_id": family.user_id }))?.expiring_at(until);
        self.store
            .transact(vec![
                Write::put(Self::family_item(family)?, Condition::VersionIs(version)),
                Write::put(deny, Condition::None),
            ])
            .await
    }

    async fn issue(&self, family: &Family, generation: u64, user: &User) -> Result<Tokens, SessionError> {
        let keys = self.signing_keys().await?;
        let now = self.clock.now();
        let expires: DateTime<Utc> = (now + self.policy.access_ttl).min(family.absolute_expires_at);
        let claims = AccessClaims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: user.id.clone(),
            sid: family.id.clone(),
            roles: user.roles.clone(),
            lvl: user.level,
            org: user.issuer_id.clone(),
            mfa: family.second_factor_at.map(|at| at.timestamp()),
            auth_time: Some(family.created_at.timestamp()),
            iat: now.timestamp(),
            exp: expires.timestamp(),
            jti: self.ids.new_id("at"),
        };
        Ok(Tokens {
            access_token: keys.sign_typed(&claims, ACCESS_TYP)?,
            refresh_token: self.refresh_token(&family.id, generation),
            token_type: "Bearer",
            expires_in: (expires - now).num_seconds(),
        })
    }

    fn refresh_token(&self, family_id: &str, generation: u64) -> String {
        let body = format!("{REFRESH_PREFIX}.{family_id}.{generation}");
        let tag = self.keys().refresh_tag(body.as_bytes());
        format!("{body}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// The family and generation of a genuine refresh token; `None` for anything else.
    fn open_refresh_token(&self, token: &str) -> Option<(String, u64)> {
        let (body, tag) = token.rsplit_once('.')?;
        let mut parts = body.split('.');
        let (prefix, family_id, generation) = (parts.next()?, parts.next()?, parts.next()?);
        if prefix != REFRESH_PREFIX || parts.next().is_some() {
            return None;
        }
        let presented = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let expected = self.keys().refresh_tag(body.as_bytes());
        if !bool::from(presented.ct_eq(&expected)) {
            return None;
        }
        Some((family_id.to_owned(), generation.parse().ok()?))
    }
}
