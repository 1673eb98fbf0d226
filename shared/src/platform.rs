//! The wiring: which adapter serves each port. `Platform::aws` reads the environment a
//! Lambda function gets from `template.yaml`; `Platform::embedded` keeps everything under
//! one data directory.

use std::collections::HashMap;
#[cfg(feature = "embedded")]
use std::path::Path;
use std::sync::Arc;
#[cfg(feature = "embedded")]
use std::time::Duration;

use crate::adapters::absent::{NoKeyring, NoMailer, NoQueue};
use crate::adapters::aws::{self, DynamoStore};
use crate::adapters::clock::{SystemClock, UlidIds};
#[cfg(feature = "embedded")]
use crate::adapters::embedded::{EmbeddedStore, FolderMailer, LocalKeyring, MemoryQueue};
use crate::adapters::partners::{
    BankSimulator, ChainSimulator, CustodySimulator, HttpBank, HttpChain, HttpCustody, SingpassSimulator,
};
use crate::app::myinfo::client::{FapiClient, HttpsTransport, SingpassConfig};
use crate::ports::partner_keys::{FixedKeys, PartnerKeys, PartnerSecret};
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
#[derive(Clone)]
pub struct Config {
    /// The sender of every email.
    pub mail_from: String,
    /// Where the public API answers (links in emails, e.g. one-click unsubscribe).
    pub public_url: String,
    /// What the bank signs its webhooks with (and the key the platform presents to it).
    pub bank_keys: Arc<dyn PartnerKeys>,
    /// What the Custody signs its callbacks with (and the key presented to it).
    pub custody_keys: Arc<dyn PartnerKeys>,
}

/// The partner simulators of an embedded platform, for the local runner's `/sim` routes
/// and for tests.
#[derive(Clone)]
pub struct Simulators {
    pub bank: Arc<BankSimulator>,
    pub chain: Arc<ChainSimulator>,
    pub custody: Arc<CustodySimulator>,
    pub singpass: Arc<SingpassSimulator>,
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
    /// Seals the audit log's daily anchors (granted to the function that checks the log,
    /// not to the table's administrators).
    pub audit_keyring: Arc<dyn Keyring>,
    pub mailer: Arc<dyn Mailer>,
    pub bank: Arc<dyn Bank>,
    pub chain: Arc<dyn Chain>,
    pub custody: Arc<dyn Custody>,
    /// The Singpass FAPI 2.0 client (Myinfo onboarding).
    pub singpass: Arc<FapiClient>,
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
    #[error("{variable} is set, but this build of the function has no client for it (cargo feature `{feature}`)")]
    Unbuilt { variable: String, feature: String },
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

/// What a function's environment says: a name's value, if set and not empty.
pub type Env<'a> = &'a (dyn Fn(&str) -> Option<String> + Sync);

/// The process environment as an [`Env`].
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn var(env: Env, name: &str) -> Result<String, PlatformError> {
    optional(env, name).ok_or_else(|| PlatformError::Missing(name.to_owned()))
}

fn optional(env: Env, name: &str) -> Option<String> {
    env(name).filter(|v| !v.is_empty())
}

/// `name` is set, but this build has no client for it.
#[allow(dead_code)]
fn unbuilt(name: &str, feature: &str) -> PlatformError {
    PlatformError::Unbuilt { variable: name.to_owned(), feature: feature.to_owned() }
}

/// The KMS key named by `name`, or a keyring that refuses.
fn keyring(sdk: &aws_config::SdkConfig, env: Env, name: &'static str) -> Result<Arc<dyn Keyring>, PlatformError> {
    let Some(key) = optional(env, name) else { return Ok(Arc::new(NoKeyring(name))) };
    #[cfg(feature = "kms")]
    return Ok(Arc::new(crate::adapters::aws::KmsKeyring::new(aws_sdk_kms::Client::new(sdk), key)));
    #[cfg(not(feature = "kms"))]
    {
        let _ = (sdk, key);
        Err(unbuilt(name, "kms"))
    }
}

/// The SQS queues the environment names, or none.
fn queues(sdk: &aws_config::SdkConfig, env: Env) -> Result<Arc<dyn Queue>, PlatformError> {
    let mut urls = HashMap::new();
    for queue in QueueName::ALL {
        let prefix = queue.as_str().to_ascii_uppercase();
        let (url, dead_letters) = (format!("{prefix}_QUEUE_URL"), format!("{prefix}_DLQ_URL"));
        if let (Some(url), Some(dead_letter_url)) = (optional(env, &url), optional(env, &dead_letters)) {
            urls.insert(queue, (url, dead_letter_url));
        }
    }
    if urls.is_empty() {
        return Ok(Arc::new(NoQueue));
    }
    #[cfg(feature = "sqs")]
    {
        use crate::adapters::aws::{QueueUrls, SqsQueue};
        let urls = urls.into_iter().map(|(q, (url, dead_letter_url))| (q, QueueUrls { url, dead_letter_url }));
        Ok(Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(sdk), urls.collect())))
    }
    #[cfg(not(feature = "sqs"))]
    {
        let _ = sdk;
        Err(unbuilt("<QUEUE>_QUEUE_URL", "sqs"))
    }
}

