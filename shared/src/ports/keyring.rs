//! The `Keyring` port: data keys wrapped under a master key that never leaves the keyring,
//! with rotation that keeps old data keys unwrappable. Sealing and opening with them is
//! [`crate::ports::envelope::Sealing`].

use async_trait::async_trait;

/// Who and what a ciphertext is for; decryption needs exactly the same map.
pub type EncryptionContext = std::collections::BTreeMap<String, String>;

/// A data key in the clear and wrapped by the keyring's current master key.
pub struct DataKey {
    pub key_id: String,
    pub plaintext: [u8; 32],
    pub wrapped: Vec<u8>,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataKey").field("key_id", &self.key_id).field("plaintext", &"[redacted]").finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    /// Wrong context, wrong key or tampered ciphertext: all look the same on purpose.
    #[error("cannot decrypt: wrong key, wrong context or tampered data")]
    Decrypt,
    #[error("cryptography failed: {0}")]
    Crypto(String),
    #[error("key service unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl KeyringError {
    pub(crate) fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(e))
    }
}

#[async_trait]
pub trait Keyring: Send + Sync {
    /// A fresh data key bound to `context`.
    async fn generate_data_key(&self, context: &EncryptionContext) -> Result<DataKey, KeyringError>;

    /// The plaintext of a wrapped data key; fails unless `context` is the one it was made with.
    async fn unwrap_data_key(
        &self,
        key_id: &str,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<[u8; 32], KeyringError>;

    /// Starts using new master key material; ciphertexts made before stay readable.
    async fn rotate(&self) -> Result<(), KeyringError>;

    /// The same data key wrapped again under the current master key material (KMS
    /// `ReEncrypt`): answers its key id and wrapped form. The plaintext never leaves the
    /// keyring; `context` must be the one it was made with.
    async fn rewrap(
        &self,
        key_id: &str,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<(String, Vec<u8>), KeyringError>;
}
