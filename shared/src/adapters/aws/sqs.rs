//! The `Queue` port on SQS standard queues, each with a redrive policy to its DLQ.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageSystemAttributeName,
    SendMessageBatchRequestEntry,
};
use tracing::instrument;

use crate::ports::queue::{Message, Queue, QueueError, QueueName, RECEIVE_BATCH, Received, SEND_BATCH};

/// A queue's URL and its dead-letter queue's URL.
#[derive(Debug, Clone)]
pub struct QueueUrls {
    pub url: String,
    pub dead_letter_url: String,
}

#[derive(Clone)]
pub struct SqsQueue {
    client: Client,
    urls: HashMap<QueueName, QueueUrls>,
}

impl SqsQueue {
    pub fn new(client: Client, urls: HashMap<QueueName, QueueUrls>) -> Self {
        Self { client, urls }
    }

    fn urls(&self, queue: QueueName) -> Result<&QueueUrls, QueueError> {
        self.urls.get(&queue).ok_or_else(|| QueueError::Invalid(format!("no URL configured for the {queue} queue")))
    }

    /// Creates a queue and its DLQ with `max_receives` (for emulators and tests; in AWS
    /// the stack owns the queues).
    pub async fn create(
        client: &Client,
        name: &str,
        max_receives: u32,
        visibility: Duration,
    ) -> Result<QueueUrls, QueueError> {
        use aws_sdk_sqs::types::QueueAttributeName;
        // A FIFO queue's name ends in `.fifo`, and so must its dead-letter queue's.
        let fifo = name.strip_suffix(".fifo");
        let dead_letter_name = match fifo {
            Some(base) => format!("{base}-dlq.fifo"),
            None => format!("{name}-dlq"),
        };
        let fifo_attribute = fifo.map(|_| "true".to_owned());
        let dead_letter_url = client
            .create_queue()
            .queue_name(dead_letter_name)
            .set_attributes(fifo_attribute.clone().map(|v| [(QueueAttributeName::FifoQueue, v)].into()))
            .send()
            .await
            .map_err(|e| QueueError::unavailable(e.into_service_error()))?
            .queue_url
            .unwrap_or_default();
        let arn = client
            .get_queue_attributes()
            .queue_url(&dead_letter_url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| QueueError::unavailable(e.into_service_error()))?
            .attributes
            .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .unwrap_or_default();
        let redrive = serde_json::json!({ "deadLetterTargetArn": arn, "maxReceiveCount": max_receives }).to_string();
        let url = client
            .create_queue()
            .queue_name(name)
            .set_attributes(fifo_attribute.map(|v| [(QueueAttributeName::FifoQueue, v)].into()))
            .attributes(aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy, redrive)
            .attributes(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout, visibility.as_secs().to_string())
            .send()
            .await
            .map_err(|e| QueueError::unavailable(e.into_service_error()))?
            .queue_url
            .unwrap_or_default();
        Ok(QueueUrls { url, dead_letter_url })
    }

    async fn receive_from(
        &self,
        url: &str,
        max: usize,
        wait: Duration,
        visibility: Option<i32>,
    ) -> Result<Vec<Received>, QueueError> {
        if max == 0 || max > RECEIVE_BATCH {
            return Err(QueueError::Invalid(format!("receive takes 1 to {RECEIVE_BATCH} messages, got {max}")));
        }
        let output = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max as i32)
            .wait_time_seconds(wait.as_secs().min(20) as i32)
            .set_visibility_timeout(visibility)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| QueueError::unavailable(e.into_service_error()))?;
        Ok(output
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                Received {
                    message: Message {
                        id: m.message_id.unwrap_or_default(),
                        body: m.body.unwrap_or_default(),
                        receive_count,
                    },
                    receipt: m.receipt_handle.unwrap_or_default(),
                }
            })
            .collect())
    }
}

