//! The append-only audit log: every operator action and security event, each entry
//! hash-chained to the one before, so an edited or removed entry shows.

use std::sync::Arc;

use aws_lc_rs::digest::{SHA256, digest};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ports::store::{Condition, Contention, Cursor, Item, Key, Query, Range, StoreError, Write};
use crate::ports::{Clock, Store};

const PARTITION: &str = "AUDIT";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What happened, before it is chained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// User id of whoever acted, or `system`.
    pub actor: String,
    /// e.g. `change-request.approve`, `session.reuse-detected`.
    pub action: String,
    /// What it acted on, e.g. `user:usr_…`.
    pub target: String,
    /// `allowed`, `denied`, or what came of it.
    pub decision: String,
    pub reason: String,
}

impl Event {
    /// An action taken, and what came of it in words.
    pub fn applied(actor: &str, action: &str, target: &str, reason: impl Into<String>) -> Self {
        Self {
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            decision: "applied".into(),
            reason: reason.into(),
        }
    }

    /// An operator action the access policy refused.
    pub fn denied(actor: &str, action: &str, target: &str, reason: &str) -> Self {
        Self {
            actor: actor.into(),
            action: action.into(),
            target: target.into(),
            decision: "denied".into(),
            reason: reason.into(),
        }
    }
}

/// One entry as stored and read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub decision: String,
    pub reason: String,
    /// Hash of the entry before (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over `prev_hash` and this entry's fields.
    pub hash: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

fn head_key() -> Key {
    Key::new(PARTITION, "HEAD")
}

fn entry_key(seq: u64) -> Key {
    Key::new(PARTITION, format!("E#{seq:020}"))
}

/// The chained hash of an entry's content.
fn chain_hash(prev_hash: &str, seq: u64, at: &DateTime<Utc>, event: &Event) -> String {
    let content = serde_json::json!([
        prev_hash,
        seq,
        at.to_rfc3339(),
        event.actor,
        event.action,
        event.target,
        event.decision,
        event.reason
    ]);
    digest(&SHA256, content.to_string().as_bytes()).as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub struct AuditLog {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl AuditLog {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// The writes that append `event`: include them in the transaction of the change they
    /// record, and retry the whole transaction if it fails on a condition.
    pub async fn prepare(&self, event: &Event) -> Result<Vec<Write>, StoreError> {
        let (head, condition) = match self.store.get(&head_key()).await? {
            Some(item) => (item.decode::<Head>()?, Condition::VersionIs(item.version)),
            None => (Head { seq: 0, hash: GENESIS.to_owned() }, Condition::NotExists),
        };
        let seq = head.seq + 1;
        let at = self.clock.now();
        let hash = chain_hash(&head.hash, seq, &at, event);
        let entry = AuditEntry {
            seq,
            at,
            actor: event.actor.clone(),
            action: event.action.clone(),
            target: event.target.clone(),
            decision: event.decision.clone(),
            reason: event.reason.clone(),
            prev_hash: head.hash,
            hash: hash.clone(),
        };
        Ok(vec![
            Write::put(Item::new(head_key(), &Head { seq, hash })?, condition),
            Write::put(Item::new(entry_key(seq), &entry)?, Condition::NotExists),
        ])
    }

    /// Appends `event` on its own.
    pub async fn append(&self, event: Event) -> Result<(), StoreError> {
        let mut contention = Contention::default();
        loop {
            match self.store.transact(self.prepare(&event).await?).await {
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => contention.lost().await?,
                other => return other,
            }
        }
    }

    /// Newest entries first.
    pub async fn page(
        &self,
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<(Vec<AuditEntry>, Option<Cursor>), StoreError> {
        let query =
            Query::partition(PARTITION).range(Range::Prefix("E#".into())).descending().limit(limit).after(cursor);
        let page = self.store.query(&query).await?;
        let entries = page.items.iter().map(Item::decode).collect::<Result<Vec<AuditEntry>, _>>()?;
        Ok((entries, page.next))
    }

    /// Walks the whole chain; answers the sequence number of the first entry that does not
    /// match its hash or its predecessor, or `None` if the chain is intact.
    pub async fn verify(&self) -> Result<Option<u64>, StoreError> {
        let mut prev_hash = GENESIS.to_owned();
        let mut expected_seq = 1;
        let mut cursor = None;
        loop {
            let query = Query::partition(PARTITION).range(Range::Prefix("E#".into())).limit(500).after(cursor);
            let page = self.store.query(&query).await?;
            for item in &page.items {
                let entry: AuditEntry = item.decode()?;
                let event = Event {
                    actor: entry.actor.clone(),
                    action: entry.action.clone(),
                    target: entry.target.clone(),
                    decision: entry.decision.clone(),
                    reason: entry.reason.clone(),
                };
                let intact = entry.seq == expected_seq
                    && entry.prev_hash == prev_hash
                    && entry.hash == chain_hash(&prev_hash, entry.seq, &entry.at, &event);
                if !intact {
                    return Ok(Some(expected_seq));
                }
                prev_hash = entry.hash;
                expected_seq += 1;
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        // The head must point at the last entry: removing the newest entries shows too.
        let head = self.store.get(&head_key()).await?.map(|item| item.decode::<Head>()).transpose()?;
        match head {
            Some(head) if head.seq != expected_seq - 1 || head.hash != prev_hash => Ok(Some(expected_seq)),
            _ => Ok(None),
        }
    }
}
