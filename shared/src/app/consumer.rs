//! Queue consumption with partial batch failure: a handler takes a batch and names the
//! messages that failed; only those come back (and, after the queue's `max_receives`,
//! go to its dead-letter queue). The same handler runs under Lambda's SQS event source
//! and under [`pump`] in the local runner and tests.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::ports::Queue;
use crate::ports::queue::{Message, QueueError, QueueName, RECEIVE_BATCH};

#[async_trait]
pub trait BatchHandler: Send + Sync {
    /// Handles a batch; returns the ids of the messages that failed. Must be idempotent:
    /// every message may arrive more than once.
    async fn handle(&self, batch: &[Message]) -> Vec<String>;
}

/// Receives one batch, hands it to `handler`, deletes what succeeded and releases what
/// failed. Returns how many messages it received.
pub async fn pump_once(
    queue: &dyn Queue,
    name: QueueName,
    handler: &dyn BatchHandler,
    wait: Duration,
) -> Result<usize, QueueError> {
    let received = queue.receive(name, RECEIVE_BATCH, wait).await?;
    if received.is_empty() {
        return Ok(0);
    }
    let messages: Vec<Message> = received.iter().map(|r| r.message.clone()).collect();
    let failed = handler.handle(&messages).await;
    let (released, completed): (Vec<_>, Vec<_>) = received.iter().partition(|r| failed.contains(&r.message.id));
    let receipts =
        |list: Vec<&crate::ports::queue::Received>| list.into_iter().map(|r| r.receipt.clone()).collect::<Vec<_>>();
    queue.complete(name, &receipts(completed)).await?;
    queue.release(name, &receipts(released)).await?;
    Ok(received.len())
}

/// Pumps `name` until `stop` turns true.
pub async fn pump(
    queue: Arc<dyn Queue>,
    name: QueueName,
    handler: Arc<dyn BatchHandler>,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        tokio::select! {
            result = pump_once(queue.as_ref(), name, handler.as_ref(), Duration::from_secs(1)) => {
                if let Err(error) = result {
                    tracing::warn!(queue = %name, %error, "queue pump failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            _ = stop.changed() => {}
        }
    }
}

/// Adapts a handler to Lambda's SQS event source with `ReportBatchItemFailures`.
pub async fn handle_sqs_event(
    handler: &dyn BatchHandler,
    event: aws_lambda_events::event::sqs::SqsEvent,
) -> aws_lambda_events::event::sqs::SqsBatchResponse {
    let messages: Vec<Message> = event
        .records
        .into_iter()
        .map(|record| Message {
            id: record.message_id.unwrap_or_default(),
            body: record.body.unwrap_or_default(),
            receive_count: record.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1),
        })
        .collect();
    let failed = handler.handle(&messages).await;
    let mut response = aws_lambda_events::event::sqs::SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut failure = aws_lambda_events::event::sqs::BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}

/// Whether a failure will come back however often the message is delivered again (a
/// deal that does not exist, a message that does not parse), as opposed to one that may
/// pass later (the store or a partner busy, a race lost).
pub trait Permanence {
    fn is_permanent(&self) -> bool;
}

impl Permanence for crate::ports::store::StoreError {
    fn is_permanent(&self) -> bool {
        matches!(self, Self::Codec(_) | Self::Invalid(_) | Self::ForeignCursor)
    }
}

impl Permanence for super::ledger::LedgerError {
    fn is_permanent(&self) -> bool {
        use super::ledger::LedgerError;
        match self {
            LedgerError::Refused(_) | LedgerError::NoAccount(_) | LedgerError::Invalid(_) => true,
            LedgerError::ContextChanged | LedgerError::Busy => false,
            LedgerError::Store(e) => e.is_permanent(),
        }
    }
}

/// Handles a batch a message at a time: each body read as an `M` and given to `handle`.
/// A message that fails for good (unreadable, or a [`Permanence::is_permanent`] error)
/// goes to the dead-letter queue at once; the ids of those to deliver again (and of any
/// the dead-letter queue did not take) are answered. Every failure is logged.
pub async fn each_message<M, F, Fut, E>(queue: &dyn Queue, name: QueueName, batch: &[Message], handle: F) -> Vec<String>
where
    M: serde::de::DeserializeOwned,
    F: Fn(M) -> Fut,
    Fut: std::future::Future<Output = Result<(), E>>,
    E: std::fmt::Display + Permanence,
{
    let mut failed = Vec::new();
    for m in batch {
        let outcome = match serde_json::from_str::<M>(&m.body) {
            Ok(message) => handle(message).await.map_err(|e| (e.is_permanent(), e.to_string())),
            Err(e) => Err((true, format!("unreadable message: {e}"))),
        };
        let Err((permanent, error)) = outcome else { continue };
        let (id, receives) = (&m.id, m.receive_count);
        if !permanent {
            tracing::warn!(queue = %name, message_id = %id, receive_count = receives, %error, "message failed; will retry");
            failed.push(m.id.clone());
            continue;
        }
        match queue.dead_letter(name, vec![m.body.clone()]).await {
            Ok(()) => {
                tracing::error!(queue = %name, message_id = %id, %error, "message failed for good; dead-lettered");
            }
            Err(dlq) => {
                tracing::error!(queue = %name, message_id = %id, %error, %dlq, "message failed for good; the dead-letter queue refused it");
                failed.push(m.id.clone());
            }
        }
    }
    failed
}

/// A handler for a queue whose message kinds are all unknown yet: every message fails,
/// is logged once per delivery, and ends in the dead-letter queue for operators.
pub struct RejectUnknown {
    pub queue: QueueName,
}

#[async_trait]
impl BatchHandler for RejectUnknown {
    async fn handle(&self, batch: &[Message]) -> Vec<String> {
        batch
            .iter()
            .map(|m| {
                tracing::warn!(queue = %self.queue, message_id = %m.id, receive_count = m.receive_count, "message of unknown kind");
                m.id.clone()
            })
            .collect()
    }
}
