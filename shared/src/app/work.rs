//! The work index: a deal's long-running work (its allocation run, its settlement) carries
//! a secondary-index key by when it last moved, while it is in progress. The sweep reads
//! the work that stood still longer than [`NUDGE_AFTER`] and sends the message that
//! resumes it, which also covers messages lost to a dead-letter queue.

use chrono::{DateTime, TimeDelta, Utc};

use super::failure::Permanence;
use super::ledger::sortable;
use crate::ports::queue::{QueueError, QueueName};
use crate::ports::store::{Condition, Item, Query, Range, StoreError};
use crate::ports::{Clock, Queue, Store};

/// How long work may stand still before the sweep nudges it.
pub const NUDGE_AFTER: TimeDelta = TimeDelta::seconds(10);

/// `item` listed on the work index `partition` as last moved at `touched`.
pub fn listed(item: Item, partition: &str, touched: DateTime<Utc>, deal_id: &str) -> Item {
    item.with_index(partition, format!("{}#{deal_id}", sortable(touched)))
}

#[derive(Debug, thiserror::Error)]
pub enum NudgeError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

impl Permanence for NudgeError {
    fn is_permanent(&self) -> bool {
        match self {
            Self::Store(e) => e.is_permanent(),
            Self::Queue(e) => e.is_permanent(),
        }
    }
}

/// Sends `message(deal_id)` to `queue` for up to 100 items of `partition` that stood still,
/// listing each as moved now first, so it is nudged once per [`NUDGE_AFTER`] however often
/// the sweep runs. Answers how many.
pub async fn nudge_stale(
    store: &dyn Store,
    clock: &dyn Clock,
    queue: &dyn Queue,
    (partition, to): (&str, QueueName),
    message: impl Fn(&str) -> String,
) -> Result<usize, NudgeError> {
    let now = clock.now();
    let before = format!("{}#\u{10FFFF}", sortable(now - NUDGE_AFTER));
    let page = store.query(&Query::secondary(partition).range(Range::AtMost(before)).limit(100)).await?;
    let mut bodies = Vec::with_capacity(page.items.len());
    for item in &page.items {
        // The index's sort key is `<when>#<deal>`, and times hold no `#`.
        let Some((_, deal_id)) = item.index.as_ref().and_then(|i| i.sk.split_once('#')) else { continue };
        let deal_id = deal_id.to_owned();
        let relisted = listed(Item { index: None, ..item.clone() }, partition, now, &deal_id);
        match store.put(relisted, Condition::VersionIs(item.version)).await {
            Ok(()) => bodies.push(message(&deal_id)),
            // It moved meanwhile: not standing still.
            Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let nudged = bodies.len();
    if nudged > 0 {
        queue.send(to, bodies).await?;
    }
    Ok(nudged)
}
