//! The `Queue` contract, run against the in-process queue and SQS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use shared::app::consumer::{BatchHandler, pump_once};
use shared::ports::Queue;
use shared::ports::queue::{Message, QueueError, QueueName, RECEIVE_BATCH, Received};

/// Deliveries before a message dead-letters, in every fixture.
const MAX_RECEIVES: u32 = 3;
const Q: QueueName = QueueName::Allocation;

struct Fixture {
    queue: Arc<dyn Queue>,
}

mod fixtures {
    use super::*;
    use shared::adapters::aws::SqsQueue;
    use shared::adapters::embedded::MemoryQueue;

    pub async fn embedded() -> Fixture {
        Fixture { queue: Arc::new(MemoryQueue::new(MAX_RECEIVES, Duration::from_secs(30))) }
    }

    pub async fn aws() -> Fixture {
        let client = aws_sdk_sqs::Client::new(&support::aws_config().await);
        let urls = SqsQueue::create(&client, &support::unique("queue"), MAX_RECEIVES, Duration::from_secs(30))
            .await
            .expect("create queues in the emulator");
        Fixture { queue: Arc::new(SqsQueue::new(client, HashMap::from([(Q, urls)]))) }
    }
}

contract!(
    sent_messages_arrive_once_and_completed_ones_never_return,
    a_released_message_returns_with_a_higher_receive_count,
    a_partial_batch_failure_returns_only_the_failed_messages,
    a_poisoned_message_reaches_the_dead_letter_queue_after_max_receives_and_nothing_else_does,
    a_receive_answers_up_to_the_queues_own_maximum,
);

/// Receives until `count` messages came or a few seconds passed (SQS may answer short).
async fn receive_n(queue: &dyn Queue, count: usize) -> Vec<Received> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut got = Vec::new();
    while got.len() < count && Instant::now() < deadline {
        got.extend(queue.receive(Q, (count - got.len()).min(10), Duration::from_secs(1)).await.unwrap());
    }
    got
}

fn bodies(received: &[Received]) -> Vec<String> {
    let mut bodies: Vec<String> = received.iter().map(|r| r.message.body.clone()).collect();
    bodies.sort();
    bodies
}

fn receipts(received: &[Received]) -> Vec<String> {
    received.iter().map(|r| r.receipt.clone()).collect()
}

async fn sent_messages_arrive_once_and_completed_ones_never_return(f: Fixture) {
    let sent: Vec<String> = (0..25).map(|i| format!("{{\"batch\":{i:02}}}")).collect();
    let ids = f.queue.send(Q, sent.clone()).await.unwrap();
    assert_eq!(ids.len(), 25);
    let got = receive_n(f.queue.as_ref(), 25).await;
    assert_eq!(bodies(&got), sent);
    assert!(got.iter().all(|r| r.message.receive_count == 1));
    f.queue.complete(Q, &receipts(&got)).await.unwrap();
    assert!(f.queue.receive(Q, 10, Duration::from_secs(1)).await.unwrap().is_empty());
    assert!(f.queue.dead_letters(Q, 10).await.unwrap().is_empty());
}

async fn a_released_message_returns_with_a_higher_receive_count(f: Fixture) {
    f.queue.send(Q, vec!["again".into()]).await.unwrap();
    let first = receive_n(f.queue.as_ref(), 1).await;
    assert_eq!(first[0].message.receive_count, 1);
    f.queue.release(Q, &receipts(&first)).await.unwrap();
    let second = receive_n(f.queue.as_ref(), 1).await;
    assert_eq!(second.len(), 1);
    assert_eq!((second[0].message.id.as_str(), second[0].message.receive_count), (first[0].message.id.as_str(), 2));
}

/// Fails the messages whose body starts with "fail", and counts what it handled.
#[derive(Default)]
struct Picky {
    handled: Mutex<HashMap<String, u32>>,
    failed: Mutex<HashMap<String, u32>>,
}

