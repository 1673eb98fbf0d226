//! The partners (bank, chain): HTTP clients to their documented contracts
//! (`docs/partners/`), and simulators with their own state and injectable faults, which
//! the local runner and the tests use.

mod bank_sim;
mod chain_sim;
mod faults;
mod http;
mod serve;

pub use bank_sim::{BankSimulator, SimulatedDeposit};
pub use chain_sim::ChainSimulator;
pub use faults::{Fault, FaultKind, Faults};
pub use http::{HttpBank, HttpChain};
pub use serve::{bank_router, chain_router};
