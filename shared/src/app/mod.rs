//! Use cases: compose domain rules and ports into what the functions do.

pub mod accounts;
pub mod allocation;
pub mod audit;
pub mod changes;
pub mod consumer;
pub mod deals;
pub mod deposits;
pub mod failure;
pub mod issuers;
pub mod ledger;
pub mod messages;
pub mod mfa;
pub mod mirror;
pub mod myinfo;
pub mod notices;
pub mod orders;
pub mod passwords;
pub mod reconcile;
pub mod sessions;
pub mod settlement;
pub mod signing_keys;
pub mod subscriptions;
pub mod throttle;
pub mod trading;
pub mod verifier;
pub mod work;

/// The id of whatever an owner's idempotency key created: `<prefix>_` and 32 hex digits of
/// SHA-256 over the owner and the key, so a retry finds the first one.
pub(crate) fn keyed_id(prefix: &str, owner: &str, key: &str) -> String {
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, format!("{owner}\0{key}").as_bytes());
    let hex = data_encoding::HEXLOWER.encode(hash.as_ref());
    format!("{prefix}_{}", &hex[..32])
}
