//! The `Store` port: a single table of versioned items.
//!
//! Items live under a partition key and a sort key, may carry one secondary-index key
//! pair, and carry a version that every write bumps. Writes are conditional (must not
//! exist, must exist, version is N) and grouped in all-or-nothing transactions of up to
//! [`Store::max_transaction_ops`] operations: [`MAX_TRANSACTION_OPS`] on DynamoDB and so
//! for every caller that does not ask. Items may expire: an expired item is invisible to
//! reads and counts as absent for conditions, whenever the backend physically removes it.

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// DynamoDB's limit for one `TransactWriteItems`: what a transaction may hold on every store.
pub const MAX_TRANSACTION_OPS: usize = 100;
/// Largest item body accepted, below DynamoDB's 400 KB item limit to leave room for keys.
pub const MAX_BODY_BYTES: usize = 350 * 1024;
/// Largest page a query may ask for.
pub const MAX_PAGE: usize = 1000;

/// The primary key of an item.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Key {
    pub pk: String,
    pub sk: String,
}

impl Key {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>) -> Self {
        Self { pk: pk.into(), sk: sk.into() }
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}|{}", self.pk, self.sk)
    }
}

/// An item as stored: keys, optional secondary-index keys, version, expiry and a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub key: Key,
    /// Secondary index (`gsi1`) partition and sort key; both or neither.
    pub index: Option<Key>,
    /// Bumped by every write; 1 for a freshly created item. Ignored on input.
    pub version: u64,
    /// Unix seconds after which the item is gone for readers.
    pub expires_at: Option<i64>,
    /// JSON document.
    pub body: Vec<u8>,
}

impl Item {
    /// An item whose body is `value` serialised as JSON.
    pub fn new<T: Serialize>(key: Key, value: &T) -> Result<Self, StoreError> {
        let body = serde_json::to_vec(value).map_err(|e| StoreError::Codec(e.to_string()))?;
        Ok(Self { key, index: None, version: 0, expires_at: None, body })
    }

    pub fn with_index(mut self, pk: impl Into<String>, sk: impl Into<String>) -> Self {
        self.index = Some(Key::new(pk, sk));
        self
    }

    pub fn expiring_at(mut self, at: DateTime<Utc>) -> Self {
        self.expires_at = Some(at.timestamp());
        self
    }

    /// Decodes the JSON body.
    pub fn decode<T: DeserializeOwned>(&self) -> Result<T, StoreError> {
        serde_json::from_slice(&self.body).map_err(|e| StoreError::Codec(e.to_string()))
    }

    /// Whether the item is expired at `now` (unix seconds).
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// What must hold for a write to apply. Expired items count as absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    /// Applies whatever is stored.
    None,
    /// No live item with this key.
    NotExists,
    /// A live item with this key.
    Exists,
    /// A live item with exactly this version.
    VersionIs(u64),
}

/// One operation of a transaction.
#[derive(Debug, Clone)]
pub enum Write {
    /// Create or replace the item; its version becomes the stored version plus one
    /// (1 when created under `NotExists`, N+1 under `VersionIs(N)`).
    Put { item: Item, condition: Condition },
    /// Remove the item.
    Delete { key: Key, condition: Condition },
    /// Write nothing; only require the condition.
    Check { key: Key, condition: Condition },
}

impl Write {
    pub fn put(item: Item, condition: Condition) -> Self {
        Self::Put { item, condition }
    }
    pub fn delete(key: Key, condition: Condition) -> Self {
        Self::Delete { key, condition }
    }
    pub fn check(key: Key, condition: Condition) -> Self {
        Self::Check { key, condition }
    }
    pub fn key(&self) -> &Key {
        match self {
            Self::Put { item, .. } => &item.key,
            Self::Delete { key, .. } | Self::Check { key, .. } => key,
        }
    }
    pub fn condition(&self) -> Condition {
        match self {
            Self::Put { condition, .. } | Self::Delete { condition, .. } | Self::Check { condition, .. } => *condition,
        }
    }
}

/// Checks a transaction's shape before any backend sees it, so every adapter refuses the
/// same things the same way.
/// `max` is the store's [`Store::max_transaction_ops`].
pub fn validate_transaction(writes: &[Write], max: usize) -> Result<(), StoreError> {
    if writes.is_empty() || writes.len() > max {
        return Err(StoreError::Invalid(format!("a transaction holds 1 to {max} operations, got {}", writes.len())));
    }
    let mut seen = std::collections::HashSet::with_capacity(writes.len());
    for (index, write) in writes.iter().enumerate() {
        let key = write.key();
        if !key_part_ok(&key.pk) || !key_part_ok(&key.sk) {
            return Err(StoreError::Invalid(format!("operation {index}: empty key or a key with a NUL character")));
        }
        if !seen.insert(key) {
            return Err(StoreError::Invalid(format!("operation {index}: the item {key} appears twice")));
        }
        if let Write::Check { condition: Condition::None, .. } = write {
            return Err(StoreError::Invalid(format!("operation {index}: a check needs a condition")));
        }
        if let Write::Put { item, .. } = write {
            if item.body.len() > MAX_BODY_BYTES {
                return Err(StoreError::Invalid(format!(
                    "operation {index}: body of {} bytes exceeds {MAX_BODY_BYTES}",
                    item.body.len()
                )));
            }
            if let Some(index_key) = &item.index
                && (!key_part_ok(&index_key.pk) || !key_part_ok(&index_key.sk))
            {
                return Err(StoreError::Invalid(format!(
                    "operation {index}: empty index key or one with a NUL character"
                )));
            }
        }
    }
    Ok(())
}

