//! Use cases: compose ports into what the functions do.

pub mod consumer;
pub mod signing_keys;
