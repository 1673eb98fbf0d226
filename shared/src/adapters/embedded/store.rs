//! The `Store` port on redb: a file under the data directory, or memory for tests.
//!
//! Writes go through one writer thread that commits in groups: it takes every request
//! already waiting, checks and applies them one after another inside a single redb
//! transaction (each request all-or-nothing, checked against the writes of the requests
//! before it), then commits once. Under load, one fsync covers many requests; a lone
//! request still commits at once. Reads use redb's snapshot isolation and never wait for
//! the writer.
//!
//! Layout: `items` maps `pk NUL sk` to the encoded item; `gsi1` maps
//! `gpk NUL gsk NUL pk NUL sk` to nothing; `expiry` maps `expires_at(be) pk NUL sk` to
//! nothing so that a sweep finds expired items without a scan. NUL never occurs in a key
//! (the port refuses it) and `0xFF` never occurs in UTF-8, so byte order on these keys is
//! exactly DynamoDB's order on (pk, sk).

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, Table, TableDefinition};
use tokio::sync::oneshot;

use crate::ports::Clock;
use crate::ports::store::{
    Condition, Cursor, Index, Item, Key, Order, Page, Query, Range, Store, StoreError, Write, validate_transaction,
};

const ITEMS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("items");
const GSI1: TableDefinition<&[u8], ()> = TableDefinition::new("gsi1");
const EXPIRY: TableDefinition<&[u8], ()> = TableDefinition::new("expiry");

/// How many waiting requests one commit may take.
const GROUP_COMMIT_MAX: usize = 512;
/// How often an idle writer sweeps expired items.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

struct Request {
    writes: Vec<Write>,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

/// The page cache of a store in a file, unless `DABS_STORE_CACHE_MB` says otherwise: the
/// store's memory stays bounded whatever its size (redb's default would let the cache grow
/// to 1 GiB).
pub const CACHE_BYTES: usize = 16 * 1024 * 1024;

fn cache_bytes() -> usize {
    std::env::var("DABS_STORE_CACHE_MB")
        .ok()
        .and_then(|mb| mb.parse::<usize>().ok())
        .map_or(CACHE_BYTES, |mb| mb.max(1) * 1024 * 1024)
}

/// The embedded store. Cheap to clone; the writer thread stops when the last clone drops.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: mpsc::Sender<Request>,
    clock: Arc<dyn Clock>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in a file, with a bounded page cache ([`CACHE_BYTES`]).
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let db = Database::builder().set_cache_size(cache_bytes()).create(path).map_err(storage)?;
        Self::start(db, clock)
    }

    /// A store that lives in memory only, for tests.
    pub fn in_memory(clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let db = Database::builder().create_with_backend(redb::backends::InMemoryBackend::new()).map_err(storage)?;
        Self::start(db, clock)
    }

    fn start(db: Database, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let txn = db.begin_write().map_err(storage)?;
        {
            txn.open_table(ITEMS).map_err(storage)?;
            txn.open_table(GSI1).map_err(storage)?;
            txn.open_table(EXPIRY).map_err(storage)?;
        }
        txn.commit().map_err(storage)?;
        let db = Arc::new(db);
        let (writer, requests) = mpsc::channel();
        let writer_db = db.clone();
        let writer_clock = clock.clone();
        std::thread::Builder::new()
            .name("embedded-store-writer".into())
            .spawn(move || write_loop(&writer_db, writer_clock.as_ref(), &requests))
            .map_err(StoreError::unavailable)?;
        Ok(Self { db, writer, clock })
    }

    /// Removes every expired item now (the writer also does this when idle).
    pub fn sweep_expired(&self) -> Result<usize, StoreError> {
        sweep(&self.db, self.clock.now().timestamp())
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp()
    }
}