/// Keys are non-empty and free of NUL, which the embedded store uses as a separator.
fn key_part_ok(part: &str) -> bool {
    !part.is_empty() && !part.contains('\0')
}

/// Which key a query walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Index {
    Primary,
    /// The one secondary index, `gsi1`.
    Secondary,
}

/// Which sort keys of the partition a query returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Range {
    All,
    Prefix(String),
    /// Inclusive on both ends.
    Between(String, String),
    AtLeast(String),
    AtMost(String),
}

impl Range {
    pub fn contains(&self, sk: &str) -> bool {
        match self {
            Self::All => true,
            Self::Prefix(p) => sk.starts_with(p.as_str()),
            Self::Between(lo, hi) => lo.as_str() <= sk && sk <= hi.as_str(),
            Self::AtLeast(lo) => lo.as_str() <= sk,
            Self::AtMost(hi) => sk <= hi.as_str(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Ascending,
    Descending,
}

/// A query over one partition of the table or of the secondary index.
#[derive(Debug, Clone)]
pub struct Query {
    pub index: Index,
    pub pk: String,
    pub range: Range,
    pub order: Order,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl Query {
    /// Every item of a table partition, ascending, 100 at a time.
    pub fn partition(pk: impl Into<String>) -> Self {
        Self {
            index: Index::Primary,
            pk: pk.into(),
            range: Range::All,
            order: Order::Ascending,
            limit: 100,
            cursor: None,
        }
    }
    /// Every item of a secondary-index partition.
    pub fn secondary(pk: impl Into<String>) -> Self {
        Self { index: Index::Secondary, ..Self::partition(pk) }
    }
    /// Refuses a cursor that another query gave out (another partition, or another index):
    /// cursors travel through clients, and a forged one must not reach the backend.
    pub fn check_cursor(&self) -> Result<(), StoreError> {
        let Some(cursor) = &self.cursor else { return Ok(()) };
        let position = match self.index {
            Index::Primary => Some(&cursor.key),
            Index::Secondary => cursor.index.as_ref(),
        };
        let ours = position.is_some_and(|at| {
            at.pk == self.pk && !matches!(&self.range, Range::Prefix(prefix) if !at.sk.starts_with(prefix.as_str()))
        });
        if ours { Ok(()) } else { Err(StoreError::ForeignCursor) }
    }

    pub fn range(mut self, range: Range) -> Self {
        self.range = range;
        self
    }
    pub fn descending(mut self) -> Self {
        self.order = Order::Descending;
        self
    }
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }
    pub fn after(mut self, cursor: Option<Cursor>) -> Self {
        self.cursor = cursor;
        self
    }
    pub(crate) fn checked_limit(&self) -> Result<usize, StoreError> {
        if self.limit == 0 || self.limit > MAX_PAGE {
            return Err(StoreError::Invalid(format!("limit must be 1 to {MAX_PAGE}, got {}", self.limit)));
        }
        if !key_part_ok(&self.pk) {
            return Err(StoreError::Invalid("query: empty partition key or one with a NUL character".into()));
        }
        Ok(self.limit)
    }
}

/// Where the next page starts: the position of the last item returned. Opaque to callers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The last item's table key.
    pub key: Key,
    /// The last item's secondary-index key, for secondary queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<Key>,
}

impl Cursor {
    pub(crate) fn after_item(item: &Item, index: Index) -> Self {
        Self { key: item.key.clone(), index: if index == Index::Secondary { item.index.clone() } else { None } }
    }

    /// The opaque form handed to API clients.
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(text: &str) -> Result<Self, StoreError> {
        URL_SAFE_NO_PAD
            .decode(text)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or_else(|| StoreError::Invalid("malformed cursor".into()))
    }
}

/// One page of a query: at most `limit` items, and a cursor when more may follow.
#[derive(Debug, Clone)]
pub struct Page {
    pub items: Vec<Item>,
    pub next: Option<Cursor>,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The condition of operation `index` did not hold; nothing was written.
    #[error("condition failed on operation {index} ({key})")]
    ConditionFailed { index: usize, key: Key },
    /// Another transaction touched the same items at the same time; nothing was written.
    #[error("transaction conflict")]
    Conflict,
    /// The query's cursor was given out for another query (a forged or mixed-up cursor).
    #[error("the cursor belongs to another query")]
    ForeignCursor,
    /// The request is malformed (too many operations, an item twice, a bad cursor...).
    #[error("invalid store request: {0}")]
    Invalid(String),
    #[error("cannot encode or decode an item: {0}")]
    Codec(String),
    /// The backend failed or could not be reached; the write may be retried.
    #[error("store unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Whether the same call may succeed later.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Conflict | Self::Unavailable(_))
    }

    pub(crate) fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(e))
    }
}