/// SES when the environment names a sender, else a mailer that refuses.
fn mailer(
    sdk: &aws_config::SdkConfig,
    env: Env,
    clock: &Arc<dyn Clock>,
    ids: &Arc<dyn Ids>,
) -> Result<Arc<dyn Mailer>, PlatformError> {
    if optional(env, "MAIL_FROM").is_none() {
        return Ok(Arc::new(NoMailer));
    }
    #[cfg(feature = "ses")]
    return Ok(Arc::new(crate::adapters::aws::SesMailer::new(
        aws_sdk_sesv2::Client::new(sdk),
        clock.clone(),
        ids.clone(),
    )));
    #[cfg(not(feature = "ses"))]
    {
        let _ = (sdk, clock, ids);
        Err(unbuilt("MAIL_FROM", "ses"))
    }
}

/// A partner's secret in Secrets Manager (`<P>_SECRET_ARN`, as deployed), else the values
/// themselves (`<P>_API_KEY`, `<P>_WEBHOOK_SECRET`: a function run by hand).
fn partner_keys(sdk: &aws_config::SdkConfig, env: Env, prefix: &str) -> Result<Arc<dyn PartnerKeys>, PlatformError> {
    let name = format!("{prefix}_SECRET_ARN");
    let Some(arn) = optional(env, &name) else {
        let value = |suffix: &str| optional(env, &format!("{prefix}_{suffix}")).unwrap_or_default();
        return Ok(FixedKeys::shared(PartnerSecret {
            api_key: value("API_KEY"),
            webhook_secret: value("WEBHOOK_SECRET"),
            previous_webhook_secret: String::new(),
        }));
    };
    #[cfg(feature = "secrets")]
    return Ok(Arc::new(crate::adapters::aws::SecretsManagerKeys::new(aws_sdk_secretsmanager::Client::new(sdk), arn)));
    #[cfg(not(feature = "secrets"))]
    {
        let _ = (sdk, arn);
        Err(unbuilt(&name, "secrets"))
    }
}

impl Platform {
    /// The AWS platform from the process environment (see [`Platform::aws_from`]).
    pub async fn aws() -> Result<Self, PlatformError> {
        Self::aws_from(&aws::sdk_config().await, &process_env)
    }

