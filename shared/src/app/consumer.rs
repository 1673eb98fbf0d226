//! Queue consumption with partial batch failure: a handler takes a batch and names the
//! messages that failed; only those come back (and, after the queue's `max_receives`,
//! go to its dead-letter queue). The same handler runs under Lambda's SQS event source
//! and under [`pump`] in the local runner and tests.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;

use super::failure::{Failure, Permanence};
use crate::ports::Queue;
use crate::ports::queue::{Message, QueueError, QueueName};

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
    let received = queue.receive(name, queue.receive_max(), wait).await?;
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

/// Handles a batch a message at a time: each body read as an `M` and given to `handle`;
/// each failure decided by [`after_failure`].
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
            Ok(message) => handle(message).await.map_err(|e| Failure::of(&m.id, &e)),
            Err(e) => Err(Failure::permanent(&m.id, format!("unreadable message: {e}"))),
        };
        if let Err(failure) = outcome {
            failed.extend(after_failure(queue, name, m, &failure).await);
        }
    }
    failed
}

/// Decides what becomes of a message that failed, by the failure's kind: one that failed
/// for good goes to the dead-letter queue at once; any other (or one the dead-letter
/// queue did not take) answers its id, to be delivered again. Every failure is logged.
pub async fn after_failure(queue: &dyn Queue, name: QueueName, m: &Message, failure: &Failure) -> Option<String> {
    let (id, receives, error) = (&m.id, m.receive_count, &failure.reason);
    if !failure.permanent {
        tracing::warn!(queue = %name, message_id = %id, receive_count = receives, %error, "message failed; will retry");
        return Some(m.id.clone());
    }
    match queue.dead_letter(name, vec![m.body.clone()]).await {
        Ok(()) => {
            tracing::error!(queue = %name, message_id = %id, %error, "message failed for good; dead-lettered");
            None
        }
        Err(dlq) => {
            tracing::error!(queue = %name, message_id = %id, %error, %dlq, "message failed for good; the dead-letter queue refused it");
            Some(m.id.clone())
        }
    }
}
