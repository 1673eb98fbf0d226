//! The `Queue` port in process: SQS's semantics (visibility timeout, receive count,
//! dead-letter after `max_receives`) without a network. Messages live in memory; what
//! must survive a restart is written to the store first (the outbox) and sent again.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::ports::queue::{Message, Queue, QueueError, QueueName, Received};

/// The most messages one receive answers in process: a consumer that handles a batch as
/// one unit does fewer, larger units. The matcher writes a batch's commands in steps of
/// one store transaction each and works out a step while the one before is written, which
/// overlaps only within a batch: 1,000 commands are several steps.
pub const RECEIVE_MAX: usize = 1_000;

struct Slot {
    message: Message,
    visible_at: Instant,
}

#[derive(Default)]
struct Lane {
    ready: VecDeque<Slot>,
    in_flight: HashMap<String, Slot>,
    dead: VecDeque<Message>,
}

impl Lane {
    /// Puts messages whose visibility timeout ran out back in line.
    fn reap(&mut self, now: Instant) {
        let expired: Vec<String> =
            self.in_flight.iter().filter(|(_, s)| s.visible_at <= now).map(|(r, _)| r.clone()).collect();
        for receipt in expired {
            if let Some(slot) = self.in_flight.remove(&receipt) {
                self.ready.push_back(slot);
            }
        }
    }
}

/// In-process queues, one lane per [`QueueName`], each with its dead-letter lane.
pub struct MemoryQueue {
    lanes: Mutex<HashMap<QueueName, Lane>>,
    arrived: Notify,
    max_receives: u32,
    visibility: Duration,
    sequence: AtomicU64,
}

impl MemoryQueue {
    /// `max_receives` deliveries before a message dead-letters; `visibility` is how long a
    /// received message stays hidden if its consumer neither completes nor releases it.
    pub fn new(max_receives: u32, visibility: Duration) -> Self {
        Self { lanes: Mutex::default(), arrived: Notify::new(), max_receives, visibility, sequence: AtomicU64::new(0) }
    }

    fn next(&self, prefix: &str) -> String {
        format!("{prefix}-{}", self.sequence.fetch_add(1, Ordering::Relaxed) + 1)
    }

    fn lanes(&self) -> std::sync::MutexGuard<'_, HashMap<QueueName, Lane>> {
        self.lanes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, queue: QueueName, max: usize) -> Vec<Received> {
        let now = Instant::now();
        let mut lanes = self.lanes();
        let lane = lanes.entry(queue).or_default();
        lane.reap(now);
        let mut out = Vec::new();
        while out.len() < max {
            let Some(mut slot) = lane.ready.pop_front() else { break };
            if slot.message.receive_count >= self.max_receives {
                lane.dead.push_back(slot.message);
                continue;
            }
            slot.message.receive_count += 1;
            slot.visible_at = now + self.visibility;
            let receipt = self.next("receipt");
            out.push(Received { message: slot.message.clone(), receipt: receipt.clone() });
            lane.in_flight.insert(receipt, slot);
        }
        out
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    fn receive_max(&self) -> usize {
        RECEIVE_MAX
    }

    async fn send(&self, queue: QueueName, bodies: Vec<String>) -> Result<Vec<String>, QueueError> {
        let now = Instant::now();
        let ids: Vec<String> = bodies.iter().map(|_| self.next("msg")).collect();
        {
            let mut lanes = self.lanes();
            let lane = lanes.entry(queue).or_default();
            for (id, body) in ids.iter().zip(bodies) {
                lane.ready
                    .push_back(Slot { message: Message { id: id.clone(), body, receive_count: 0 }, visible_at: now });
            }
        }
        self.arrived.notify_waiters();
        Ok(ids)
    }

    async fn receive(&self, queue: QueueName, max: usize, wait: Duration) -> Result<Vec<Received>, QueueError> {
        if max == 0 || max > RECEIVE_MAX {
            return Err(QueueError::Invalid(format!("receive takes 1 to {RECEIVE_MAX} messages, got {max}")));
        }
        let deadline = Instant::now() + wait;
        loop {
            let arrived = self.arrived.notified();
            let got = self.take(queue, max);
            let now = Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            // Wake on a send, or poll again soon for in-flight messages timing out.
            let _ = tokio::time::timeout((deadline - now).min(Duration::from_millis(100)), arrived).await;
        }
    }

    async fn complete(&self, queue: QueueName, receipts: &[String]) -> Result<(), QueueError> {
        let mut lanes = self.lanes();
        let lane = lanes.entry(queue).or_default();
        for receipt in receipts {
            lane.in_flight.remove(receipt);
        }
        Ok(())
    }

    async fn release(&self, queue: QueueName, receipts: &[String]) -> Result<(), QueueError> {
        {
            let mut lanes = self.lanes();
            let lane = lanes.entry(queue).or_default();
            for receipt in receipts {
                if let Some(slot) = lane.in_flight.remove(receipt) {
                    lane.ready.push_back(slot);
                }
            }
        }
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn dead_letter(&self, queue: QueueName, bodies: Vec<String>) -> Result<(), QueueError> {
        let mut lanes = self.lanes();
        let lane = lanes.entry(queue).or_default();
        for body in bodies {
            lane.dead.push_back(Message { id: self.next("msg"), body, receive_count: 0 });
        }
        Ok(())
    }

    async fn dead_letters(&self, queue: QueueName, max: usize) -> Result<Vec<Received>, QueueError> {
        let lanes = self.lanes();
        Ok(lanes
            .get(&queue)
            .map(|lane| {
                lane.dead.iter().take(max).map(|m| Received { message: m.clone(), receipt: String::new() }).collect()
            })
            .unwrap_or_default())
    }
}
