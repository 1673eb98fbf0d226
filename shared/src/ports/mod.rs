//! Traits the application needs from the world; each has one contract test suite that
//! every adapter passes (`shared/tests/contract_*.rs`).

pub mod bank;
pub mod chain;
pub mod clock;
pub mod custody;
pub mod envelope;
pub mod keyring;
pub mod mailer;
pub mod partner;
pub mod partner_keys;
pub mod queue;
pub mod store;

pub use bank::Bank;
pub use chain::Chain;
pub use clock::{Clock, Ids};
pub use custody::Custody;
pub use keyring::Keyring;
pub use mailer::Mailer;
pub use queue::Queue;
pub use store::Store;
