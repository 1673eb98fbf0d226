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
use crate::adapters::partners::{BankSimulator, ChainSimulator, CustodySimulator, HttpBank, HttpChain, HttpCustody};
use crate::ports::queue::QueueName;
use crate::ports::{Bank, Chain, Clock, Custody, Ids, Keyring, Mailer, Queue, Store};

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
    /// The key the bank signs its webhooks with.
    pub bank_webhook_secret: Secret,
    /// The key the Custody signs its callbacks with.
    pub custody_webhook_secret: Secret,
}

/// Key material that never prints.
#[derive(Clone)]
pub struct Secret(pub Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The partner simulators of an embedded platform, for the local runner's `/sim` routes
/// and for tests.
#[derive(Clone)]
pub struct Simulators {
    pub bank: Arc<BankSimulator>,
    pub chain: Arc<ChainSimulator>,
    pub custody: Arc<CustodySimulator>,
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
    pub bank: Arc<dyn Bank>,
    pub chain: Arc<dyn Chain>,
    pub custody: Arc<dyn Custody>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn Ids>,
    pub config: Arc<Config>,
    /// Present on an embedded platform only.
    pub simulators: Option<Simulators>,
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

impl From<std::io::Error> for PlatformError {
    fn from(source: std::io::Error) -> Self {
        Self::DataDir { path: "data directory".into(), source }
    }
}

fn var(name: &str) -> Result<String, PlatformError> {
    std::env::var(name).ok().filter(|v| !v.is_empty()).ok_or_else(|| PlatformError::Missing(name.to_owned()))
}

impl Platform {
    /// The AWS platform, from the environment: `TABLE_NAME`, `DATA_KEY_ID`, `TOKEN_KEY_ID`, `MAIL_FROM`,
    /// for each queue the function uses `<QUEUE>_QUEUE_URL` and `<QUEUE>_DLQ_URL`, and for the
    /// functions that talk to partners `BANK_API_URL`, `BANK_API_KEY`, `BANK_WEBHOOK_SECRET`,
    /// `CHAIN_API_URL`, `CHAIN_API_KEY`, `CUSTODY_API_URL`, `CUSTODY_API_KEY`,
    /// `CUSTODY_WEBHOOK_SECRET` (a partner not configured answers unavailable).
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
            bank: Arc::new(HttpBank::new(
                var("BANK_API_URL").unwrap_or_default(),
                var("BANK_API_KEY").unwrap_or_default(),
            )),
            chain: Arc::new(HttpChain::new(
                var("CHAIN_API_URL").unwrap_or_default(),
                var("CHAIN_API_KEY").unwrap_or_default(),
            )),
            custody: Arc::new(HttpCustody::new(
                var("CUSTODY_API_URL").unwrap_or_default(),
                var("CUSTODY_API_KEY").unwrap_or_default(),
            )),
            config: Arc::new(Config {
                mail_from: var("MAIL_FROM")?,
                bank_webhook_secret: Secret(var("BANK_WEBHOOK_SECRET").unwrap_or_default().into_bytes()),
                custody_webhook_secret: Secret(var("CUSTODY_WEBHOOK_SECRET").unwrap_or_default().into_bytes()),
            }),
            clock,
            ids,
            simulators: None,
        })
    }

    /// Everything under `dir`: `store.redb`, `keyring.json`, `token-keyring.json`, `mail/`,
    /// and the partner simulators' `chain.jsonl`, `custody.jsonl`, `bank-webhook.key` and
    /// `custody-webhook.key`.
    pub fn embedded(dir: &Path) -> Result<Self, PlatformError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| PlatformError::DataDir { path: dir.display().to_string(), source })?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = EmbeddedStore::open(&dir.join("store.redb"), clock.clone())?;
        let keyring = LocalKeyring::open(&dir.join("keyring.json"))?;
        let token_keyring = LocalKeyring::open(&dir.join("token-keyring.json"))?;
        let secrets = (kept_secret(&dir.join("bank-webhook.key"))?, kept_secret(&dir.join("custody-webhook.key"))?);
        let chain = ChainSimulator::open(&dir.join("chain.jsonl"))?;
        let custody = CustodySimulator::open(&dir.join("custody.jsonl"), secrets.1.clone(), clock.clone())?;
        let parts = (
            Arc::new(store) as Arc<dyn Store>,
            Arc::new(keyring) as Arc<dyn Keyring>,
            Arc::new(token_keyring) as Arc<dyn Keyring>,
        );
        Ok(Self::assemble(parts, dir, clock, secrets, (chain, custody)))
    }

    /// A platform that forgets everything but its mail (written under `dir`), with the
    /// given clock: for tests.
    pub fn ephemeral(dir: &Path, clock: Arc<dyn Clock>) -> Result<Self, PlatformError> {
        let store = EmbeddedStore::in_memory(clock.clone())?;
        let (keyring, token_keyring) = (LocalKeyring::ephemeral()?, LocalKeyring::ephemeral()?);
        let parts = (
            Arc::new(store) as Arc<dyn Store>,
            Arc::new(keyring) as Arc<dyn Keyring>,
            Arc::new(token_keyring) as Arc<dyn Keyring>,
        );
        let secrets = (random_secret(), random_secret());
        let custody = CustodySimulator::new(secrets.1.clone(), clock.clone());
        Ok(Self::assemble(parts, dir, clock, secrets, (ChainSimulator::in_memory(), custody)))
    }

    fn assemble(
        (store, keyring, token_keyring): (Arc<dyn Store>, Arc<dyn Keyring>, Arc<dyn Keyring>),
        dir: &Path,
        clock: Arc<dyn Clock>,
        (bank_webhook_secret, custody_webhook_secret): (Vec<u8>, Vec<u8>),
        (chain, custody): (ChainSimulator, CustodySimulator),
    ) -> Self {
        let ids: Arc<dyn Ids> = Arc::new(UlidIds::default());
        let simulators = Simulators {
            bank: Arc::new(BankSimulator::new(bank_webhook_secret.clone(), clock.clone(), ids.clone())),
            chain: Arc::new(chain),
            custody: Arc::new(custody),
        };
        Self {
            backend: Backend::Embedded,
            store,
            queue: Arc::new(MemoryQueue::new(MAX_RECEIVES, Duration::from_secs(30))),
            keyring,
            token_keyring,
            mailer: Arc::new(FolderMailer::new(dir.join("mail"), clock.clone(), ids.clone())),
            bank: simulators.bank.clone(),
            chain: simulators.chain.clone(),
            custody: simulators.custody.clone(),
            clock,
            ids,
            config: Arc::new(Config {
                mail_from: "no-reply@dabs.local".to_owned(),
                bank_webhook_secret: Secret(bank_webhook_secret),
                custody_webhook_secret: Secret(custody_webhook_secret),
            }),
            simulators: Some(simulators),
        }
    }
}

/// The secret kept in `file`, made on first use.
fn kept_secret(file: &Path) -> Result<Vec<u8>, PlatformError> {
    match std::fs::read(file) {
        Ok(secret) => Ok(secret),
        Err(_) => {
            let secret = random_secret();
            std::fs::write(file, &secret)?;
            Ok(secret)
        }
    }
}

/// 32 random bytes, hex-encoded (a webhook secret a person can paste).
fn random_secret() -> Vec<u8> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes()
}
