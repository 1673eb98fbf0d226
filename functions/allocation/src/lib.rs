//! The `allocation` function: pro-rata allocation, one message per batch of at most 100
//! subscriptions (see [`shared::app::allocation`]).
//!
//! It consumes the allocation queue: `start` (a closed deal's run, or resuming one),
//! `batch` and `leftover`. A message that fails comes back; after the queue's receive
//! limit it stays in the dead-letter queue for operators, and the sweep's nudge resumes
//! the run from what the table says.

use std::sync::Arc;

use async_trait::async_trait;
use shared::Platform;
use shared::app::allocation::{AllocationMessage, Allocator};
use shared::app::consumer::{BatchHandler, each_message};
use shared::ports::Queue;
use shared::ports::queue::{Message, QueueName};

/// The queue this function consumes.
pub const QUEUE: QueueName = QueueName::Allocation;

pub struct Handler {
    allocator: Allocator,
    queue: Arc<dyn Queue>,
}

#[async_trait]
impl BatchHandler for Handler {
    async fn handle(&self, batch: &[Message]) -> Vec<String> {
        each_message(self.queue.as_ref(), QUEUE, batch, |message: AllocationMessage| self.allocator.handle(message))
            .await
    }
}

/// The batch handler, as Lambda and the local runner run it.
pub fn handler(platform: &Platform) -> Arc<dyn BatchHandler> {
    Arc::new(Handler { allocator: platform.allocator(), queue: platform.queue.clone() })
}