impl SqsQueue {
    /// Sends bodies to the queue at `url`, ten a request; answers the message ids in order.
    /// On a FIFO queue, `fifo` names the group and each message's deduplication id.
    async fn send_to(
        &self,
        url: &str,
        bodies: Vec<String>,
        fifo: Option<(&str, Vec<String>)>,
    ) -> Result<Vec<String>, QueueError> {
        let mut ids = Vec::with_capacity(bodies.len());
        for (n, chunk) in bodies.chunks(SEND_BATCH).enumerate() {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    let entry = SendMessageBatchRequestEntry::builder().id(i.to_string()).message_body(body);
                    match &fifo {
                        Some((group, dedup)) => entry
                            .message_group_id(*group)
                            .message_deduplication_id(dedup.get(n * SEND_BATCH + i).cloned().unwrap_or_default()),
                        None => entry,
                    }
                    .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| QueueError::Invalid(e.to_string()))?;
            let output = self
                .client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| QueueError::unavailable(e.into_service_error()))?;
            batch_failed("send", output.failed.len())?;
            let mut sent: Vec<(usize, String)> =
                output.successful.into_iter().map(|s| (s.id.parse().unwrap_or(0), s.message_id)).collect();
            sent.sort();
            ids.extend(sent.into_iter().map(|(_, id)| id));
        }
        Ok(ids)
    }
}

fn batch_failed(what: &str, failed: usize) -> Result<(), QueueError> {
    if failed == 0 { Ok(()) } else { Err(QueueError::Unavailable(format!("{failed} {what} entries failed").into())) }
}

#[async_trait]
impl Queue for SqsQueue {
    #[instrument(skip_all, fields(%queue, count = bodies.len()))]
    async fn send(&self, queue: QueueName, bodies: Vec<String>) -> Result<Vec<String>, QueueError> {
        self.send_to(&self.urls(queue)?.url, bodies, None).await
    }

    #[instrument(skip_all, fields(%queue, group, count = messages.len()))]
    async fn send_fifo(
        &self,
        queue: QueueName,
        group: &str,
        messages: Vec<(String, String)>,
    ) -> Result<Vec<String>, QueueError> {
        let (dedup, bodies): (Vec<String>, Vec<String>) = messages.into_iter().unzip();
        self.send_to(&self.urls(queue)?.url, bodies, Some((group, dedup))).await
    }

    #[instrument(skip_all, fields(%queue, count = bodies.len()))]
    async fn dead_letter(&self, queue: QueueName, bodies: Vec<String>) -> Result<(), QueueError> {
        // A FIFO dead-letter queue takes a group and deduplication ids too.
        let fifo = queue.is_fifo().then(|| {
            let digest = |body: &String| {
                let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes());
                data_encoding::HEXLOWER.encode(hash.as_ref())
            };
            ("dead-letters", bodies.iter().map(digest).collect())
        });
        self.send_to(&self.urls(queue)?.dead_letter_url, bodies, fifo).await.map(|_| ())
    }

    #[instrument(skip_all, fields(%queue))]
    async fn receive(&self, queue: QueueName, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError> {
        self.receive_from(&self.urls(queue)?.url, max, wait, None).await
    }

    #[instrument(skip_all, fields(%queue, count = receipts.len()))]
    async fn complete(&self, queue: QueueName, receipts: &[String]) -> Result<(), QueueError> {
        let url = &self.urls(queue)?.url;
        for chunk in receipts.chunks(SEND_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| DeleteMessageBatchRequestEntry::builder().id(i.to_string()).receipt_handle(r).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| QueueError::Invalid(e.to_string()))?;
            let output = self
                .client
                .delete_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| QueueError::unavailable(e.into_service_error()))?;
            batch_failed("delete", output.failed.len())?;
        }
        Ok(())
    }

    #[instrument(skip_all, fields(%queue, count = receipts.len()))]
    async fn release(&self, queue: QueueName, receipts: &[String]) -> Result<(), QueueError> {
        let url = &self.urls(queue)?.url;
        for chunk in receipts.chunks(SEND_BATCH) {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(r)
                        .visibility_timeout(0)
                        .build()
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| QueueError::Invalid(e.to_string()))?;
            let output = self
                .client
                .change_message_visibility_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| QueueError::unavailable(e.into_service_error()))?;
            batch_failed("visibility", output.failed.len())?;
        }
        Ok(())
    }

    async fn dead_letters(&self, queue: QueueName, max: usize) -> Result<Vec<Received>, QueueError> {
        // Peek: a zero visibility timeout leaves the messages where they are.
        self.receive_from(&self.urls(queue)?.dead_letter_url, max.min(RECEIVE_BATCH), Duration::ZERO, Some(0)).await
    }
}
