//! Fixtures for the contract suites: every port's adapters, freshly made per test.
#![allow(dead_code)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use shared::adapters::clock::ManualClock;

/// Generates one test per case per adapter: `<adapter>::<case>`, so the output shows
/// every contract case passing on every adapter.
#[macro_export]
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    super::$case(super::fixtures::embedded().await).await;
                }
            )*
        }
        mod aws {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let test = concat!("aws::", stringify!($case));
                    if shared::adapters::aws::emulator_endpoint("DABS_AWS_ENDPOINT", test).is_none() {
                        return;
                    }
                    super::$case(super::fixtures::aws().await).await;
                }
            )*
        }
    };
}

pub fn start_time() -> DateTime<Utc> {
    "2026-11-25T06:00:00Z".parse().unwrap()
}

pub fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::at(start_time()))
}

/// The emulator's endpoint (the `aws` cases of [`contract!`] run only with one).
pub fn endpoint() -> String {
    std::env::var("DABS_AWS_ENDPOINT").expect("the aws cases run with DABS_AWS_ENDPOINT set")
}

pub async fn aws_config() -> aws_config::SdkConfig {
    shared::adapters::aws::emulator_config(&endpoint()).await.expect("emulator endpoint")
}

/// A name no other test uses, valid for tables and queues.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", ulid::Ulid::new().to_string().to_lowercase())
}