/// The budget of an optimistic read-decide-write loop. A caller that lost a race (its
/// condition failed, or its transaction met another) calls [`Contention::lost`], which
/// waits a jittered pause that grows with each attempt and answers
/// [`StoreError::Conflict`] once [`Contention::ATTEMPTS`] are spent: a hot item slows its
/// writers down, it never spins one for ever.
#[derive(Debug, Default)]
pub struct Contention {
    attempt: u32,
}

impl Contention {
    pub const ATTEMPTS: u32 = 50;
    /// The longest pause between two attempts.
    const MAX_PAUSE_MICROS: u64 = 20_000;

    /// Waits before the next attempt, or answers the conflict when none is left.
    pub async fn lost(&mut self) -> Result<(), StoreError> {
        self.attempt += 1;
        if self.attempt >= Self::ATTEMPTS {
            return Err(StoreError::Conflict);
        }
        tokio::time::sleep(Self::pause(self.attempt)).await;
        Ok(())
    }

    /// A random pause below a ceiling that doubles with each attempt, so writers that met
    /// once do not meet again in step.
    pub fn pause(attempt: u32) -> std::time::Duration {
        let ceiling = (200u64 << attempt.min(7)).min(Self::MAX_PAUSE_MICROS);
        let mut noise = [0u8; 8];
        let _ = aws_lc_rs::rand::fill(&mut noise);
        std::time::Duration::from_micros(u64::from_le_bytes(noise) % ceiling + 1)
    }
}

/// Changes the item under `key` in place with `change`, keeping its index and expiry: read,
/// change, write on the version read, again after a lost race (within [`Contention`]), so
/// every concurrent change lands. Answers `false` when there is no such item.
pub async fn update<T, F>(store: &dyn Store, key: &Key, change: F) -> Result<bool, StoreError>
where
    T: Serialize + DeserializeOwned,
    F: Fn(&mut T),
{
    let mut contention = Contention::default();
    loop {
        let Some(item) = store.get(key).await? else { return Ok(false) };
        let mut value: T = item.decode()?;
        change(&mut value);
        let changed =
            Item { index: item.index.clone(), expires_at: item.expires_at, ..Item::new(key.clone(), &value)? };
        match store.put(changed, Condition::VersionIs(item.version)).await {
            Ok(()) => return Ok(true),
            Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => contention.lost().await?,
            Err(e) => return Err(e),
        }
    }
}

/// Calls `f` on every item `query` finds, fetching a page of 1,000 at a time.
pub async fn each(
    store: &dyn Store,
    query: &Query,
    mut f: impl FnMut(&Item) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut cursor = None;
    loop {
        let page = store.query(&query.clone().limit(1_000).after(cursor)).await?;
        page.items.iter().try_for_each(&mut f)?;
        match page.next {
            Some(next) => cursor = Some(next),
            None => return Ok(()),
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync {
    /// The most operations one transaction of this store holds: [`MAX_TRANSACTION_OPS`]
    /// unless the backend takes more. Code that runs on every store sizes its transactions
    /// by the constant; a caller that commits as much as fits (the matcher) asks here.
    fn max_transaction_ops(&self) -> usize {
        MAX_TRANSACTION_OPS
    }

    /// The live item under `key`, if any.
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError>;

    /// Applies every operation or none (see [`validate_transaction`] for the shape).
    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError>;

    /// One page of a partition, in sort-key order.
    async fn query(&self, query: &Query) -> Result<Page, StoreError>;

    /// One conditional put.
    async fn put(&self, item: Item, condition: Condition) -> Result<(), StoreError> {
        self.transact(vec![Write::put(item, condition)]).await
    }

    /// One conditional delete.
    async fn delete(&self, key: Key, condition: Condition) -> Result<(), StoreError> {
        self.transact(vec![Write::delete(key, condition)]).await
    }
}

#[cfg(test)]
mod contention_tests {
    use super::{Contention, StoreError};

    #[tokio::test]
    async fn a_writer_that_keeps_losing_gives_up_with_a_conflict_after_its_attempts() {
        let mut contention = Contention::default();
        for _ in 1..Contention::ATTEMPTS {
            contention.lost().await.unwrap();
        }
        assert!(matches!(contention.lost().await, Err(StoreError::Conflict)));
    }

    #[test]
    fn pauses_grow_with_the_attempt_and_stay_under_the_cap() {
        for attempt in 0..100 {
            let pause = Contention::pause(attempt);
            let ceiling = (200u64 << attempt.min(7)).min(20_000);
            assert!(pause.as_micros() >= 1 && pause.as_micros() <= u128::from(ceiling), "{attempt}: {pause:?}");
        }
    }
}
