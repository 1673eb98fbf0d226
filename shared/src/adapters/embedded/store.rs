//! The `Store` port on fjall, a log-structured (LSM) key-value store: a folder under the
//! data directory, or a throwaway folder for tests.
//!
//! Writes go through one writer thread that commits in groups: it takes every request
//! already waiting, checks and applies them one after another against the store as the
//! requests before it left it (each request all-or-nothing), then writes the group as one
//! atomic batch to the journal and syncs it once. Under load, one fsync covers many
//! requests; a lone request still commits at once. A write costs its own bytes in the
//! journal, not a page of a tree (decision 16). Reads use snapshots and never wait for the
//! writer; a batch becomes visible whole.
//!
//! Layout: `items` maps `pk NUL sk` to the encoded item; `gsi1` maps
//! `gpk NUL gsk NUL pk NUL sk` to nothing; `expiry` maps `expires_at(be) pk NUL sk` to
//! nothing so that a sweep finds expired items without a scan. NUL never occurs in a key
//! (the port refuses it) and `0xFF` never occurs in UTF-8, so byte order on these keys is
//! exactly DynamoDB's order on (pk, sk).

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use async_trait::async_trait;
use fjall::config::PinningPolicy;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, Readable};
use tokio::sync::oneshot;

use crate::ports::Clock;
use crate::ports::store::{
    Condition, Cursor, Index, Item, Key, Order, Page, Query, Range, Store, StoreError, Write, validate_transaction,
};

/// The most operations one transaction holds here: a batch has no limit of its own, this
/// one keeps a request's checks and its memory bounded.
pub const MAX_TRANSACTION_OPS: usize = 1_000;
/// Threads that flush and compact in the background: one does both in turn (with two, an
/// idle worker of fjall 3.1 hands compaction requests back and forth in a busy loop: half
/// of the workers' CPU samples in the trading benchmark's profile).
const BACKGROUND_WORKERS: usize = 1;
/// How many waiting requests one commit may take.
const GROUP_COMMIT_MAX: usize = 512;
/// How often an idle writer sweeps expired items.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