#[async_trait]
impl BatchHandler for Picky {
    async fn handle(&self, batch: &[Message]) -> Vec<String> {
        let mut failed_ids = Vec::new();
        for message in batch {
            let tally = if message.body.starts_with("fail") {
                failed_ids.push(message.id.clone());
                &self.failed
            } else {
                &self.handled
            };
            *tally.lock().unwrap().entry(message.body.clone()).or_default() += 1;
        }
        failed_ids
    }
}

async fn a_partial_batch_failure_returns_only_the_failed_messages(f: Fixture) {
    let sent: Vec<String> = (0..8).map(|i| format!("ok-{i}")).chain(["fail-a".into(), "fail-b".into()]).collect();
    f.queue.send(Q, sent).await.unwrap();
    let handler = Picky::default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while handler.handled.lock().unwrap().len() + handler.failed.lock().unwrap().len() < 10 && Instant::now() < deadline
    {
        pump_once(f.queue.as_ref(), Q, &handler, Duration::from_secs(1)).await.unwrap();
    }
    let back = receive_n(f.queue.as_ref(), 2).await;
    assert_eq!(bodies(&back), ["fail-a", "fail-b"]);
    assert!(back.iter().all(|r| r.message.receive_count == 2));
    assert!(handler.handled.lock().unwrap().values().all(|n| *n == 1));
}

async fn a_poisoned_message_reaches_the_dead_letter_queue_after_max_receives_and_nothing_else_does(f: Fixture) {
    let sent: Vec<String> = ["ok-1", "fail-poison", "ok-2", "ok-3", "ok-4"].map(String::from).to_vec();
    f.queue.send(Q, sent).await.unwrap();
    let handler = Picky::default();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Pump until the poisoned message was tried MAX_RECEIVES times and the queue ran dry.
    loop {
        let received = pump_once(f.queue.as_ref(), Q, &handler, Duration::from_secs(1)).await.unwrap();
        let tries = handler.failed.lock().unwrap().get("fail-poison").copied().unwrap_or(0);
        if (received == 0 && tries >= MAX_RECEIVES) || Instant::now() > deadline {
            break;
        }
    }
    // One more receive moves it (SQS moves a message on the receive after the last allowed).
    assert!(f.queue.receive(Q, 10, Duration::from_secs(1)).await.unwrap().is_empty());
    let dead = f.queue.dead_letters(Q, 10).await.unwrap();
    assert_eq!(bodies(&dead), ["fail-poison"]);
    assert_eq!(handler.failed.lock().unwrap().get("fail-poison"), Some(&MAX_RECEIVES));
    let handled = handler.handled.lock().unwrap().clone();
    assert_eq!(handled, ["ok-1", "ok-2", "ok-3", "ok-4"].map(|b| (b.to_owned(), 1)).into_iter().collect());
}

/// SQS answers at most 10 a receive; the in-process queue 100. Asking for more is refused.
async fn a_receive_answers_up_to_the_queues_own_maximum(f: Fixture) {
    let most = f.queue.receive_max();
    assert!(most >= RECEIVE_BATCH, "every queue answers what SQS answers");
    assert!(matches!(f.queue.receive(Q, most + 1, Duration::ZERO).await, Err(QueueError::Invalid(_))));
    let bodies: Vec<String> = (0..most + 1).map(|i| format!("m{i}")).collect();
    f.queue.send(Q, bodies).await.unwrap();
    let (mut got, mut largest) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while got < most && Instant::now() < deadline {
        let batch = f.queue.receive(Q, most, Duration::from_secs(1)).await.unwrap();
        assert!(batch.len() <= most, "{} messages in one receive", batch.len());
        got += batch.len();
        largest = largest.max(batch.len());
    }
    assert!(got >= most, "{got} of {} messages received", most + 1);
    if most > RECEIVE_BATCH {
        assert!(largest > RECEIVE_BATCH, "one receive answered more than SQS would: {largest}");
    }
}
