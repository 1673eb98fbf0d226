//! Access-token verification with the public keys alone: what every function that
//! authenticates callers uses. It reads the published key set from the store and never
//! touches the keyring, so a function that verifies tokens holds no key that could sign
//! one.

use std::sync::{Arc, Mutex, RwLock};

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, Validation};

use super::sessions::{ACCESS_TYP, AUDIENCE, AccessClaims, ISSUER, Principal, SessionError, deny_key};
use super::signing_keys::{KEYS_FRESH_FOR, PublicKeys};
use crate::domain::session::SessionPolicy;
use crate::ports::{Clock, Store};

/// How often an unknown `kid` may make this process reload the key set.
const RELOAD_AT_MOST_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

pub struct TokenVerifier {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policy: SessionPolicy,
    /// The public keys as last read, and when; `None` until the first token asks.
    keys: RwLock<Option<(Arc<PublicKeys>, DateTime<Utc>)>>,
    /// When an unknown `kid` last made this process read the set again.
    last_reload: Mutex<Option<std::time::Instant>>,
}

impl TokenVerifier {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, policy: SessionPolicy) -> Self {
        Self { store, clock, policy, keys: RwLock::default(), last_reload: Mutex::default() }
    }

    /// Drops the copy in memory: the next token reads the set again (after this process
    /// rotated the keys in an emergency).
    pub fn forget(&self) {
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// The copy in memory, unless it is older than [`KEYS_FRESH_FOR`].
    fn cached(&self, now: DateTime<Utc>) -> Option<Arc<PublicKeys>> {
        let cached = self.keys.read().unwrap_or_else(|p| p.into_inner());
        cached.as_ref().filter(|(_, read_at)| now - *read_at < KEYS_FRESH_FOR).map(|(keys, _)| keys.clone())
    }

    async fn reload(&self, now: DateTime<Utc>) -> Result<Arc<PublicKeys>, SessionError> {
        let fresh = Arc::new(PublicKeys::load(self.store.as_ref()).await?);
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Some((fresh.clone(), now));
        Ok(fresh)
    }

    /// The verification key for `kid`. The set is read on first use; a `kid` it does not
    /// hold may mean the auth function rotated the keys since, so the set is read again
    /// (at most every few seconds: forged `kid`s must not turn into store reads).
    async fn decoding_key(&self, kid: &str) -> Result<Option<jsonwebtoken::DecodingKey>, SessionError> {
        let (now, overlap) = (self.clock.now(), self.policy.key_overlap());
        let keys = match self.cached(now) {
            Some(keys) => keys,
            None => self.reload(now).await?,
        };
        if keys.contains(kid) {
            return Ok(keys.decoding_key(kid, now, overlap));
        }
        {
            let mut last = self.last_reload.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < RELOAD_AT_MOST_EVERY) {
                return Ok(None);
            }
            *last = Some(std::time::Instant::now());
        }
        Ok(self.reload(now).await?.decoding_key(kid, now, overlap))
    }

    /// Verifies an access token: signature under a published key still trusted, ES256
    /// only, `typ`, issuer, audience, expiry (with leeway), and that its session is not
    /// revoked.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, SessionError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| SessionError::Unauthorized)?;
        if header.alg != Algorithm::ES256 || header.typ.as_deref() != Some(ACCESS_TYP) {
            return Err(SessionError::Unauthorized);
        }
        let kid = header.kid.as_deref().ok_or(SessionError::Unauthorized)?;
        let key = self.decoding_key(kid).await?.ok_or(SessionError::Unauthorized)?;
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = self.policy.leeway.num_seconds().max(0) as u64;
        // Expiry is checked against the platform clock below, not the system clock.
        validation.validate_exp = false;
        let claims = jsonwebtoken::decode::<AccessClaims>(token, &key, &validation)
            .map_err(|_| SessionError::Unauthorized)?
            .claims;
        if self.clock.now().timestamp() > claims.exp + self.policy.leeway.num_seconds() {
            return Err(SessionError::Unauthorized);
        }
        if self.store.get(&deny_key(&claims.sid)).await?.is_some() {
            return Err(SessionError::Unauthorized);
        }
        Ok(Principal {
            user_id: claims.sub,
            session_id: claims.sid,
            roles: claims.roles,
            level: claims.lvl,
            issuer_id: claims.org,
            second_factor_at: claims.mfa.and_then(|at| DateTime::from_timestamp(at, 0)),
            authenticated_at: claims.auth_time.and_then(|at| DateTime::from_timestamp(at, 0)),
        })
    }
}
