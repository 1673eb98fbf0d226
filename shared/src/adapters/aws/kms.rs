//! The `Keyring` port on KMS: data keys from `GenerateDataKey`, bound to the encryption
//! context, unwrapped by `Decrypt`; rotation is KMS key rotation, which keeps every
//! earlier key version able to decrypt.

use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use tracing::instrument;

use crate::ports::envelope::EncryptionContext;
use crate::ports::keyring::{DataKey, Keyring, KeyringError};

#[derive(Clone)]
pub struct KmsKeyring {
    client: Client,
    key_id: String,
}

impl KmsKeyring {
    /// `key_id` is the KMS key (id, ARN or alias) that wraps data keys.
    pub fn new(client: Client, key_id: impl Into<String>) -> Self {
        Self { client, key_id: key_id.into() }
    }
}

#[async_trait]
impl Keyring for KmsKeyring {
    #[instrument(skip_all)]
    async fn generate_data_key(&self, context: &EncryptionContext) -> Result<DataKey, KeyringError> {
        let output = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| KeyringError::unavailable(e.into_service_error()))?;
        let plaintext: [u8; 32] = output
            .plaintext
            .map(|b| b.into_inner())
            .unwrap_or_default()
            .try_into()
            .map_err(|_| KeyringError::Crypto("KMS returned a data key that is not 32 bytes".into()))?;
        Ok(DataKey {
            key_id: output.key_id.unwrap_or_else(|| self.key_id.clone()),
            plaintext,
            wrapped: output.ciphertext_blob.map(|b| b.into_inner()).unwrap_or_default(),
        })
    }

    #[instrument(skip_all)]
    async fn unwrap_data_key(
        &self,
        key_id: &str,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<[u8; 32], KeyringError> {
        let output = self
            .client
            .decrypt()
            .key_id(key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .set_encryption_context(Some(context.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| match e.into_service_error() {
                e if e.is_invalid_ciphertext_exception() || e.is_incorrect_key_exception() => KeyringError::Decrypt,
                e => KeyringError::unavailable(e),
            })?;
        output.plaintext.map(|b| b.into_inner()).unwrap_or_default().try_into().map_err(|_| KeyringError::Decrypt)
    }

    #[instrument(skip_all)]
    async fn rewrap(
        &self,
        key_id: &str,
        wrapped: &[u8],
        context: &EncryptionContext,
    ) -> Result<(String, Vec<u8>), KeyringError> {
        let context: std::collections::HashMap<String, String> = context.clone().into_iter().collect();
        let output = self
            .client
            .re_encrypt()
            .source_key_id(key_id)
            .ciphertext_blob(Blob::new(wrapped))
            .set_source_encryption_context(Some(context.clone()))
            .destination_key_id(&self.key_id)
            .set_destination_encryption_context(Some(context))
            .send()
            .await
            .map_err(|e| match e.into_service_error() {
                e if e.is_invalid_ciphertext_exception() || e.is_incorrect_key_exception() => KeyringError::Decrypt,
                e => KeyringError::unavailable(e),
            })?;
        Ok((
            output.key_id.unwrap_or_else(|| self.key_id.clone()),
            output.ciphertext_blob.map(|b| b.into_inner()).unwrap_or_default(),
        ))
    }

    #[instrument(skip_all)]
    async fn rotate(&self) -> Result<(), KeyringError> {
        self.client
            .rotate_key_on_demand()
            .key_id(&self.key_id)
            .send()
            .await
            .map_err(|e| KeyringError::unavailable(e.into_service_error()))?;
        Ok(())
    }
}
