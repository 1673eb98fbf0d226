//! Implementations of the ports: AWS services and embedded stand-ins.

pub mod absent;
pub mod aws;
pub mod clock;
pub mod embedded;
pub mod mime;
pub mod partners;