    /// The AWS platform over `sdk`, configured by `env`: `TABLE_NAME` always; each of the
    /// rest only where the function uses it, as `template.yaml` gives it: `DATA_KEY_ID`
    /// (personal data), `TOKEN_KEY_ID` (the auth function alone), `AUDIT_KEY_ID` (the
    /// audit log's anchors), `MAIL_FROM`, for each
    /// queue `<QUEUE>_QUEUE_URL` and `<QUEUE>_DLQ_URL`, and per partner (`BANK`, `CHAIN`,
    /// `CUSTODY`) `<P>_API_URL` and `<P>_SECRET_ARN` (or, run by hand, `<P>_API_KEY` and
    /// `<P>_WEBHOOK_SECRET`). A port the environment names nothing for is absent: every
    /// call to it is refused. A port it names that this build has no client for (a cargo
    /// feature left out) is an error at start.
    pub fn aws_from(sdk: &aws_config::SdkConfig, env: Env) -> Result<Self, PlatformError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let ids: Arc<dyn Ids> = Arc::new(UlidIds::default());
        let partner = |name: &str| optional(env, name).unwrap_or_default();
        let (bank_keys, chain_keys, custody_keys) =
            (partner_keys(sdk, env, "BANK")?, partner_keys(sdk, env, "CHAIN")?, partner_keys(sdk, env, "CUSTODY")?);
        Ok(Self {
            backend: Backend::Aws,
            store: Arc::new(DynamoStore::new(
                aws_sdk_dynamodb::Client::new(sdk),
                var(env, "TABLE_NAME")?,
                clock.clone(),
            )),
            queue: queues(sdk, env)?,
            keyring: keyring(sdk, env, "DATA_KEY_ID")?,
            token_keyring: keyring(sdk, env, "TOKEN_KEY_ID")?,
            audit_keyring: keyring(sdk, env, "AUDIT_KEY_ID")?,
            mailer: mailer(sdk, env, &clock, &ids)?,
            bank: Arc::new(HttpBank::new(partner("BANK_API_URL"), bank_keys.clone())),
            chain: Arc::new(HttpChain::new(partner("CHAIN_API_URL"), chain_keys)),
            custody: Arc::new(HttpCustody::new(partner("CUSTODY_API_URL"), custody_keys.clone())),
            singpass: Arc::new(FapiClient::new(
                singpass_config(partner("SINGPASS_ISSUER"), partner("SINGPASS_CLIENT_ID"), &partner("PUBLIC_URL")),
                Arc::new(HttpsTransport::default()),
            )),
            config: Arc::new(Config {
                mail_from: partner("MAIL_FROM"),
                public_url: partner("PUBLIC_URL"),
                bank_keys,
                custody_keys,
            }),
            clock,
            ids,
            simulators: None,
        })
    }

    #[cfg(feature = "embedded")]
    /// Everything under `dir`: the store in `store/`, `keyring.json`, `token-keyring.json`,
    /// `audit-keyring.json`, `mail/`,
    /// and the partner simulators' `chain.jsonl`, `custody.jsonl`, `bank-webhook.key` and
    /// `custody-webhook.key`.
    pub fn embedded(dir: &Path) -> Result<Self, PlatformError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| PlatformError::DataDir { path: dir.display().to_string(), source })?;
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = EmbeddedStore::open(&dir.join("store"), clock.clone())?;
        let keyring = LocalKeyring::open(&dir.join("keyring.json"))?;
        let token_keyring = LocalKeyring::open(&dir.join("token-keyring.json"))?;
        let audit_keyring = LocalKeyring::open(&dir.join("audit-keyring.json"))?;
        let secrets = (kept_secret(&dir.join("bank-webhook.key"))?, kept_secret(&dir.join("custody-webhook.key"))?);
        let chain = ChainSimulator::open(&dir.join("chain.jsonl"))?;
        let custody = CustodySimulator::open(&dir.join("custody.jsonl"), secrets.1.clone(), clock.clone())?;
        let keyrings: [Arc<dyn Keyring>; 3] = [Arc::new(keyring), Arc::new(token_keyring), Arc::new(audit_keyring)];
        let parts = (Arc::new(store) as Arc<dyn Store>, keyrings);
        Self::assemble(parts, dir, clock, secrets, (chain, custody))
    }

    #[cfg(feature = "embedded")]
    /// A platform that forgets everything but its mail (written under `dir`), with the
    /// given clock: for tests.
    pub fn ephemeral(dir: &Path, clock: Arc<dyn Clock>) -> Result<Self, PlatformError> {
        let store = EmbeddedStore::temporary(clock.clone())?;
        let keyrings: [Arc<dyn Keyring>; 3] = [
            Arc::new(LocalKeyring::ephemeral()?),
            Arc::new(LocalKeyring::ephemeral()?),
            Arc::new(LocalKeyring::ephemeral()?),
        ];
        let parts = (Arc::new(store) as Arc<dyn Store>, keyrings);
        let secrets = (random_secret()?, random_secret()?);
        let custody = CustodySimulator::new(secrets.1.clone(), clock.clone());
        Self::assemble(parts, dir, clock, secrets, (ChainSimulator::in_memory(), custody))
    }

    /// The same embedded platform on another store (the tests' DynamoDB in the emulator);
    /// the Singpass simulator follows it.
    #[cfg(feature = "embedded")]
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Result<Self, PlatformError> {
        let (simulator, singpass) = simulated_singpass(&store, &self.clock)?;
        if let Some(simulators) = &mut self.simulators {
            simulators.singpass = simulator;
        }
        self.singpass = singpass;
        self.store = store;
        Ok(self)
    }

    #[cfg(feature = "embedded")]
    fn assemble(
        (store, [keyring, token_keyring, audit_keyring]): (Arc<dyn Store>, [Arc<dyn Keyring>; 3]),
        dir: &Path,
        clock: Arc<dyn Clock>,
        (bank_webhook_secret, custody_webhook_secret): (Vec<u8>, Vec<u8>),
        (chain, custody): (ChainSimulator, CustodySimulator),
    ) -> Result<Self, PlatformError> {
        let ids: Arc<dyn Ids> = Arc::new(UlidIds::default());
        let public_url = EMBEDDED_URL.to_owned();
        let (simulator, singpass) = simulated_singpass(&store, &clock)?;
        let simulators = Simulators {
            bank: Arc::new(BankSimulator::new(bank_webhook_secret.clone(), clock.clone(), ids.clone())),
            chain: Arc::new(chain),
            custody: Arc::new(custody),
            singpass: simulator.clone(),
        };
        Ok(Self {
            backend: Backend::Embedded,
            store,
            queue: Arc::new(MemoryQueue::new(MAX_RECEIVES, Duration::from_secs(30))),
            keyring,
            token_keyring,
            audit_keyring,
            mailer: Arc::new(FolderMailer::new(dir.join("mail"), clock.clone(), ids.clone())),
            bank: simulators.bank.clone(),
            chain: simulators.chain.clone(),
            custody: simulators.custody.clone(),
            singpass,
            clock,
            ids,
            config: Arc::new(Config {
                mail_from: "no-reply@dabs.local".to_owned(),
                public_url,
                bank_keys: webhook_keys(bank_webhook_secret),
                custody_keys: webhook_keys(custody_webhook_secret),
            }),
            simulators: Some(simulators),
        })
    }
}

