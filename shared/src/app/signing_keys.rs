//! Token signing keys: ES256 key pairs made here, their private halves sealed by the
//! `Keyring` and kept in the `Store`, unwrapped once at start and then used in memory
//! (KMS `Sign` quotas would otherwise cap logins). Rotation adds a key and keeps the
//! previous ones published for an overlap window, so tokens signed just before a
//! rotation still verify.
//!
//! Only the auth function unseals the set ([`TokenKeys`]). Every other reader takes the
//! public half of the same item ([`PublicKeys`]): key ids and curve points, no keyring.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::ports::envelope::{EncryptionContext, Envelope, Sealing};
use crate::ports::keyring::KeyringError;
use crate::ports::store::{Condition, Contention, Item, Key, StoreError};
use crate::ports::{Clock, Ids, Keyring, Store};

/// How long a copy of the set is used before it is read again: a retirement reaches every
/// verifier this soon, well inside the overlap window (minutes), so a retired key stops
/// verifying everywhere when its window ends.
pub const KEYS_FRESH_FOR: TimeDelta = TimeDelta::seconds(60);
#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    #[error("signing key material is invalid: {0}")]
    Invalid(String),
    #[error("signing failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    created_at: DateTime<Utc>,
    /// When a newer key replaced this one; published until `retired_at + overlap`.
    retired_at: Option<DateTime<Utc>>,
    x: String,
    y: String,
    sealed: Envelope,
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredSet {
    keys: Vec<StoredKey>,
    /// The HMAC key refresh tokens are derived with.
    refresh_secret: Envelope,
}

/// The public half of a stored key: what verifying a token needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PublicKey {
    pub kid: String,
    pub created_at: DateTime<Utc>,
    pub retired_at: Option<DateTime<Utc>>,
    x: String,
    y: String,
}

#[derive(Deserialize)]
struct PublicSet {
    keys: Vec<PublicKey>,
}

/// The published keys, newest first, read without the keyring. A retired key verifies
/// only until `retired_at + overlap`, whoever verifies and however stale the copy.
#[derive(Debug, Clone, Default)]
pub struct PublicKeys {
    keys: Vec<PublicKey>,
}

impl PublicKeys {
    /// The set as stored; empty before the auth function made the first key.
    pub async fn load(store: &dyn Store) -> Result<Self, SigningKeyError> {
        let keys = match store.get(&set_key()).await? {
            Some(item) => item.decode::<PublicSet>()?.keys,
            None => Vec::new(),
        };
        Ok(Self { keys })
    }

    /// The keys a token may be verified with at `now`.
    pub fn trusted(&self, now: DateTime<Utc>, overlap: TimeDelta) -> impl Iterator<Item = &PublicKey> {
        self.keys.iter().filter(move |k| k.retired_at.is_none_or(|at| now < at + overlap))
    }

    /// The verification key for `kid`, if it is published and trusted at `now`.
    pub fn decoding_key(&self, kid: &str, now: DateTime<Utc>, overlap: TimeDelta) -> Option<DecodingKey> {
        let key = self.trusted(now, overlap).find(|k| k.kid == kid)?;
        DecodingKey::from_ec_components(&key.x, &key.y).ok()
    }

    /// The key that signs now (the newest), if there is one.
    pub fn newest(&self) -> Option<&PublicKey> {
        self.keys.first()
    }

