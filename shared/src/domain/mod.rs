//! Pure rules: no I/O, no async, no AWS types. The application layer composes them with
//! the ports.

pub mod access;
pub mod accreditation;
pub mod allocation;
pub mod credentials;
pub mod deal;
pub mod ledger;
pub mod lockout;
pub mod market;
pub mod money;
pub mod reconcile;
pub mod session;
pub mod settlement;
pub mod totp;
pub mod uri;
pub mod webhook;