#[async_trait]
impl Store for EmbeddedStore {
    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let txn = self.db.begin_read().map_err(storage)?;
        let items = txn.open_table(ITEMS).map_err(storage)?;
        let found = items.get(primary(key).as_slice()).map_err(storage)?;
        let now = self.now();
        Ok(found.map(|v| decode(key.clone(), v.value())).filter(|item| !item.is_expired(now)))
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        validate_transaction(&writes)?;
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Request { writes, reply })
            .map_err(|_| StoreError::Unavailable("the store writer has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Unavailable("the store writer has stopped".into()))?
    }

    async fn query(&self, query: &Query) -> Result<Page, StoreError> {
        let limit = query.checked_limit()?;
        let now = self.now();
        let txn = self.db.begin_read().map_err(storage)?;
        let items = txn.open_table(ITEMS).map_err(storage)?;
        let (lower, upper) = bounds(query)?;
        let mut found = Vec::with_capacity(limit + 1);
        let mut keep = |item: Item| {
            if !item.is_expired(now) {
                found.push(item);
            }
            found.len() > limit
        };
        match query.index {
            Index::Primary => {
                let range = items.range::<&[u8]>((as_ref(&lower), as_ref(&upper))).map_err(storage)?;
                for entry in ordered(range, query.order) {
                    let (k, v) = entry.map_err(storage)?;
                    if keep(decode(split_primary(k.value())?, v.value())) {
                        break;
                    }
                }
            }
            Index::Secondary => {
                let gsi = txn.open_table(GSI1).map_err(storage)?;
                let range = gsi.range::<&[u8]>((as_ref(&lower), as_ref(&upper))).map_err(storage)?;
                for entry in ordered(range, query.order) {
                    let (k, _) = entry.map_err(storage)?;
                    let key = split_secondary(k.value())?;
                    // Written in the same transaction as its index entry, so always present.
                    if let Some(v) = items.get(primary(&key).as_slice()).map_err(storage)?
                        && keep(decode(key, v.value()))
                    {
                        break;
                    }
                }
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

fn as_ref(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    match bound {
        Bound::Included(b) => Bound::Included(b.as_slice()),
        Bound::Excluded(b) => Bound::Excluded(b.as_slice()),
        Bound::Unbounded => Bound::Unbounded,
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

/// Decodes a value this module wrote; the layout is ours, so a short value is a bug that
/// decodes to an empty item rather than a panic.
fn decode(key: Key, bytes: &[u8]) -> Item {
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
    Item { key, index, version, expires_at: (expires != i64::MIN).then_some(expires), body: rest.to_vec() }
}

fn storage(e: impl Into<redb::Error>) -> StoreError {
    StoreError::unavailable(e.into())
}

fn write_loop(db: &Database, clock: &dyn Clock, requests: &mpsc::Receiver<Request>) {
    loop {
        let first = match requests.recv_timeout(SWEEP_EVERY) {
            Ok(request) => request,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(error) = sweep(db, clock.now().timestamp()) {
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
        match apply_batch(db, &batch, now) {
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

struct Tables<'t> {
    items: Table<'t, &'static [u8], &'static [u8]>,
    gsi: Table<'t, &'static [u8], ()>,
    expiry: Table<'t, &'static [u8], ()>,
}

fn apply_batch(db: &Database, batch: &[Request], now: i64) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let txn = db.begin_write().map_err(storage)?;
    let results = {
        let mut tables = Tables {
            items: txn.open_table(ITEMS).map_err(storage)?,
            gsi: txn.open_table(GSI1).map_err(storage)?,
            expiry: txn.open_table(EXPIRY).map_err(storage)?,
        };
        let mut results = Vec::with_capacity(batch.len());
        for request in batch {
            results.push(apply_request(&mut tables, &request.writes, now)?);
        }
        results
    };
    txn.commit().map_err(storage)?;
    Ok(results)
}

/// Checks every condition of one request, then applies all of its writes. The outer
/// `Err` is a storage failure that aborts the whole group; the inner one is this
/// request's refusal.
fn apply_request(tables: &mut Tables<'_>, writes: &[Write], now: i64) -> Result<Result<(), StoreError>, StoreError> {
    let mut current = Vec::with_capacity(writes.len());
    for (index, write) in writes.iter().enumerate() {
        let key = write.key();
        let stored =
            tables.items.get(primary(key).as_slice()).map_err(storage)?.map(|v| decode(key.clone(), v.value()));
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
            Write::Delete { key, .. } => {
                if let Some(old) = stored {
                    unlink(tables, &old)?;
                    tables.items.remove(primary(key).as_slice()).map_err(storage)?;
                }
            }
            Write::Put { item, condition } => {
                let version = match condition {
                    Condition::NotExists => 1,
                    Condition::VersionIs(v) => v + 1,
                    Condition::None | Condition::Exists => stored.as_ref().map_or(1, |old| old.version + 1),
                };
                if let Some(old) = &stored {
                    unlink(tables, old)?;
                }
                tables
                    .items
                    .insert(primary(&item.key).as_slice(), encode(item, version).as_slice())
                    .map_err(storage)?;
                if let Some(index) = &item.index {
                    tables.gsi.insert(secondary(index, &item.key).as_slice(), ()).map_err(storage)?;
                }
                if let Some(at) = item.expires_at {
                    tables.expiry.insert(expiry_key(at, &item.key).as_slice(), ()).map_err(storage)?;
                }
            }
        }
    }
    Ok(Ok(()))
}

/// Removes an item's index and expiry entries.
fn unlink(tables: &mut Tables<'_>, old: &Item) -> Result<(), StoreError> {
    if let Some(index) = &old.index {
        tables.gsi.remove(secondary(index, &old.key).as_slice()).map_err(storage)?;
    }
    if let Some(at) = old.expires_at {
        tables.expiry.remove(expiry_key(at, &old.key).as_slice()).map_err(storage)?;
    }
    Ok(())
}

fn sweep(db: &Database, now: i64) -> Result<usize, StoreError> {
    let txn = db.begin_write().map_err(storage)?;
    let swept = {
        let mut tables = Tables {
            items: txn.open_table(ITEMS).map_err(storage)?,
            gsi: txn.open_table(GSI1).map_err(storage)?,
            expiry: txn.open_table(EXPIRY).map_err(storage)?,
        };
        // Everything that expired at or before `now`: the keys below `now + 1`.
        let upto = (((now + 1) as u64) ^ (1 << 63)).to_be_bytes();
        let mut due = Vec::new();
        for entry in tables.expiry.range::<&[u8]>(..upto.as_slice()).map_err(storage)? {
            let (k, _) = entry.map_err(storage)?;
            due.push(split_primary(&k.value()[8..])?);
        }
        for key in &due {
            let stored =
                tables.items.get(primary(key).as_slice()).map_err(storage)?.map(|v| decode(key.clone(), v.value()));
            if let Some(old) = stored.filter(|item| item.is_expired(now)) {
                unlink(&mut tables, &old)?;
                tables.items.remove(primary(key).as_slice()).map_err(storage)?;
            }
        }
        due.len()
    };
    txn.commit().map_err(storage)?;
    Ok(swept)
}
