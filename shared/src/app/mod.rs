//! Use cases: compose domain rules and ports into what the functions do.

pub mod accounts;
pub mod audit;
pub mod changes;
pub mod consumer;
pub mod deals;
pub mod deposits;
pub mod issuers;
pub mod ledger;
pub mod mfa;
pub mod mirror;
pub mod passwords;
pub mod sessions;
pub mod signing_keys;
pub mod throttle;
