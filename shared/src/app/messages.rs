//! What the allocation and settlement queues carry, and the helpers that send it: the two
//! runs hand work to each other through these, so neither imports the other for them.

use serde::{Deserialize, Serialize};

use crate::ports::Queue;
use crate::ports::queue::{QueueError, QueueName};
use crate::ports::store::Cursor;

/// What the allocation queue carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AllocationMessage {
    /// Start the run of a closed deal (or carry on with it).
    Start { deal_id: String },
    /// Resume a run that stood still: as `start`, and batches are sent again (those done
    /// already count once).
    Resume { deal_id: String },
    /// The `BATCH` live subscriptions after `after` in the deal's book.
    Batch { deal_id: String, index: u64, after: Option<Cursor> },
    /// Continue the leftover pass.
    Leftover { deal_id: String },
}

impl AllocationMessage {
    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Sends a deal's allocation `start` (the sweep does, for a closed deal).
pub async fn request_allocation_start(queue: &dyn Queue, deal_id: &str) -> Result<(), QueueError> {
    let start = AllocationMessage::Start { deal_id: deal_id.to_owned() };
    queue.send(QueueName::Allocation, vec![start.body()]).await.map(|_| ())
}

/// What the settlement queue carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SettlementMessage {
    /// Start the settlement of an allocated deal.
    Start { deal_id: String },
    /// Do the next steps of a deal's settlement.
    Advance { deal_id: String },
}

impl SettlementMessage {
    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Sends a deal's settlement `start`.
pub async fn request_settlement_start(queue: &dyn Queue, deal_id: &str) -> Result<(), QueueError> {
    let start = SettlementMessage::Start { deal_id: deal_id.to_owned() };
    queue.send(QueueName::Settlement, vec![start.body()]).await.map(|_| ())
}

pub(crate) async fn request_settlement_advance(queue: &dyn Queue, deal_id: &str) -> Result<(), QueueError> {
    let advance = SettlementMessage::Advance { deal_id: deal_id.to_owned() };
    queue.send(QueueName::Settlement, vec![advance.body()]).await.map(|_| ())
}
