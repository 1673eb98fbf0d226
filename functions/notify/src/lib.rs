//! The `notify` function: domain events turned into emails and PDF notices.
//!
//! It consumes the notify queue. Until its message kinds exist, every message is refused,
//! logged and, after the queue's receive limit, left in the dead-letter queue for
//! operators.

pub mod render;

use std::sync::Arc;

use shared::Platform;
use shared::app::consumer::{BatchHandler, RejectUnknown};
use shared::ports::queue::QueueName;

/// The queue this function consumes.
pub const QUEUE: QueueName = QueueName::Notify;

/// The batch handler, as Lambda and the local runner run it.
pub fn handler(_platform: &Platform) -> Arc<dyn BatchHandler> {
    Arc::new(RejectUnknown { queue: QUEUE })
}
