//! The common crate every function builds on.
//!
//! - [`ports`]: the traits the application needs from the world.
//! - [`adapters`]: those traits over AWS (DynamoDB, SQS, KMS, SES) and embedded stand-ins
//!   (a store in memory with a journal, an in-process queue, a key file, a mail folder).
//! - [`app`]: use cases that compose ports.
//! - [`http`]: axum glue shared by every HTTP function (problem+json, request ids, limits).
//! - [`platform`]: the wiring, `Platform::aws` and `Platform::embedded`.
//! - [`services`]: the use cases built on a platform, each with just the ports it uses.

pub mod adapters;
pub mod app;
pub mod domain;
pub mod http;
pub mod jose;
pub mod lambda;
pub mod platform;
pub mod ports;
pub mod services;
pub mod telemetry;

pub use platform::{Backend, Platform, Simulators};
