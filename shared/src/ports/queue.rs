//! The `Queue` port: named queues with at-least-once delivery.
//!
//! A received message stays invisible to other receivers until it is completed (deleted)
//! or released (visible again at once). Every receive counts; a message received more
//! than the queue's `max_receives` times moves to the queue's dead-letter queue instead
//! of being delivered again. Consumers must make duplicates harmless.

use async_trait::async_trait;
use std::time::Duration;

/// SQS `SendMessageBatch` takes at most ten entries; adapters chunk larger sends.
pub const SEND_BATCH: usize = 10;
/// SQS `ReceiveMessage` returns at most ten messages.
pub const RECEIVE_BATCH: usize = 10;

/// The platform's queues. Each has a dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueueName {
    Allocation,
    Settlement,
    Notify,
    /// Reconciliation runs an operator asked for (too long for an HTTP request).
    Reconcile,
    /// Pages of the re-wrap of person data keys.
    Myinfo,
    /// Orders, cancels and closes of the secondary market: a FIFO queue, one message
    /// group per asset, so one asset's commands are matched in sequence.
    Matching,
}

impl QueueName {
    pub const ALL: [QueueName; 6] =
        [Self::Allocation, Self::Settlement, Self::Notify, Self::Reconcile, Self::Myinfo, Self::Matching];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allocation => "allocation",
            Self::Settlement => "settlement",
            Self::Notify => "notify",
            Self::Reconcile => "reconcile",
            Self::Myinfo => "myinfo",
            Self::Matching => "matching",
        }
    }

    /// A FIFO queue: messages carry a group and a deduplication id (see [`Queue::send_fifo`]).
    pub fn is_fifo(self) -> bool {
        self == Self::Matching
    }
}

impl std::fmt::Display for QueueName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message as a consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Assigned by the queue; stable across redeliveries.
    pub id: String,
    pub body: String,
    /// How many times this message has been received, this delivery included.
    pub receive_count: u32,
}

/// A received message and the handle that completes or releases it.
#[derive(Debug, Clone)]
pub struct Received {
    pub message: Message,
    pub receipt: String,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("invalid queue request: {0}")]
    Invalid(String),
    #[error("queue unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl QueueError {
    pub(crate) fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(e))
    }
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Enqueues every body; returns the message ids in order.
    async fn send(&self, queue: QueueName, bodies: Vec<String>) -> Result<Vec<String>, QueueError>;

    /// Enqueues `(deduplication id, body)` pairs on a FIFO queue in `group`: a group's
    /// messages are delivered in order, one batch in flight at a time, and a deduplication
    /// id seen in the last five minutes is not enqueued again. In process the queue keeps
    /// one line per queue, which is in order too.
    async fn send_fifo(
        &self,
        queue: QueueName,
        group: &str,
        messages: Vec<(String, String)>,
    ) -> Result<Vec<String>, QueueError> {
        let _ = group;
        self.send(queue, messages.into_iter().map(|(_, body)| body).collect()).await
    }

    /// The most messages one receive answers: [`RECEIVE_BATCH`] on SQS, more in process.
    fn receive_max(&self) -> usize {
        RECEIVE_BATCH
    }

    /// Up to `max` (at most [`Queue::receive_max`]) visible messages, waiting up to `wait`
    /// for the first one.
    async fn receive(&self, queue: QueueName, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError>;

    /// Deletes handled messages.
    async fn complete(&self, queue: QueueName, receipts: &[String]) -> Result<(), QueueError>;

    /// Makes failed messages visible again at once; their next receive counts.
    async fn release(&self, queue: QueueName, receipts: &[String]) -> Result<(), QueueError>;

    /// Puts bodies straight on the queue's dead-letter queue: messages that failed for a
    /// reason no redelivery can change, kept for operators without waiting for the retries.
    async fn dead_letter(&self, queue: QueueName, bodies: Vec<String>) -> Result<(), QueueError>;

    /// Up to `max` messages from the queue's dead-letter queue (for operators and tests).
    async fn dead_letters(&self, queue: QueueName, max: usize) -> Result<Vec<Received>, QueueError>;
}
