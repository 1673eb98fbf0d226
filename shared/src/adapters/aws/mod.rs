//! Adapters over AWS services. Clients are built once per process from the environment
//! (`aws_config`), which also honours `AWS_ENDPOINT_URL` for the local emulator.

//! Beside DynamoDB, which every function uses, each client is a cargo feature of this
//! crate (`kms`, `ses`, `sqs`, `secrets`), so a function links only what it calls.

pub mod dynamodb;
#[cfg(feature = "kms")]
pub mod kms;
#[cfg(feature = "secrets")]
pub mod secrets;
#[cfg(feature = "ses")]
pub mod ses;
#[cfg(feature = "sqs")]
pub mod sqs;

pub use dynamodb::DynamoStore;
#[cfg(feature = "kms")]
pub use kms::KmsKeyring;
#[cfg(feature = "secrets")]
pub use secrets::SecretsManagerKeys;
#[cfg(feature = "ses")]
pub use ses::SesMailer;
#[cfg(feature = "sqs")]
pub use sqs::{QueueUrls, SqsQueue};

/// The SDK configuration from the environment (region, credentials, endpoint).
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// The emulator endpoint a test names in `variable`, or `None` when a plain `cargo test`
/// runs without one: the test then says it is skipped, and why, and passes.
/// `./infra/test.sh`, which always starts the emulators, sets `DABS_REQUIRE_EMULATOR`, under
/// which a missing endpoint fails the test instead, so no suite is skipped there.
pub fn emulator_endpoint(variable: &str, test: &str) -> Option<String> {
    if let Some(endpoint) = std::env::var(variable).ok().filter(|v| !v.is_empty()) {
        return Some(endpoint);
    }
    let required = std::env::var_os("DABS_REQUIRE_EMULATOR").is_some();
    assert!(!required, "{test}: {variable} is not set, and ./infra/test.sh requires the emulator");
    // Straight to stderr: the test harness captures `eprintln!` of a passing test.
    let note = format!("skipped {test}: no AWS emulator ({variable} is not set; ./infra/test.sh starts one)\n");
    let _ = std::io::Write::write_all(&mut std::io::stderr(), note.as_bytes());
    None
}

/// The SDK configuration for a local emulator at `endpoint`: fixed region, dummy
/// credentials, no instance metadata. Refuses any endpoint that is not on loopback, so a
/// test or benchmark can never reach a real account.
pub async fn emulator_config(endpoint: &str) -> Result<aws_config::SdkConfig, EmulatorError> {
    emulator_config_as(endpoint, "testing", "testing").await
}

/// The same, signing as the access key `key_id` (an emulator that enforces IAM checks it).
pub async fn emulator_config_as(
    endpoint: &str,
    key_id: &str,
    secret: &str,
) -> Result<aws_config::SdkConfig, EmulatorError> {
    let host = endpoint
        .strip_prefix("http://")
        .and_then(|rest| rest.split(['/', ':']).next())
        .ok_or_else(|| EmulatorError(endpoint.to_owned()))?;
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(EmulatorError(endpoint.to_owned()));
    }
    // Fixed region and credentials: nothing is looked up in the environment, the profile
    // files or the instance metadata service.
    let credentials = aws_sdk_dynamodb::config::Credentials::new(key_id, secret, None, None, "emulator");
    Ok(aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("ap-southeast-1"))
        .endpoint_url(endpoint)
        .credentials_provider(credentials)
        .load()
        .await)
}

/// The endpoint given for the emulator is not a plain `http://` loopback address.
#[derive(Debug, thiserror::Error)]
#[error("the AWS emulator endpoint must be http:// on loopback, got {0}")]
pub struct EmulatorError(String);
