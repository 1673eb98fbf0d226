//! The `PartnerKeys` port: what a partner and the platform authenticate each other with.
//! In AWS a Secrets Manager secret per partner, read on first use and again when the
//! partner refuses the key, so a key is rotated with `put-secret-value` and no redeploy.

use std::sync::Arc;

use async_trait::async_trait;

use super::partner::PartnerError;

/// A partner's credentials: the key presented to it, and the secrets its callbacks are
/// signed with (the current one first, then the previous one while the partner switches
/// over). Never printed.
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct PartnerSecret {
    #[serde(default)]
    pub api_key: String,
    #[serde(default)]
    pub webhook_secret: String,
    #[serde(default)]
    pub previous_webhook_secret: String,
}

impl PartnerSecret {
    /// The webhook secrets to accept, current first; empty ones are not secrets.
    pub fn webhook_secrets(&self) -> impl Iterator<Item = &[u8]> {
        [&self.webhook_secret, &self.previous_webhook_secret]
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(|s| s.as_bytes())
    }
}

impl std::fmt::Debug for PartnerSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PartnerSecret(..)")
    }
}

#[async_trait]
pub trait PartnerKeys: Send + Sync {
    /// The credentials as last read.
    async fn get(&self) -> Result<Arc<PartnerSecret>, PartnerError>;

    /// The credentials read again, because the partner refused them (at most once every
    /// few seconds: a refusal storm must not become a storm of reads).
    async fn refresh(&self) -> Result<Arc<PartnerSecret>, PartnerError>;
}

/// Credentials given once (the embedded platform, a function run by hand).
pub struct FixedKeys(Arc<PartnerSecret>);

impl FixedKeys {
    pub fn shared(secret: PartnerSecret) -> Arc<dyn PartnerKeys> {
        Arc::new(Self(Arc::new(secret)))
    }
}

#[async_trait]
impl PartnerKeys for FixedKeys {
    async fn get(&self) -> Result<Arc<PartnerSecret>, PartnerError> {
        Ok(self.0.clone())
    }

    async fn refresh(&self) -> Result<Arc<PartnerSecret>, PartnerError> {
        Ok(self.0.clone())
    }
}
