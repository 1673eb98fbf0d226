//! The black-box tests of the whole platform, one module a capability, built as one test
//! binary: each binary links the whole platform, so one link instead of one a file. The
//! tests that install a process-wide log capture (`log_hygiene`, `myinfo_hygiene`) stay
//! binaries of their own. Run one module with `cargo test -p platform-tests --test suite -- trading::`.

mod accounts;
mod admin;
mod audit;
mod bench;
mod chain_mirror;
mod deals;
mod deposits;
mod edges;
mod iam;
mod issuers;
mod lambda_events;
mod mfa;
mod myinfo;
mod notices;
mod platform;
mod reconcile;
mod sessions;
mod settlement;
mod settlement_faults;
mod subscriptions;
mod template;
mod throttling;
mod tokens;
mod trading;
mod withdrawals;
