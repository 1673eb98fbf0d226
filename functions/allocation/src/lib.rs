//! The `allocation` function: pro-rata allocation, one message per batch of at most 100 subscriptions.
//!
//! It consumes the allocation queue. Until its message kinds exist, every message is refused,
//! logged and, after the queue's receive limit, left in the dead-letter queue for
//! operators.

use std::sync::Arc;

use shared::Platform;
use shared::app::consumer::{BatchHandler, RejectUnknown};
use shared::ports::queue::QueueName;

/// The queue this function consumes.
pub const QUEUE: QueueName = QueueName::Allocation;

/// The batch handler, as Lambda and the local runner run it.
pub fn handler(_platform: &Platform) -> Arc<dyn BatchHandler> {
    Arc::new(RejectUnknown { queue: QUEUE })
}
