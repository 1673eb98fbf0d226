//! Use cases: compose domain rules and ports into what the functions do.

pub mod accounts;
pub mod allocation;
pub mod audit;
pub mod changes;
pub mod consumer;
pub mod deals;
pub mod deposits;
pub mod issuers;
pub mod ledger;
pub mod messages;
pub mod mfa;
pub mod mirror;
pub mod notices;
pub mod orders;
pub mod passwords;
pub mod reconcile;
pub mod sessions;
pub mod settlement;
pub mod signing_keys;
pub mod subscriptions;
pub mod throttle;
pub mod verifier;
pub mod work;

/// The id of whatever an owner's idempotency key created: `<prefix>_` and 32 hex digits of
/// SHA-256 over the owner and the key, so a retry finds the first one.
pub(crate) fn keyed_id(prefix: &str, owner: &str, key: &str) -> String {
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, format!("{owner}\0{key}").as_bytes());
    let hex = data_encoding::HEXLOWER.encode(hash.as_ref());
    format!("{prefix}_{}", &hex[..32])
}

/// What a sweep over pending items did: how many it tried and, for each that failed, its id
/// and why. A failing item does not stop the sweep.
#[derive(Debug, Default)]
pub struct Retried {
    pub tried: usize,
    pub failed: Vec<(String, String)>,
}

impl Retried {
    /// Each failure as `id: why`, for a sweep's report.
    pub fn into_failures(self) -> impl Iterator<Item = String> {
        self.failed.into_iter().map(|(id, error)| format!("{id}: {error}"))
    }

    /// Counts one item's outcome.
    pub fn record<T, E: std::fmt::Display>(&mut self, id: String, outcome: Result<T, E>) {
        self.tried += 1;
        if let Err(e) = outcome {
            self.failed.push((id, e.to_string()));
        }
    }
}