/// One transaction for the writer thread, and where its outcome goes.
struct Request {
    writes: Vec<Write>,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

/// The block cache of a store, unless `DABS_STORE_CACHE_MB` says otherwise.
pub const CACHE_BYTES: usize = 16 * 1024 * 1024;
/// What one table buffers in memory before it is written out as a sorted file, unless
/// `DABS_STORE_MEMTABLE_MB` says otherwise. With the cache, this bounds the store's memory
/// but for the pinned filters and indexes (about 1.3 bytes a key, below).
const MEMTABLE_BYTES: usize = 16 * 1024 * 1024;

/// `default`, or the whole mebibytes the environment variable `name` gives.
fn mebibytes(name: &str, default: usize) -> u64 {
    let bytes =
        std::env::var(name).ok().and_then(|mb| mb.parse::<usize>().ok()).map_or(default, |mb| mb.max(1) * 1024 * 1024);
    bytes as u64
}

/// The three tables of the layout above.
#[derive(Clone)]
struct Tables {
    items: Keyspace,
    gsi: Keyspace,
    expiry: Keyspace,
}

/// The embedded store. Cheap to clone; the writer thread stops when the last clone drops.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Database,
    tables: Tables,
    writer: mpsc::Sender<Request>,
    clock: Arc<dyn Clock>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in the folder `path`; every commit is synced to disk
    /// before it answers.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let db = Database::builder(path)
            .cache_size(mebibytes("DABS_STORE_CACHE_MB", CACHE_BYTES))
            .worker_threads(BACKGROUND_WORKERS)
            .open()
            .map_err(storage)?;
        Self::start(db, Some(PersistMode::SyncData), clock)
    }

    /// A store in a fresh temporary folder that is removed when the store drops, for tests:
    /// commits are not synced (nothing of it outlives the process).
    pub fn temporary(clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let folder: PathBuf = std::env::temp_dir().join(format!(
            "dabs-store-{}-{}-{}",
            std::process::id(),
            nanos.as_nanos(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let db = Database::builder(&folder)
            .temporary(true)
            .cache_size(4 * 1024 * 1024)
            .worker_threads(BACKGROUND_WORKERS)
            .open()
            .map_err(storage)?;
        Self::start(db, None, clock)
    }

    fn start(db: Database, durability: Option<PersistMode>, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        // Every table file's filter and index stay in memory (about 1.3 bytes a key): a
        // point read then costs a filter probe per file and one data block, never a whole
        // filter read back from disk, which is what a cold filter costs at every level.
        let memtable = mebibytes("DABS_STORE_MEMTABLE_MB", MEMTABLE_BYTES);
        let options = || {
            KeyspaceCreateOptions::default()
                .max_memtable_size(memtable)
                .filter_block_pinning_policy(PinningPolicy::all(true))
                .index_block_pinning_policy(PinningPolicy::all(true))
        };
        let table = |name: &str| db.keyspace(name, options).map_err(storage);
        let tables = Tables { items: table("items")?, gsi: table("gsi1")?, expiry: table("expiry")? };
        let (writer, requests) = mpsc::channel();
        let (writer_db, writer_tables, writer_clock) = (db.clone(), tables.clone(), clock.clone());
        std::thread::Builder::new()
            .name("embedded-store-writer".into())
            .spawn(move || write_loop(&writer_db, &writer_tables, durability, writer_clock.as_ref(), &requests))
            .map_err(StoreError::unavailable)?;
        Ok(Self { db, tables, writer, clock })
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp()
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    fn max_transaction_ops(&self) -> usize {
        MAX_TRANSACTION_OPS
    }

    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let found = self.tables.items.get(primary(key)).map_err(storage)?;
        let now = self.now();
        Ok(found.map(|v| decode(key.clone(), &v)).filter(|item| !item.is_expired(now)))
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        validate_transaction(&writes, self.max_transaction_ops())?;
        let (reply, answer) = oneshot::channel();
        self.writer.send(Request { writes, reply }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        let limit = query.checked_limit()?;
        let now = self.now();
        let snapshot = self.db.snapshot();
        let (lower, upper) = bounds(query)?;
        let mut found = Vec::with_capacity(limit + 1);
        let mut keep = |item: Item| {
            if !item.is_expired(now) {
                found.push(item);
            }
            found.len() > limit
        };
        let table = match query.index {
            Index::Primary => &self.tables.items,
            Index::Secondary => &self.tables.gsi,
        };
        for entry in ordered(snapshot.range(table, (lower, upper)), query.order) {
            let (k, v) = entry.into_inner().map_err(storage)?;
            let item = match query.index {
                Index::Primary => decode(split_primary(&k)?, &v),
                Index::Secondary => {
                    let key = split_secondary(&k)?;
                    // Written in the same batch as its index entry, so always present.
                    let Some(v) = snapshot.get(&self.tables.items, primary(&key)).map_err(storage)? else {
                        continue;
                    };
                    decode(key, &v)
                }
            };
            if keep(item) {
                break;
            }
        }
        let next = if found.len() > limit {
            found.truncate(limit);
            found.last().map(|item| Cursor::after_item(item, query.index))
        } else {
            None
        };
        Ok(Page { items: found, next })
    }
}

fn ordered<'a, I: DoubleEndedIterator + 'a>(iter: I, order: Order) -> Box<dyn Iterator<Item = I::Item> + 'a> {
    match order {
        Order::Ascending => Box::new(iter),
        Order::Descending => Box::new(iter.rev()),
    }
}

/// Lower and upper bounds of a walk over encoded keys.
type ByteRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The byte range a query walks: the partition and sort-key range, narrowed by the cursor.
fn bounds(query: &Query) -> Result<ByteRange, StoreError> {
    let mut base = query.pk.as_bytes().to_vec();
    base.push(0);
    let with = |suffix: &[&[u8]]| {
        let mut v = base.clone();
        for s in suffix {
            v.extend_from_slice(s);
        }
        v
    };
    // Sort keys are UTF-8 (never 0xFF); on the index a NUL follows the sort key, so
    // "everything whose sort key is exactly `hi`" ends before `hi` + 0x01.
    let end_of = |hi: &str| match query.index {
        Index::Primary => Bound::Included(with(&[hi.as_bytes()])),
        Index::Secondary => Bound::Excluded(with(&[hi.as_bytes(), &[1]])),
    };
    let end = Bound::Excluded(with(&[&[0xFF]]));
    let (lower, upper) = match &query.range {
        Range::All => (Bound::Included(base.clone()), end),
        Range::Prefix(p) => (Bound::Included(with(&[p.as_bytes()])), Bound::Excluded(with(&[p.as_bytes(), &[0xFF]]))),
        Range::Between(lo, hi) => (Bound::Included(with(&[lo.as_bytes()])), end_of(hi)),
        Range::AtLeast(lo) => (Bound::Included(with(&[lo.as_bytes()])), end),
        Range::AtMost(hi) => (Bound::Included(base.clone()), end_of(hi)),
    };
    query.check_cursor()?;
    let Some(cursor) = &query.cursor else {
        return Ok((lower, upper));
    };
    let position = match query.index {
        Index::Primary => primary(&cursor.key),
        Index::Secondary => {
            let index = cursor.index.as_ref().ok_or(StoreError::ForeignCursor)?;
            secondary(index, &cursor.key)
        }
    };
    if !position.starts_with(&base) {
        return Err(StoreError::ForeignCursor);
    }
    Ok(match query.order {
        Order::Ascending => (Bound::Excluded(position), upper),
        Order::Descending => (lower, Bound::Excluded(position)),
    })
}

fn primary(key: &Key) -> Vec<u8> {
    let mut v = Vec::with_capacity(key.pk.len() + key.sk.len() + 1);
    v.extend_from_slice(key.pk.as_bytes());
    v.push(0);
    v.extend_from_slice(key.sk.as_bytes());
    v
}

fn secondary(index: &Key, key: &Key) -> Vec<u8> {
    let mut v = Vec::with_capacity(index.pk.len() + index.sk.len() + key.pk.len() + key.sk.len() + 3);
    for (i, part) in [&index.pk, &index.sk, &key.pk, &key.sk].into_iter().enumerate() {
        if i > 0 {
            v.push(0);
        }
        v.extend_from_slice(part.as_bytes());
    }
    v
}

fn expiry_key(at: i64, key: &Key) -> Vec<u8> {
    // Sign bit flipped so that byte order equals numeric order for negative times too.
    let mut v = ((at as u64) ^ (1 << 63)).to_be_bytes().to_vec();
    v.extend_from_slice(&primary(key));
    v
}

fn utf8(bytes: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| StoreError::Codec("key is not UTF-8".into()))
}

fn split_primary(bytes: &[u8]) -> Result<Key, StoreError> {
    let mut parts = bytes.splitn(2, |b| *b == 0);
    match (parts.next(), parts.next()) {
        (Some(pk), Some(sk)) => Ok(Key::new(utf8(pk)?, utf8(sk)?)),
        _ => Err(StoreError::Codec("malformed primary key".into())),
    }
}

fn split_secondary(bytes: &[u8]) -> Result<Key, StoreError> {
    let parts: Vec<&[u8]> = bytes.splitn(4, |b| *b == 0).collect();
    match parts.as_slice() {
        [_, _, pk, sk] => Ok(Key::new(utf8(pk)?, utf8(sk)?)),
        _ => Err(StoreError::Codec("malformed index key".into())),
    }
}

// Value layout: version u64 | expires_at i64 (i64::MIN = never) | index flag u8
// [| gpk len u32 | gpk | gsk len u32 | gsk] | body.
fn encode(item: &Item, version: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(item.body.len() + 32);
    v.extend_from_slice(&version.to_le_bytes());
    v.extend_from_slice(&item.expires_at.unwrap_or(i64::MIN).to_le_bytes());
    match &item.index {
        None => v.push(0),
        Some(index) => {
            v.push(1);
            for part in [&index.pk, &index.sk] {
                v.extend_from_slice(&(part.len() as u32).to_le_bytes());
                v.extend_from_slice(part.as_bytes());
            }
        }
    }
    v.extend_from_slice(&item.body);
    v
}

/// What the writer needs of a stored item to check a condition and replace it: everything
/// but the body.
struct Head {
    key: Key,
    version: u64,
    expires_at: Option<i64>,
    index: Option<Key>,
}

impl Head {
    fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

/// Decodes a value this module wrote; the layout is ours, so a short value is a bug that
/// decodes to an empty item rather than a panic.
fn decode(key: Key, bytes: &[u8]) -> Item {
    let (head, body) = decode_head(key, bytes);
    Item { key: head.key, index: head.index, version: head.version, expires_at: head.expires_at, body: body.to_vec() }
}

/// The head of a value this module wrote, and its body.
fn decode_head(key: Key, bytes: &[u8]) -> (Head, &[u8]) {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> &'a [u8] {
        let (head, tail) = bytes.split_at(n.min(bytes.len()));
        *bytes = tail;
        head
    }
    let mut rest = bytes;
    let num = |b: &[u8]| -> [u8; 8] { b.try_into().unwrap_or_default() };
    let version = u64::from_le_bytes(num(take(&mut rest, 8)));
    let expires = i64::from_le_bytes(num(take(&mut rest, 8)));
    let index = if take(&mut rest, 1) == [1] {
        let mut part = || {
            let len = u32::from_le_bytes(take(&mut rest, 4).try_into().unwrap_or_default()) as usize;
            String::from_utf8_lossy(take(&mut rest, len)).into_owned()
        };
        let pk = part();
        let sk = part();
        Some(Key { pk, sk })
    } else {
        None
    };
    (Head { key, version, expires_at: (expires != i64::MIN).then_some(expires), index }, rest)
}

fn storage(e: impl Into<fjall::Error>) -> StoreError {
    StoreError::unavailable(e.into())
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store writer has stopped".into())
}

fn write_loop(
    db: &Database,
    tables: &Tables,
    durability: Option<PersistMode>,
    clock: &dyn Clock,
    requests: &mpsc::Receiver<Request>,
) {
    let commit = |group: Group<'_>| group.commit(db, durability);
    loop {
        let first = match requests.recv_timeout(SWEEP_EVERY) {
            Ok(request) => request,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(error) = sweep(tables, clock.now().timestamp(), commit) {
                    tracing::warn!(%error, "expired-item sweep failed");
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        while batch.len() < GROUP_COMMIT_MAX {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let now = clock.now().timestamp();
        let mut group = Group::new(tables);
        let applied: Result<Vec<_>, StoreError> =
            batch.iter().map(|request| group.apply_request(&request.writes, now)).collect();
        match applied.and_then(|results| commit(group).map(|()| results)) {
            Ok(results) => {
                for (request, result) in batch.into_iter().zip(results) {
                    let _ = request.reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(%error, "embedded store commit failed");
                for request in batch {
                    let _ = request.reply.send(Err(StoreError::Unavailable(error.to_string().into())));
                }
            }
        }
    }
}

/// The writes of one group of requests, not committed yet: what each table's keys become
/// (`None`: removed). Later requests of the group read through it.
struct Group<'t> {
    tables: &'t Tables,
    items: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    gsi: BTreeMap<Vec<u8>, bool>,
    expiry: BTreeMap<Vec<u8>, bool>,
}

impl<'t> Group<'t> {
    fn new(tables: &'t Tables) -> Self {
        Self { tables, items: BTreeMap::new(), gsi: BTreeMap::new(), expiry: BTreeMap::new() }
    }

    /// The head of the item at `key` as the group leaves it, expired or not.
    fn head(&self, key: &Key) -> Result<Option<Head>, StoreError> {
        let at = primary(key);
        match self.items.get(&at) {
            Some(pending) => Ok(pending.as_deref().map(|v| decode_head(key.clone(), v).0)),
            None => Ok(self.tables.items.get(&at).map_err(storage)?.map(|v| decode_head(key.clone(), &v).0)),
        }
    }

    /// Checks every condition of one request, then applies all of its writes. The outer
    /// `Err` is a storage failure that aborts the whole group; the inner one is this
    /// request's refusal.
    fn apply_request(&mut self, writes: &[Write], now: i64) -> Result<Result<(), StoreError>, StoreError> {
        let mut current = Vec::with_capacity(writes.len());
        for (index, write) in writes.iter().enumerate() {
            let key = write.key();
            let stored = self.head(key)?;
            let live = stored.as_ref().filter(|item| !item.is_expired(now));
            let holds = match write.condition() {
                Condition::None => true,
                Condition::NotExists => live.is_none(),
                Condition::Exists => live.is_some(),
                Condition::VersionIs(v) => live.is_some_and(|item| item.version == v),
            };
            if !holds {
                return Ok(Err(StoreError::ConditionFailed { index, key: key.clone() }));
            }
            current.push(stored);
        }
        for (write, stored) in writes.iter().zip(current) {
            match write {
                Write::Check { .. } => {}
                Write::Delete { .. } => {
                    if let Some(old) = stored {
                        self.remove(&old);
                    }
                }
                Write::Put { item, condition } => {
                    let version = match condition {
                        Condition::NotExists => 1,
                        Condition::VersionIs(v) => v + 1,
                        Condition::None | Condition::Exists => stored.as_ref().map_or(1, |old| old.version + 1),
                    };
                    if let Some(old) = &stored {
                        self.unlink(old);
                    }
                    self.items.insert(primary(&item.key), Some(encode(item, version)));
                    if let Some(index) = &item.index {
                        self.gsi.insert(secondary(index, &item.key), true);
                    }
                    if let Some(at) = item.expires_at {
                        self.expiry.insert(expiry_key(at, &item.key), true);
                    }
                }
            }
        }
        Ok(Ok(()))
    }

    /// Removes an item with its index and expiry entries.
    fn remove(&mut self, old: &Head) {
        self.unlink(old);
        self.items.insert(primary(&old.key), None);
    }

    /// Removes an item's index and expiry entries.
    fn unlink(&mut self, old: &Head) {
        if let Some(index) = &old.index {
            self.gsi.insert(secondary(index, &old.key), false);
        }
        if let Some(at) = old.expires_at {
            self.expiry.insert(expiry_key(at, &old.key), false);
        }
    }

    /// Writes the group as one atomic batch (each key once, as the group left it).
    fn commit(self, db: &Database, durability: Option<PersistMode>) -> Result<(), StoreError> {
        let mut batch = db.batch().durability(durability);
        for (key, value) in self.items {
            match value {
                Some(value) => batch.insert(&self.tables.items, key, value),
                None => batch.remove(&self.tables.items, key),
            }
        }
        for (table, keys) in [(&self.tables.gsi, self.gsi), (&self.tables.expiry, self.expiry)] {
            for (key, present) in keys {
                if present {
                    batch.insert(table, key, []);
                } else {
                    batch.remove(table, key);
                }
            }
        }
        batch.commit().map_err(storage)
    }
}

/// Removes every item that expired at or before `now`.
fn sweep(tables: &Tables, now: i64, commit: impl Fn(Group<'_>) -> Result<(), StoreError>) -> Result<(), StoreError> {
    // Everything that expired at or before `now`: the keys below `now + 1`.
    let upto = (((now + 1) as u64) ^ (1 << 63)).to_be_bytes();
    let mut due = Vec::new();
    for entry in tables.expiry.range(..upto.as_slice()) {
        let k = entry.key().map_err(storage)?;
        due.push(split_primary(&k[8..])?);
    }
    let mut group = Group::new(tables);
    for key in &due {
        if let Some(old) = group.head(key)?.filter(|item| item.is_expired(now)) {
            group.remove(&old);
        }
    }
    commit(group)
}