    /// Whether `kid` is in the set at all (trusted or not).
    pub fn contains(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid == kid)
    }

    /// The JWK set served at `/.well-known/jwks.json`: the keys trusted at `now`.
    pub fn jwks(&self, now: DateTime<Utc>, overlap: TimeDelta) -> serde_json::Value {
        let keys: Vec<_> = self
            .trusted(now, overlap)
            .map(|k| {
                serde_json::json!({
                    "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
                    "kid": k.kid, "x": k.x, "y": k.y,
                })
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

/// How to rotate the token keys.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rotation {
    /// Rotate only if the newest key is at least this old (zero: always).
    pub max_age: TimeDelta,
    /// An emergency: the keys in use stop verifying at once, not at the end of the overlap
    /// window (every access token they signed is refused).
    pub retire_now: bool,
    /// Replace the refresh-token secret too: every refresh token is refused, and every
    /// session must log in again.
    pub new_refresh_secret: bool,
}

/// The key that signs: its id and private half.
pub struct SigningKey {
    pub kid: String,
    pub created_at: DateTime<Utc>,
    encoding: EncodingKey,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// The published key set (the first key signs) and the refresh-token secret.
pub struct TokenKeys {
    current: SigningKey,
    public: PublicKeys,
    refresh_secret: aws_lc_rs::hmac::Key,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys").field("current", &self.current).finish_non_exhaustive()
    }
}

fn set_key() -> Key {
    Key::new("KEYS", "token-signing")
}

fn refresh_context() -> EncryptionContext {
    EncryptionContext::from([("purpose".to_owned(), "refresh-token-secret".to_owned())])
}

fn context(kid: &str) -> EncryptionContext {
    EncryptionContext::from([("purpose".to_owned(), "token-signing".to_owned()), ("kid".to_owned(), kid.to_owned())])
}

async fn new_key(keyring: &dyn Keyring, ids: &dyn Ids, now: DateTime<Utc>) -> Result<StoredKey, SigningKeyError> {
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map_err(|_| SigningKeyError::Invalid("key generation failed".into()))?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .map_err(|_| SigningKeyError::Invalid("generated key does not parse".into()))?;
    // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
    let point = pair.public_key().as_ref();
    let kid = ids.new_id("key");
    let sealed = keyring.encrypt(pkcs8.as_ref(), &context(&kid)).await?;
    Ok(StoredKey {
        x: URL_SAFE_NO_PAD.encode(&point[1..33]),
        y: URL_SAFE_NO_PAD.encode(&point[33..65]),
        kid,
        created_at: now,
        retired_at: None,
        sealed,
    })
}

impl TokenKeys {
    /// Loads the key set, creating the first key if there is none.
    pub async fn load(
        store: &dyn Store,
        keyring: &dyn Keyring,
        clock: &dyn Clock,
        ids: &dyn Ids,
    ) -> Result<Self, SigningKeyError> {
        let mut contention = Contention::default();
        loop {
            if let Some(item) = store.get(&set_key()).await? {
                return Self::unseal(item.decode::<StoredSet>()?, keyring).await;
            }
            let secret = crate::ports::envelope::random_bytes::<32>()?;
            let first = StoredSet {
                keys: vec![new_key(keyring, ids, clock.now()).await?],
                refresh_secret: keyring.encrypt(&secret, &refresh_context()).await?,
            };
            match store.put(Item::new(set_key(), &first)?, Condition::NotExists).await {
                Ok(()) => return Self::unseal(first, keyring).await,
                // Another instance created it first: load theirs.
                Err(StoreError::ConditionFailed { .. }) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Adds a new signing key unless the newest one is younger than `max_age`; keys
    /// retired more than `overlap` ago are dropped. Safe to call from many processes at
    /// once: the first to write rotates, the others then find a fresh key and load it.
    pub async fn rotate_if_older(
        store: &dyn Store,
        keyring: &dyn Keyring,
        clock: &dyn Clock,
        ids: &dyn Ids,
        max_age: TimeDelta,
        overlap: TimeDelta,
    ) -> Result<Self, SigningKeyError> {
        let rotation = Rotation { max_age, ..Rotation::default() };
        Ok(Self::rotate_with(store, keyring, clock, ids, overlap, rotation).await?.0)
    }

    /// Adds a new signing key now; keys retired more than `overlap` ago are dropped.
    pub async fn rotate(
        store: &dyn Store,
        keyring: &dyn Keyring,
        clock: &dyn Clock,
        ids: &dyn Ids,
        overlap: TimeDelta,
    ) -> Result<Self, SigningKeyError> {
        Self::rotate_if_older(store, keyring, clock, ids, TimeDelta::zero(), overlap).await
    }

    /// Rotates as `rotation` says; answers the keys and the ids of the keys it retired
    /// (empty when the newest key was young enough and nothing changed).
    pub async fn rotate_with(
        store: &dyn Store,
        keyring: &dyn Keyring,
        clock: &dyn Clock,
        ids: &dyn Ids,
        overlap: TimeDelta,
        rotation: Rotation,
    ) -> Result<(Self, Vec<String>), SigningKeyError> {
        let mut contention = Contention::default();
        loop {
            let now = clock.now();
            let Some(item) = store.get(&set_key()).await? else {
                // Nothing to rotate yet: the first load creates the set.
                return Ok((Self::load(store, keyring, clock, ids).await?, Vec::new()));
            };
            let (mut set, condition) = (item.decode::<StoredSet>()?, Condition::VersionIs(item.version));
            if set.keys.first().is_some_and(|newest| now - newest.created_at < rotation.max_age) {
                return Ok((Self::unseal(set, keyring).await?, Vec::new()));
            }
            let mut retired = Vec::new();
            for key in &mut set.keys {
                if key.retired_at.is_none() {
                    retired.push(key.kid.clone());
                }
                // An emergency retires every key at once: its window is already over.
                let at = if rotation.retire_now { now - overlap } else { now };
                key.retired_at = Some(key.retired_at.map_or(at, |earlier| earlier.min(at)));
            }
            set.keys.retain(|k| k.retired_at.is_none_or(|at| at + overlap > now));
            set.keys.insert(0, new_key(keyring, ids, now).await?);
            if rotation.new_refresh_secret {
                let secret = crate::ports::envelope::random_bytes::<32>()?;
                set.refresh_secret = keyring.encrypt(&secret, &refresh_context()).await?;
            }
            match store.put(Item::new(set_key(), &set)?, condition).await {
                Ok(()) => return Ok((Self::unseal(set, keyring).await?, retired)),
                Err(StoreError::ConditionFailed { .. }) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    async fn unseal(set: StoredSet, keyring: &dyn Keyring) -> Result<Self, SigningKeyError> {
        // Only the signing key is unsealed: the retired ones only verify, which their
        // public halves do.
        let newest = set.keys.first().ok_or_else(|| SigningKeyError::Invalid("the key set is empty".into()))?;
        let pkcs8 = keyring.decrypt(&newest.sealed, &context(&newest.kid)).await?;
        let current = SigningKey {
            encoding: EncodingKey::from_ec_der(&pkcs8),
            kid: newest.kid.clone(),
            created_at: newest.created_at,
        };
        let public = PublicKeys {
            keys: set
                .keys
                .into_iter()
                .map(|k| PublicKey { kid: k.kid, created_at: k.created_at, retired_at: k.retired_at, x: k.x, y: k.y })
                .collect(),
        };
        let secret = keyring.decrypt(&set.refresh_secret, &refresh_context()).await?;
        Ok(Self { current, public, refresh_secret: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret) })
    }

    /// The key that signs new tokens.
    pub fn current(&self) -> &SigningKey {
        &self.current
    }

    /// Signs `claims` as an ES256 JWT with the current key's `kid`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, SigningKeyError> {
        self.sign_typed(claims, "JWT")
    }

    /// Signs with a `typ` header (RFC 9068 access tokens use `at+jwt`).
    pub fn sign_typed<T: Serialize>(&self, claims: &T, typ: &str) -> Result<String, SigningKeyError> {
        let key = self.current();
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(typ.to_owned());
        header.kid = Some(key.kid.clone());
        Ok(jsonwebtoken::encode(&header, claims, &key.encoding)?)
    }

    /// An unforgeable tag of `message` under the refresh-token secret.
    pub fn refresh_tag(&self, message: &[u8]) -> Vec<u8> {
        aws_lc_rs::hmac::sign(&self.refresh_secret, message).as_ref().to_vec()
    }

    /// The public half of the set, as it was when these keys were loaded.
    pub fn public(&self) -> &PublicKeys {
        &self.public
    }
}
