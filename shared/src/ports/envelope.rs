//! Sealing and opening above the `Keyring` port: a fresh 256-bit data key from the keyring
//! per message encrypts the plaintext with AES-256-GCM, the encryption context is the
//! associated data, and the keyring wraps the data key under its master key. The keyring
//! itself only makes and unwraps data keys.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

pub use crate::ports::keyring::EncryptionContext;
use crate::ports::keyring::{Keyring, KeyringError};

/// A ciphertext and the wrapped key that opens it. Serialises to JSON with base64 fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The master key that wrapped the data key, as the keyring names it.
    pub key_id: String,
    #[serde(with = "b64")]
    pub wrapped_key: Vec<u8>,
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
}

/// Sealing and opening with any keyring: `keyring.encrypt(..)` with this in scope.
#[async_trait::async_trait]
pub trait Sealing {
    /// Encrypts `plaintext` under a fresh data key.
    async fn encrypt(&self, plaintext: &[u8], context: &EncryptionContext) -> Result<Envelope, KeyringError>;

    /// Decrypts an envelope made by [`Sealing::encrypt`] with the same context.
    async fn decrypt(&self, sealed: &Envelope, context: &EncryptionContext) -> Result<Vec<u8>, KeyringError>;
}

#[async_trait::async_trait]
impl<K: Keyring + ?Sized> Sealing for K {
    async fn encrypt(&self, plaintext: &[u8], context: &EncryptionContext) -> Result<Envelope, KeyringError> {
        let key = self.generate_data_key(context).await?;
        let (nonce, ciphertext) = seal(&key.plaintext, &canonical_context(context), plaintext)?;
        Ok(Envelope { key_id: key.key_id, wrapped_key: key.wrapped, nonce, ciphertext })
    }

    async fn decrypt(&self, sealed: &Envelope, context: &EncryptionContext) -> Result<Vec<u8>, KeyringError> {
        let key = self.unwrap_data_key(&sealed.key_id, &sealed.wrapped_key, context).await?;
        open(&key, &canonical_context(context), &sealed.nonce, &sealed.ciphertext)
    }
}

/// The context in one canonical byte form, bound as associated data.
pub fn canonical_context(context: &EncryptionContext) -> Vec<u8> {
    serde_json::to_vec(context).unwrap_or_default()
}

pub fn random_bytes<const N: usize>() -> Result<[u8; N], KeyringError> {
    let mut bytes = [0u8; N];
    SystemRandom::new().fill(&mut bytes).map_err(|_| KeyringError::Crypto("no randomness".into()))?;
    Ok(bytes)
}

/// Encrypts with AES-256-GCM under `key`; returns (nonce, ciphertext with tag).
pub fn seal(key: &[u8], aad: &[u8], plaintext: &[u8]) -> Result<(Vec<u8>, Vec<u8>), KeyringError> {
    let key = aead_key(key)?;
    let nonce = random_bytes::<NONCE_LEN>()?;
    let mut buffer = plaintext.to_vec();
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut buffer)
        .map_err(|_| KeyringError::Crypto("encryption failed".into()))?;
    Ok((nonce.to_vec(), buffer))
}

/// Decrypts what [`seal`] produced; fails if the key, the nonce, the data or `aad` differ.
pub fn open(key: &[u8], aad: &[u8], nonce: &[u8], ciphertext: &[u8]) -> Result<Vec<u8>, KeyringError> {
    let key = aead_key(key)?;
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyringError::Decrypt)?;
    let mut buffer = ciphertext.to_vec();
    let plaintext = key.open_in_place(nonce, Aad::from(aad), &mut buffer).map_err(|_| KeyringError::Decrypt)?;
    Ok(plaintext.to_vec())
}

fn aead_key(key: &[u8]) -> Result<LessSafeKey, KeyringError> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| KeyringError::Crypto("a data key must be 32 bytes".into()))
}

mod b64 {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}
