//! The envelope format of the `Keyring` port and the AEAD every keyring uses: a fresh
//! 256-bit data key per message encrypts the plaintext with AES-256-GCM, the encryption
//! context is the associated data, and the keyring wraps the data key under its master key.

use std::collections::BTreeMap;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::ports::keyring::KeyringError;

/// Who and what a ciphertext is for; decryption needs exactly the same map.
pub type EncryptionContext = BTreeMap<String, String>;

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
