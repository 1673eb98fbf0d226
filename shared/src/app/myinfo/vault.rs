//! Personal data under a per-person data key: each person's Myinfo fields are sealed with
//! AES-256-GCM under their own data key, which the keyring (KMS) wraps with the context
//! `{purpose: myinfo-person, subject: <user id>}` (an opaque id: the context is visible in
//! CloudTrail, so it carries no personal data). Deleting a person's wrapped key erases
//! everything sealed under it (crypto-shredding). The re-wrap job moves every wrapped key
//! to the key's current version, a page at a time.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ports::envelope::{EncryptionContext, open, seal};
use crate::ports::keyring::KeyringError;
use crate::ports::store::{Condition, Contention, Cursor, Item, Key, Query, StoreError};
use crate::ports::{Clock, Keyring, Store};

/// The encryption context's purpose for person data keys (the myinfo role may use the
/// data key under it and its client keys' purpose only).
pub const PURPOSE: &str = "myinfo-person";

/// Every person's key lives in this one partition, so the re-wrap job can walk them.
const KEYS_PARTITION: &str = "MYINFO#PERSON-KEYS";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
    /// The person's key was erased: what was sealed under it is gone.
    #[error("the personal data was erased")]
    Erased,
}

/// A value sealed under a person's data key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub nonce: String,
    pub ciphertext: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PersonKey {
    user_id: String,
    key_id: String,
    wrapped: String,
    created_at: DateTime<Utc>,
    rewrapped_at: Option<DateTime<Utc>>,
}

fn key_of(user_id: &str) -> Key {
    Key::new(KEYS_PARTITION, user_id)
}

fn context(user_id: &str) -> EncryptionContext {
    EncryptionContext::from([("purpose".to_owned(), PURPOSE.to_owned()), ("subject".to_owned(), user_id.to_owned())])
}

/// What one page of the re-wrap job did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rewrapped {
    pub rewrapped: u64,
    /// Keys erased or re-wrapped by someone else while the page ran.
    pub skipped: u64,
}

#[derive(Clone)]
pub struct Vault {
    pub store: std::sync::Arc<dyn Store>,
    pub keyring: std::sync::Arc<dyn Keyring>,
    pub clock: std::sync::Arc<dyn Clock>,
}

impl Vault {
    /// The person's data key in the clear; made on first use when `create`.
    async fn data_key(&self, user_id: &str, create: bool) -> Result<[u8; 32], VaultError> {
        let mut contention = Contention::default();
        loop {
            if let Some(item) = self.store.get(&key_of(user_id)).await? {
                let stored: PersonKey = item.decode()?;
                let wrapped = STANDARD.decode(&stored.wrapped).map_err(|_| KeyringError::Decrypt)?;
                return Ok(self.keyring.unwrap_data_key(&stored.key_id, &wrapped, &context(user_id)).await?);
            }
            if !create {
                return Err(VaultError::Erased);
            }
            let key = self.keyring.generate_data_key(&context(user_id)).await?;
            let stored = PersonKey {
                user_id: user_id.to_owned(),
                key_id: key.key_id.clone(),
                wrapped: STANDARD.encode(&key.wrapped),
                created_at: self.clock.now(),
                rewrapped_at: None,
            };
            match self.store.put(Item::new(key_of(user_id), &stored)?, Condition::NotExists).await {
                Ok(()) => return Ok(key.plaintext),
                Err(StoreError::ConditionFailed { .. }) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Seals `value` for `user_id`; `label` binds it to where it is stored.
    pub async fn seal(&self, user_id: &str, label: &str, value: &serde_json::Value) -> Result<Sealed, VaultError> {
        let key = self.data_key(user_id, true).await?;
        let plaintext = serde_json::to_vec(value).map_err(|e| StoreError::Codec(e.to_string()))?;
        let (nonce, ciphertext) = seal(&key, label.as_bytes(), &plaintext)?;
        Ok(Sealed { nonce: STANDARD.encode(nonce), ciphertext: STANDARD.encode(ciphertext) })
    }

    /// Opens what [`Vault::seal`] sealed with the same `label`.
    pub async fn open(&self, user_id: &str, label: &str, sealed: &Sealed) -> Result<serde_json::Value, VaultError> {
        let key = self.data_key(user_id, false).await?;
        let decode = |text: &str| STANDARD.decode(text).map_err(|_| KeyringError::Decrypt);
        let plaintext = open(&key, label.as_bytes(), &decode(&sealed.nonce)?, &decode(&sealed.ciphertext)?)?;
        Ok(serde_json::from_slice(&plaintext).map_err(|e| StoreError::Codec(e.to_string()))?)
    }

    /// Erases the person's data key: everything sealed under it is unreadable from now on.
    /// Answers whether there was a key.
    pub async fn erase(&self, user_id: &str) -> Result<bool, VaultError> {
        match self.store.delete(key_of(user_id), Condition::Exists).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Re-wraps one page of person keys, the page after `after`, under the keyring's
    /// current key version; answers what it did and the next page's cursor. Reading goes
    /// on throughout: both the old and the new wrapped forms open.
    pub async fn rewrap_page(
        &self,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<(Rewrapped, Option<Cursor>), VaultError> {
        let page = self.store.query(&Query::partition(KEYS_PARTITION).limit(limit).after(after)).await?;
        let mut done = Rewrapped::default();
        for item in &page.items {
            let mut stored: PersonKey = item.decode()?;
            let wrapped = STANDARD.decode(&stored.wrapped).map_err(|_| KeyringError::Decrypt)?;
            let (key_id, rewrapped) = self.keyring.rewrap(&stored.key_id, &wrapped, &context(&stored.user_id)).await?;
            stored.key_id = key_id;
            stored.wrapped = STANDARD.encode(rewrapped);
            stored.rewrapped_at = Some(self.clock.now());
            match self.store.put(Item::new(item.key.clone(), &stored)?, Condition::VersionIs(item.version)).await {
                Ok(()) => done.rewrapped += 1,
                Err(StoreError::ConditionFailed { .. }) => done.skipped += 1,
                Err(e) => return Err(e.into()),
            }
        }
        Ok((done, page.next))
    }
}
