//! Stand-ins that run the whole platform in one process: a store in memory with a journal,
//! in-process queues, a local key file and a folder of `.eml` files.

pub mod keyring;
pub mod mailer;
pub mod queue;
#[cfg(feature = "embedded")]
pub mod store;

pub use keyring::LocalKeyring;
pub use mailer::FolderMailer;
pub use queue::MemoryQueue;
#[cfg(feature = "embedded")]
pub use store::EmbeddedStore;