/// Where the embedded platform's API answers.
#[cfg(feature = "embedded")]
const EMBEDDED_URL: &str = "http://127.0.0.1:3000";

/// The Singpass simulator over `store` (it reads the platform's published keys there, as
/// Singpass reads the registered JWKS URL) and a client that reaches it in process.
#[cfg(feature = "embedded")]
fn simulated_singpass(
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
) -> Result<(Arc<SingpassSimulator>, Arc<FapiClient>), PlatformError> {
    let issuer = format!("{EMBEDDED_URL}{}", crate::adapters::partners::singpass_sim::BASE_PATH);
    let config = singpass_config(issuer, "dabs-platform".to_owned(), EMBEDDED_URL);
    let published = crate::app::myinfo::keys::PublishedKeys { store: store.clone(), clock: clock.clone() };
    let simulator = SingpassSimulator::new(
        config.issuer.clone(),
        config.client_id.clone(),
        config.redirect_uri.clone(),
        Arc::new(published),
        clock.clone(),
    )
    .map(Arc::new)
    .map_err(|e| crate::ports::keyring::KeyringError::Crypto(e.to_string()))?;
    let transport = Arc::new(crate::app::myinfo::client::RouterTransport(simulator.router()));
    Ok((simulator.clone(), Arc::new(FapiClient::new(config, transport))))
}

/// Singpass as the platform is registered with it: the callback is under `public_url`.
fn singpass_config(issuer: String, client_id: String, public_url: &str) -> SingpassConfig {
    SingpassConfig {
        issuer,
        client_id,
        redirect_uri: format!("{}/v1/myinfo/callback", public_url.trim_end_matches('/')),
        scope: "openid uinfin name noa-basic cpfbalances ownerprivate hdbownership".to_owned(),
    }
}

#[cfg(feature = "embedded")]
/// The simulators sign their callbacks with `secret`; they take any key.
fn webhook_keys(secret: Vec<u8>) -> Arc<dyn PartnerKeys> {
    let webhook_secret = String::from_utf8(secret).unwrap_or_default();
    FixedKeys::shared(PartnerSecret { webhook_secret, ..PartnerSecret::default() })
}

#[cfg(feature = "embedded")]
/// The secret kept in `file`, made on first use.
fn kept_secret(file: &Path) -> Result<Vec<u8>, PlatformError> {
    match std::fs::read(file) {
        Ok(secret) => Ok(secret),
        Err(_) => {
            let secret = random_secret()?;
            std::fs::write(file, &secret)?;
            Ok(secret)
        }
    }
}

#[cfg(feature = "embedded")]
/// 32 random bytes, hex-encoded (a webhook secret a person can paste).
fn random_secret() -> Result<Vec<u8>, PlatformError> {
    let bytes = crate::ports::envelope::random_bytes::<32>()?;
    Ok(data_encoding::HEXLOWER.encode(&bytes).into_bytes())
}
