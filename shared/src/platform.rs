//! The wiring: which adapter serves each port. `Platform::aws` reads the environment a
//! Lambda function gets from `template.yaml`; `Platform::embedded` keeps everything under
//! one data directory.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::adapters::aws::{self, DynamoStore, KmsKeyring, QueueUrls, SesMailer, SqsQueue};
use crate::adapters::clock::{SystemClock, UlidIds};
use crate::adapters::embedded::{EmbeddedStore, FolderMailer, LocalKeyring, MemoryQueue};
use crate::ports::queue::QueueName;
use crate::ports::{Clock, Ids, Keyring, Mailer, Queue, Store};

/// Deliveries before a message goes to its dead-letter queue (the SAM template's
/// `maxReceiveCount` says the same).
pub const MAX_RECEIVES: u32 = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Aws,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Embedded => "embedded",
            Self::Aws => "aws",
        }
    }
}

/// Settings that are not adapters.
#[derive(Debug, Clone)]
pub struct Config {
    /// The sender of every email.
    pub mail_from: String,
}

/// Every port, behind the adapter this deployment uses. Cheap to clone.
#[derive(Clone)]
pub struct Platform {
    pub backend: Backend,
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    /// Envelope encryption of personal data.
    pub keyring: Arc<dyn Keyring>,
    /// Wraps the access-token signing keys (a separate key, so each can be rotated and
    /// granted on its own).
    pub token_keyring: Arc<dyn Keyring>,
    pub mailer: Arc<dyn Mailer>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn Ids>,
    pub config: Arc<Config>,
}

#[derive(Debug, thiserror::Error)]
pub enum PlatformError {
    #[error("environment variable {0} is not set")]
    Missing(String),
    #[error("cannot open the data directory {path}")]
    DataDir { path: String, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] crate::ports::store::StoreError),
    #[error(transparent)]
    Keyring(#[from] crate::ports::keyring::KeyringError),
}

fn var(name: &str) -> Result<String, PlatformError> {
    std::env::var(name).ok().filter(|v| !v.is_empty()).ok_or_else(|| PlatformError::Missing(name.to_owned()))
}

impl Platform {
    /// The AWS platform, from the environment: `TABLE_NAME`, `DATA_KEY_ID`, `TOKEN_KEY_ID`, `MAIL_FROM`,
    /// and for each queue the function uses `<QUEUE>_QUEUE_URL` and `<QUEUE>_DLQ_URL`.
    pub async fn aws() -> Result<Self, PlatformError> {
        let sdk = aws::sdk_config().await;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ids: Arc<dyn Ids> = Arc::new(UlidIds::default());
        let mut urls = HashMap::new();
        for queue in QueueName::ALL {
            let prefix = queue.as_str().to_ascii_uppercase();
            if let (Ok(url), Ok(dead_letter_url)) =
                (var(&format!("{prefix}_QUEUE_URL")), var(&format!("{prefix}_DLQ_URL")))
            {
                urls.insert(queue, QueueUrls { url, dead_letter_url });
            }
        }
        let kms = aws_sdk_kms::Client::new(&sdk);
        Ok(Self {
            backend: Backend::Aws,
            store: Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), var("TABLE_NAME")?, clock.clone())),
            queue: Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), urls)),
            keyring: Arc::new(KmsKeyring::new(kms.clone(), var("DATA_KEY_ID")?)),
            token_keyring: Arc::new(KmsKeyring::new(kms, var("TOKEN_KEY_ID")?)),
            mailer: Arc::new(SesMailer::new(aws_sdk_sesv2::Client::new(&sdk), clock.clone(), ids.clone())),
            config: Arc::new(Config { mail_from: var("MAIL_FROM")? }),
            clock,
            ids,
        })
    }

    /// Everything under `dir`: `store.redb`, `keyring.json`, `token-keyring.json`, `mail/`.
    pub fn embedded(dir: &Path) -> Result<Self, PlatformError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| PlatformError::DataDir { path: dir.display().to_string(), source })?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = EmbeddedStore::open(&dir.join("store.redb"), clock.clone())?;
        let keyring = LocalKeyring::open(&dir.join("keyring.json"))?;
        let token_keyring = LocalKeyring::open(&dir.join("token-keyring.json"))?;
        Ok(Self::assemble(Arc::new(store), Arc::new(keyring), Arc::new(token_keyring), dir, clock))
    }

    /// A platform that forgets everything but its mail (written under `dir`), with the
    /// given clock: for tests.
    pub fn ephemeral(dir: &Path, clock: Arc<dyn Clock>) -> Result<Self, PlatformError> {
        let store = EmbeddedStore::in_memory(clock.clone())?;
        let (keyring, token_keyring) = (LocalKeyring::ephemeral()?, LocalKeyring::ephemeral()?);
        Ok(Self::assemble(Arc::new(store), Arc::new(keyring), Arc::new(token_keyring), dir, clock))
    }

    fn assemble(
        store: Arc<dyn Store>,
        keyring: Arc<dyn Keyring>,
        token_keyring: Arc<dyn Keyring>,
        dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let ids: Arc<dyn Ids> = Arc::new(UlidIds::default());
        Self {
            backend: Backend::Embedded,
            store,
            queue: Arc::new(MemoryQueue::new(MAX_RECEIVES, Duration::from_secs(30))),
            keyring,
            token_keyring,
            mailer: Arc::new(FolderMailer::new(dir.join("mail"), clock.clone(), ids.clone())),
            clock,
            ids,
            config: Arc::new(Config { mail_from: "no-reply@dabs.local".to_owned() }),
        }
    }
}
