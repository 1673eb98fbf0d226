//! The platform's own keys towards Singpass: an ES256 signing key (client assertions) and
//! an ECDH-ES P-256 encryption key (ID tokens and person data are encrypted to it). Their
//! private halves are sealed by the keyring (KMS) under the `myinfo-client-key` purpose;
//! the public halves are published at `/.well-known/myinfo-jwks.json`. Rotation adds a new
//! pair and keeps the old one published, and able to decrypt, for an overlap window.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::client::ClientKeys;
use crate::adapters::partners::singpass_sim::ClientKeySource;
use crate::jose::{DecryptionKey, Jwk, SigningKey};
use crate::ports::envelope::{EncryptionContext, Envelope, Sealing};
use crate::ports::store::{Condition, Contention, Item, Key, StoreError};
use crate::ports::{Clock, Ids, Keyring, Store};

/// The encryption context's purpose for the client's private keys.
pub const PURPOSE: &str = "myinfo-client-key";

/// How long a replaced key stays published: Singpass caches a client's key set for an
/// hour; a day leaves room.
pub const OVERLAP: TimeDelta = TimeDelta::hours(24);

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keyring(#[from] crate::ports::keyring::KeyringError),
    #[error(transparent)]
    Jose(#[from] crate::jose::JoseError),
    #[error("the key set is empty")]
    Empty,
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    /// `sig` or `enc`.
    #[serde(rename = "use")]
    use_: String,
    created_at: DateTime<Utc>,
    retired_at: Option<DateTime<Utc>>,
    jwk: Jwk,
    sealed: Envelope,
}

#[derive(Clone, Default, Serialize, Deserialize)]
struct StoredSet {
    keys: Vec<StoredKey>,
}

fn set_key() -> Key {
    Key::new("KEYS", "myinfo-client")
}

fn context(kid: &str) -> EncryptionContext {
    EncryptionContext::from([("purpose".to_owned(), PURPOSE.to_owned()), ("kid".to_owned(), kid.to_owned())])
}

fn published(key: &StoredKey, now: DateTime<Utc>, overlap: TimeDelta) -> bool {
    key.retired_at.is_none_or(|at| now < at + overlap)
}

async fn new_pair(keyring: &dyn Keyring, ids: &dyn Ids, now: DateTime<Utc>) -> Result<[StoredKey; 2], KeysError> {
    let (sig_kid, enc_kid) = (ids.new_id("sig"), ids.new_id("enc"));
    let pkcs8 = SigningKey::generate_pkcs8()?;
    let signing = SigningKey::from_pkcs8(&pkcs8)?.public_jwk()?.with(&sig_kid, "sig", "ES256");
    let der = DecryptionKey::generate_der()?;
    let encryption = DecryptionKey::from_der(&der)?.public_jwk()?.with(&enc_kid, "enc", "ECDH-ES+A256KW");
    Ok([
        StoredKey {
            sealed: keyring.encrypt(&pkcs8, &context(&sig_kid)).await?,
            kid: sig_kid,
            use_: "sig".into(),
            created_at: now,
            retired_at: None,
            jwk: signing,
        },
        StoredKey {
            sealed: keyring.encrypt(&der, &context(&enc_kid)).await?,
            kid: enc_kid,
            use_: "enc".into(),
            created_at: now,
            retired_at: None,
            jwk: encryption,
        },
    ])
}

/// The platform's Myinfo client keys.
pub struct MyinfoKeys;

impl MyinfoKeys {
    /// The published public keys (newest first), without the keyring.
    pub async fn public(store: &dyn Store, now: DateTime<Utc>) -> Result<Vec<Jwk>, KeysError> {
        let set: StoredSet = store.get(&set_key()).await?.map(|i| i.decode()).transpose()?.unwrap_or_default();
        Ok(set.keys.iter().filter(|k| published(k, now, OVERLAP)).map(|k| k.jwk.clone()).collect())
    }

    /// The JWK set Singpass reads.
    pub async fn jwks(store: &dyn Store, now: DateTime<Utc>) -> Result<serde_json::Value, KeysError> {
        Ok(serde_json::json!({ "keys": Self::public(store, now).await? }))
    }

    /// The keys in use, unsealed: the newest signing key and every published decryption
    /// key. Creates the first pair if there is none.
    pub async fn load(
        store: &dyn Store,
        keyring: &dyn Keyring,
        clock: &dyn Clock,
        ids: &dyn Ids,
    ) -> Result<ClientKeys, KeysError> {
        let mut contention = Contention::default();
        let set = loop {
            if let Some(item) = store.get(&set_key()).await? {
                break item.decode::<StoredSet>()?;
            }
            let first = StoredSet { keys: new_pair(keyring, ids, clock.now()).await?.to_vec() };
            match store.put(Item::new(set_key(), &first)?, Condition::NotExists).await {
                Ok(()) => break first,
                Err(StoreError::ConditionFailed { .. }) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        };
        let now = clock.now();
        let signing = set.keys.iter().find(|k| k.use_ == "sig").ok_or(KeysError::Empty)?;
        let pkcs8 = keyring.decrypt(&signing.sealed, &context(&signing.kid)).await?;
        let mut decryption = Vec::new();
        for key in set.keys.iter().filter(|k| k.use_ == "enc" && published(k, now, OVERLAP)) {
            let der = keyring.decrypt(&key.sealed, &context(&key.kid)).await?;
            decryption.push((key.kid.clone(), DecryptionKey::from_der(&der)?));
        }
        Ok(ClientKeys { signing_kid: signing.kid.clone(), signing: SigningKey::from_pkcs8(&pkcs8)?, decryption })
    }

    /// Adds a new pair and retires the old one (published for [`OVERLAP`] more); drops
    /// keys whose window has passed. Answers the new pair's key ids.
    pub async fn rotate(
        store: &dyn Store,
        keyring: &dyn Keyring,
        clock: &dyn Clock,
        ids: &dyn Ids,
    ) -> Result<Vec<String>, KeysError> {
        let mut contention = Contention::default();
        loop {
            let now = clock.now();
            let (mut set, condition) = match store.get(&set_key()).await? {
                Some(item) => (item.decode::<StoredSet>()?, Condition::VersionIs(item.version)),
                None => (StoredSet::default(), Condition::NotExists),
            };
            for key in &mut set.keys {
                key.retired_at.get_or_insert(now);
            }
            set.keys.retain(|k| published(k, now, OVERLAP));
            let pair = new_pair(keyring, ids, now).await?;
            let kids = pair.iter().map(|k| k.kid.clone()).collect();
            set.keys.splice(0..0, pair);
            match store.put(Item::new(set_key(), &set)?, condition).await {
                Ok(()) => return Ok(kids),
                Err(StoreError::ConditionFailed { .. }) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }
}

/// The published keys as Singpass (the simulator) reads them.
pub struct PublishedKeys {
    pub store: std::sync::Arc<dyn Store>,
    pub clock: std::sync::Arc<dyn Clock>,
}

#[async_trait::async_trait]
impl ClientKeySource for PublishedKeys {
    async fn keys(&self) -> Vec<Jwk> {
        MyinfoKeys::public(self.store.as_ref(), self.clock.now()).await.unwrap_or_default()
    }
}
