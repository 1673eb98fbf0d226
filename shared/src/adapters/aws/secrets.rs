//! `PartnerKeys` over Secrets Manager: one secret per partner, a JSON object with
//! `api_key`, `webhook_secret` and `previous_webhook_secret`.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;

use crate::ports::partner::PartnerError;
use crate::ports::partner_keys::{PartnerKeys, PartnerSecret};

/// How often a refusal may make this process read the secret again.
const REFRESH_AT_MOST_EVERY: Duration = Duration::from_secs(5);

pub struct SecretsManagerKeys {
    client: Client,
    secret_id: String,
    cached: RwLock<Option<Arc<PartnerSecret>>>,
    refreshed: Mutex<Option<Instant>>,
}

impl SecretsManagerKeys {
    pub fn new(client: Client, secret_id: impl Into<String>) -> Self {
        Self { client, secret_id: secret_id.into(), cached: RwLock::default(), refreshed: Mutex::default() }
    }

    #[tracing::instrument(skip(self), fields(secret = %self.secret_id))]
    async fn read(&self) -> Result<Arc<PartnerSecret>, PartnerError> {
        let answer = self.client.get_secret_value().secret_id(&self.secret_id).send().await.map_err(|e| {
            let e = e.into_service_error();
            tracing::error!(error = %e, "the partner secret cannot be read");
            PartnerError::Unavailable(format!("the partner secret cannot be read: {e}"))
        })?;
        let text = answer.secret_string().unwrap_or_default();
        let secret: PartnerSecret = serde_json::from_str(text)
            .map_err(|_| PartnerError::Unavailable("the partner secret is not the expected JSON object".into()))?;
        let secret = Arc::new(secret);
        *self.cached.write().unwrap_or_else(|p| p.into_inner()) = Some(secret.clone());
        Ok(secret)
    }
}

#[async_trait]
impl PartnerKeys for SecretsManagerKeys {
    async fn get(&self) -> Result<Arc<PartnerSecret>, PartnerError> {
        let cached = self.cached.read().unwrap_or_else(|p| p.into_inner()).clone();
        match cached {
            Some(secret) => Ok(secret),
            None => self.read().await,
        }
    }

    async fn refresh(&self) -> Result<Arc<PartnerSecret>, PartnerError> {
        let recently = {
            let mut last = self.refreshed.lock().unwrap_or_else(|p| p.into_inner());
            let recently = last.is_some_and(|at| at.elapsed() < REFRESH_AT_MOST_EVERY);
            if !recently {
                *last = Some(Instant::now());
            }
            recently
        };
        if recently { self.get().await } else { self.read().await }
    }
}
