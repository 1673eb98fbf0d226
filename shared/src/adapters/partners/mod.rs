//! The partners (bank, chain, Custody): HTTP clients to their documented contracts
//! (`docs/partners/`), and simulators with their own state and injectable faults, which
//! the local runner and the tests use.

mod bank_sim;
mod callback;
mod chain_sim;
mod custody_sim;
mod faults;
mod http;
mod serve;
pub mod singpass_sim;

pub use bank_sim::{BankSimulator, SimulatedDeposit};
pub use chain_sim::ChainSimulator;
pub use custody_sim::{CustodyCall, CustodySimulator};
pub use faults::{Fault, FaultKind, Faults, next_seq};
pub use http::{HttpBank, HttpChain, HttpCustody};
pub use serve::{bank_router, chain_router, custody_router};
pub use singpass_sim::SingpassSimulator;
