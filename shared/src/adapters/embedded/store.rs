//! The `Store` port held in memory, made durable by a journal on disk: a folder under the
//! data directory, or nothing at all for tests (decision 18).
//!
//! Writes go through one writer thread that commits in groups: it takes every request
//! already waiting, checks them one after another against the store as the requests
//! before it left it (each request all-or-nothing), appends what the group changed to the
//! journal as one checksummed record and syncs it once, and only then hands it to the
//! applier thread, which applies it to the tables in memory and answers its requests.
//! The writer goes on with the next group meanwhile, checking it against the groups made
//! durable and not applied yet as well as the tables. Under load, one fsync covers many
//! requests; a lone request still commits at once. Readers take the tables' read lock, so
//! a group becomes visible whole and only once it is durable.
//!
//! Tables: `items` maps a partition key to its items by sort key; `gsi1` maps an index
//! partition key to `gsk NUL pk NUL sk`; `expiry` orders expiring items by time, so a
//! sweep finds them without a scan. NUL never occurs in a key (the port refuses it) and
//! `0xFF` never occurs in UTF-8, so byte order on these keys is exactly DynamoDB's order on
//! (pk, sk).
//!
//! The journal (`journal` in the folder) is a sequence of records, one a group:
//! `length u32 | crc32 u32 | entries`, each entry a put (`1 | pk | sk | version u64 |
//! expires_at i64 | index | body`) or a delete (`0 | pk | sk`), strings and the body
//! prefixed by their length (u32), little-endian throughout. Opening replays it; a record
//! cut short at the end (a crash in mid-write) is dropped, any other damage refuses to
//! open. Once the journal holds four times the live data, it is rewritten with the live
//! items only (at open, or by the writer between groups).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write as _};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};
use std::time::Duration;

use async_trait::async_trait;
use foldhash::HashMap;
use tokio::sync::oneshot;

use crate::ports::Clock;
use crate::ports::store::{
    Condition, Cursor, Index, Item, Key, Order, Page, Query, Range, Store, StoreError, Write, validate_transaction,
};

/// The most operations one transaction holds here: a group has no limit of its own, this
/// one keeps a request's checks and its memory bounded. Large enough that a step of the
/// local matcher holds a hundred commands or more (some 60 fills or more), so it writes a
/// receive of 1,000 in a few steps, each written while it works out the next.
pub const MAX_TRANSACTION_OPS: usize = 4_000;
/// How many waiting requests one commit may take.
const GROUP_COMMIT_MAX: usize = 512;
/// How often an idle writer sweeps expired items.
const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// The journal is rewritten once it holds this many times the live data...
const REWRITE_RATIO: u64 = 4;
/// ...and at least this many bytes.
const REWRITE_MIN_BYTES: u64 = 64 * 1024 * 1024;
/// The largest record a rewrite writes (a group's record is as large as the group).
const REWRITE_RECORD_BYTES: usize = 1024 * 1024;

/// One transaction for the writer thread, and where its outcome goes.
struct Request {
    writes: Vec<Write>,
    reply: oneshot::Sender<Result<(), StoreError>>,
}

/// An item as held: everything but its key.
#[derive(Debug, PartialEq)]
struct Stored {
    version: u64,
    expires_at: Option<i64>,
    index: Option<Box<Key>>,
    body: Box<[u8]>,
}

impl Stored {
    fn is_expired(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    fn item(&self, key: Key) -> Item {
        Item {
            key,
            index: self.index.as_deref().cloned(),
            version: self.version,
            expires_at: self.expires_at,
            body: self.body.to_vec(),
        }
    }

    /// What the item counts for against the journal's size: its entry in a rewrite (see
    /// `encode_entry`: a tag, four lengths, the version, the expiry and the index flag).
    fn bytes(&self, key: &Key) -> u64 {
        let index = self.index.as_ref().map_or(0, |index| index.pk.len() + index.sk.len() + 8);
        (key.pk.len() + key.sk.len() + index + self.body.len() + 30) as u64
    }
}

/// What a group leaves each key it wrote as: the new item, or `None` when removed.
type Changes = HashMap<Key, Option<Stored>>;

/// The most items a partition keeps in a sorted vector before it moves them to a B-tree.
const SMALL_PARTITION: usize = 16;

/// One partition's items in sort-key order. Most partitions hold one item (an order, a
/// transfer's record, a notice): a vector holds it in one small allocation, where a B-tree
/// would take a node of eleven slots.
#[derive(Debug)]
enum Partition {
    Small(Vec<(Box<[u8]>, Stored)>),
    Large(BTreeMap<Box<[u8]>, Stored>),
}

/// A walk over some of a partition's items, in either direction.
type Walk<'a> = Box<dyn DoubleEndedIterator<Item = (&'a [u8], &'a Stored)> + 'a>;

impl Partition {
    fn get(&self, sk: &[u8]) -> Option<&Stored> {
        match self {
            Self::Small(items) => items.binary_search_by(|(at, _)| (**at).cmp(sk)).ok().map(|i| &items[i].1),
            Self::Large(items) => items.get(sk),
        }
    }

    fn insert(&mut self, sk: Box<[u8]>, value: Stored) -> Option<Stored> {
        match self {
            Self::Small(items) => match items.binary_search_by(|(at, _)| (**at).cmp(&*sk)) {
                Ok(i) => Some(std::mem::replace(&mut items[i].1, value)),
                Err(i) if items.len() < SMALL_PARTITION => {
                    items.insert(i, (sk, value));
                    None
                }
                Err(_) => {
                    let mut large: BTreeMap<_, _> = std::mem::take(items).into_iter().collect();
                    large.insert(sk, value);
                    *self = Self::Large(large);
                    None
                }
            },
            Self::Large(items) => items.insert(sk, value),
        }
    }

    fn remove(&mut self, sk: &[u8]) -> Option<Stored> {
        match self {
            Self::Small(items) => items.binary_search_by(|(at, _)| (**at).cmp(sk)).ok().map(|i| items.remove(i).1),
            Self::Large(items) => items.remove(sk),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            Self::Small(items) => items.is_empty(),
            Self::Large(items) => items.is_empty(),
        }
    }

    /// The items between the bounds, which are in order (see `is_empty` below).
    fn range<'a>(&'a self, lower: Bound<&[u8]>, upper: Bound<&[u8]>) -> Walk<'a> {
        match self {
            Self::Small(items) => {
                let above = |at: &[u8]| match lower {
                    Bound::Included(lo) => at >= lo,
                    Bound::Excluded(lo) => at > lo,
                    Bound::Unbounded => true,
                };
                let below = |at: &[u8]| match upper {
                    Bound::Included(hi) => at <= hi,
                    Bound::Excluded(hi) => at < hi,
                    Bound::Unbounded => true,
                };
                let start = items.partition_point(|(at, _)| !above(at));
                let end = items.partition_point(|(at, _)| below(at)).max(start);
                Box::new(items[start..end].iter().map(|(sk, stored)| (&**sk, stored)))
            }
            Self::Large(items) => Box::new(items.range::<[u8], _>((lower, upper)).map(|(sk, stored)| (&**sk, stored))),
        }
    }

    fn iter(&self) -> Walk<'_> {
        self.range(Bound::Unbounded, Bound::Unbounded)
    }
}

impl PartialEq for Partition {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

/// The three tables of the layout above.
#[derive(Debug, Default, PartialEq)]
struct Tables {
    items: HashMap<String, Partition>,
    gsi: HashMap<String, BTreeSet<Box<[u8]>>>,
    expiry: BTreeSet<(i64, Key)>,
    /// The size of the live items in the journal's encoding.
    live_bytes: u64,
}

impl Tables {
    fn get(&self, key: &Key) -> Option<&Stored> {
        self.items.get(&key.pk)?.get(key.sk.as_bytes())
    }

    /// Leaves `key` as `value`, with its index and expiry entries. An item replaced is
    /// replaced in place: one search of its partition.
    fn set(&mut self, key: Key, value: Option<Stored>) {
        let Some(new) = value else { return self.remove(&key) };
        let bytes = new.bytes(&key);
        let index = new.index.as_ref().map(|index| (index.pk.clone(), secondary(&index.sk, &key)));
        let expiry = new.expires_at.map(|at| (at, key.clone()));
        let old = match self.items.get_mut(&key.pk) {
            Some(items) => items.insert(key.sk.as_bytes().into(), new),
            None => {
                self.items.insert(key.pk.clone(), Partition::Small(vec![(key.sk.as_bytes().into(), new)]));
                None
            }
        };
        // The old entries go before the new ones come: they may be the same.
        if let Some(old) = &old {
            self.unlink(&key, old);
        }
        self.live_bytes += bytes;
        if let Some((pk, entry)) = index {
            self.gsi.entry(pk).or_default().insert(entry.into());
        }
        if let Some(entry) = expiry {
            self.expiry.insert(entry);
        }
    }

    fn remove(&mut self, key: &Key) {
        let Some(items) = self.items.get_mut(&key.pk) else { return };
        let old = items.remove(key.sk.as_bytes());
        if items.is_empty() {
            self.items.remove(&key.pk);
        }
        if let Some(old) = &old {
            self.unlink(key, old);
        }
    }

    /// Removes an item's index and expiry entries, and its size.
    fn unlink(&mut self, key: &Key, old: &Stored) {
        self.live_bytes -= old.bytes(key);
        if let Some(index) = &old.index
            && let Some(entries) = self.gsi.get_mut(&index.pk)
        {
            entries.remove(&*secondary(&index.sk, key));
            if entries.is_empty() {
                self.gsi.remove(&index.pk);
            }
        }
        if let Some(at) = old.expires_at {
            self.expiry.remove(&(at, key.clone()));
        }
    }
}

/// The tables, shared by readers and the writer.
type Shared = Arc<RwLock<Tables>>;

fn read(tables: &RwLock<Tables>) -> RwLockReadGuard<'_, Tables> {
    // Every change is applied whole under the write lock; a panic cannot leave one half done.
    tables.read().unwrap_or_else(PoisonError::into_inner)
}

/// The embedded store. Cheap to clone; the writer thread stops when the last clone drops.
#[derive(Clone)]
pub struct EmbeddedStore {
    tables: Shared,
    writer: mpsc::Sender<Request>,
    clock: Arc<dyn Clock>,
}

impl EmbeddedStore {
    /// Opens (or creates) the store in the folder `path`; every commit is synced to disk
    /// before it answers. A folder holds one open store: another process (or another open
    /// in this one) is refused until the first store's last handle drops.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        std::fs::create_dir_all(path).map_err(StoreError::unavailable)?;
        let lock = File::create(path.join("LOCK")).map_err(StoreError::unavailable)?;
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::WouldBlock => {
                StoreError::Unavailable(format!("the store at {} is open in another process", path.display()).into())
            }
            std::fs::TryLockError::Error(e) => StoreError::unavailable(e),
        })?;
        let mut tables = Tables::default();
        let journal = Journal::open(path, &mut tables)?;
        Self::start(tables, Some((journal, lock)), clock)
    }

    /// A store in memory only, for tests: nothing of it outlives the process.
    pub fn temporary(clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        Self::start(Tables::default(), None, clock)
    }

    fn start(tables: Tables, journal: Option<(Journal, File)>, clock: Arc<dyn Clock>) -> Result<Self, StoreError> {
        let tables: Shared = Arc::new(RwLock::new(tables));
        let (writer, requests) = mpsc::channel();
        let (applier, groups) = mpsc::channel();
        let durable = Durable::default();
        let mut thread = Writer {
            tables: tables.clone(),
            durable: durable.clone(),
            applier,
            journal,
            clock: clock.clone(),
            broken: false,
        };
        let applied = tables.clone();
        std::thread::Builder::new()
            .name("embedded-store-applier".into())
            .spawn(move || apply_groups(&applied, &durable, &groups))
            .map_err(StoreError::unavailable)?;
        std::thread::Builder::new()
            .name("embedded-store-writer".into())
            .spawn(move || thread.run(&requests))
            .map_err(StoreError::unavailable)?;
        Ok(Self { tables, writer, clock })
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
        let now = self.now();
        Ok(read(&self.tables).get(key).filter(|stored| !stored.is_expired(now)).map(|stored| stored.item(key.clone())))
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
        let (lower, upper) = bounds(query)?;
        let tables = read(&self.tables);
        let mut found = Vec::with_capacity(limit + 1);
        if !is_empty(&lower, &upper) {
            match query.index {
                Index::Primary => {
                    let partition =
                        tables.items.get(&query.pk).map(|items| items.range(as_ref(&lower), as_ref(&upper)));
                    for (sk, stored) in ordered(partition.into_iter().flatten(), query.order) {
                        if !stored.is_expired(now) {
                            found.push(stored.item(Key::new(query.pk.clone(), utf8(sk)?)));
                            if found.len() > limit {
                                break;
                            }
                        }
                    }
                }
                Index::Secondary => {
                    let bounds = (as_ref(&lower), as_ref(&upper));
                    let partition = tables.gsi.get(&query.pk).map(|entries| entries.range::<[u8], _>(bounds));
                    for entry in ordered(partition.into_iter().flatten(), query.order) {
                        let key = split_secondary(entry)?;
                        // Linked in the same change as the item, so always present.
                        if let Some(stored) = tables.get(&key).filter(|stored| !stored.is_expired(now)) {
                            found.push(stored.item(key));
                            if found.len() > limit {
                                break;
                            }
                        }
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

fn ordered<'a, T: 'a>(iter: impl DoubleEndedIterator<Item = T> + 'a, order: Order) -> Box<dyn Iterator<Item = T> + 'a> {
    match order {
        Order::Ascending => Box::new(iter),
        Order::Descending => Box::new(iter.rev()),
    }
}

fn as_ref(bound: &Bound<Vec<u8>>) -> Bound<&[u8]> {
    bound.as_ref().map(Vec::as_slice)
}

/// Whether no key lies between the bounds (a B-tree's range refuses such bounds).
fn is_empty(lower: &Bound<Vec<u8>>, upper: &Bound<Vec<u8>>) -> bool {
    match (lower, upper) {
        (Bound::Included(lo), Bound::Included(hi)) => lo > hi,
        (Bound::Included(lo) | Bound::Excluded(lo), Bound::Included(hi) | Bound::Excluded(hi)) => lo >= hi,
        _ => false,
    }
}

/// Lower and upper bounds of a walk over a partition's keys.
type ByteRange = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// The keys of the query's partition it walks: the sort-key range, narrowed by the cursor.
/// On the index a key is `gsk NUL pk NUL sk`.
fn bounds(query: &Query) -> Result<ByteRange, StoreError> {
    let with = |suffix: &[&[u8]]| suffix.concat();
    // Sort keys are UTF-8 (never 0xFF); on the index a NUL follows the sort key, so
    // "everything whose sort key is exactly `hi`" ends before `hi` + 0x01.
    let end_of = |hi: &str| match query.index {
        Index::Primary => Bound::Included(hi.as_bytes().to_vec()),
        Index::Secondary => Bound::Excluded(with(&[hi.as_bytes(), &[1]])),
    };
    let (lower, upper) = match &query.range {
        Range::All => (Bound::Unbounded, Bound::Unbounded),
        Range::Prefix(p) => (Bound::Included(p.as_bytes().to_vec()), Bound::Excluded(with(&[p.as_bytes(), &[0xFF]]))),
        Range::Between(lo, hi) => (Bound::Included(lo.as_bytes().to_vec()), end_of(hi)),
        Range::AtLeast(lo) => (Bound::Included(lo.as_bytes().to_vec()), Bound::Unbounded),
        Range::AtMost(hi) => (Bound::Unbounded, end_of(hi)),
    };
    query.check_cursor()?;
    let Some(cursor) = &query.cursor else {
        return Ok((lower, upper));
    };
    let position = match query.index {
        Index::Primary => cursor.key.sk.as_bytes().to_vec(),
        Index::Secondary => secondary(&cursor.index.as_ref().ok_or(StoreError::ForeignCursor)?.sk, &cursor.key),
    };
    Ok(match query.order {
        Order::Ascending => (Bound::Excluded(position), upper),
        Order::Descending => (lower, Bound::Excluded(position)),
    })
}

/// An index entry within its partition: `gsk NUL pk NUL sk`.
fn secondary(gsk: &str, key: &Key) -> Vec<u8> {
    [gsk.as_bytes(), &[0], key.pk.as_bytes(), &[0], key.sk.as_bytes()].concat()
}

fn split_secondary(bytes: &[u8]) -> Result<Key, StoreError> {
    let parts: Vec<&[u8]> = bytes.splitn(3, |b| *b == 0).collect();
    match parts.as_slice() {
        [_, pk, sk] => Ok(Key::new(utf8(pk)?, utf8(sk)?)),
        _ => Err(StoreError::Codec("malformed index entry".into())),
    }
}

fn utf8(bytes: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| StoreError::Codec("key is not UTF-8".into()))
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the store writer has stopped".into())
}

/// Groups made durable and not applied to the tables yet, oldest first. The writer checks
/// the groups after them against them; the applier takes each out under the tables' write
/// lock as it applies it, so a key is always in one of the two.
type Durable = Arc<Mutex<VecDeque<Changes>>>;

/// What the writer hands the applier.
enum Applied {
    /// The answers of the oldest durable group: apply it, then answer them.
    Group(Vec<Answer>),
    /// Answered once every group before it is applied.
    Barrier(mpsc::Sender<()>),
}

type Answer = (Result<(), StoreError>, oneshot::Sender<Result<(), StoreError>>);

/// The writer thread's state: it checks each group and makes it durable; the applier
/// thread applies it to the tables and answers it, while the writer goes on with the next
/// group (its fsync is the larger part of a group's time, applying a large group the next).
struct Writer {
    tables: Shared,
    durable: Durable,
    applier: mpsc::Sender<Applied>,
    /// The journal and the folder's lock, held as long as the writer runs; `None` in memory.
    journal: Option<(Journal, File)>,
    clock: Arc<dyn Clock>,
    /// A failed append could not be undone: the journal's end is unknown, so no group may
    /// follow it (reopening the store replays up to the last whole record).
    broken: bool,
}

impl Writer {
    fn run(&mut self, requests: &mpsc::Receiver<Request>) {
        loop {
            let first = match requests.recv_timeout(SWEEP_EVERY) {
                Ok(request) => request,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(error) = self.sweep() {
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
            let now = self.clock.now().timestamp();
            let (changes, answers) = {
                let tables = read(&self.tables);
                let durable = lock(&self.durable);
                let mut group = Group { tables: &tables, durable: &durable, changes: Changes::default() };
                let answers: Vec<_> = batch
                    .into_iter()
                    .map(|Request { writes, reply }| (group.apply_request(writes, now), reply))
                    .collect();
                (group.changes, answers)
            };
            if let Err(error) = self.commit(changes, answers) {
                tracing::error!(%error, "embedded store commit failed");
            }
        }
    }

    /// Makes a group's changes durable and hands them to the applier; rewrites the journal
    /// when it has grown to four times the live data. A group that could not be made
    /// durable is answered with the error here.
    fn commit(&mut self, changes: Changes, answers: Vec<Answer>) -> Result<(), StoreError> {
        if let Err(error) = self.append(&changes) {
            for (_, reply) in answers {
                let _ = reply.send(Err(StoreError::Unavailable(error.to_string().into())));
            }
            return Err(error);
        }
        lock(&self.durable).push_back(changes);
        self.applier.send(Applied::Group(answers)).map_err(|_| stopped())?;
        if let Some((journal, _)) = &self.journal
            && journal.is_due(read(&self.tables).live_bytes)
        {
            // The tables must hold everything the journal does.
            self.settled()?;
            if let Some((journal, _)) = &mut self.journal
                && let Err(error) = journal.rewrite(&read(&self.tables))
            {
                tracing::warn!(%error, "embedded store journal rewrite failed");
            }
        }
        Ok(())
    }

    fn append(&mut self, changes: &Changes) -> Result<(), StoreError> {
        if changes.is_empty() {
            return Ok(());
        }
        if self.broken {
            return Err(StoreError::Unavailable("an earlier journal write failed; reopen the store".into()));
        }
        if let Some((journal, _)) = &mut self.journal
            && let Err(error) = journal.append(changes)
        {
            self.broken = journal.undo().is_err();
            return Err(StoreError::unavailable(error));
        }
        Ok(())
    }

    /// Waits until the applier has applied every group handed to it.
    fn settled(&self) -> Result<(), StoreError> {
        let (done, wait) = mpsc::channel();
        self.applier.send(Applied::Barrier(done)).map_err(|_| stopped())?;
        wait.recv().map_err(|_| stopped())
    }

    /// Removes every item that expired at or before `now`.
    fn sweep(&mut self) -> Result<(), StoreError> {
        // Expired as the tables have them, with no newer version on its way.
        self.settled()?;
        let now = self.clock.now().timestamp();
        let changes = {
            let tables = read(&self.tables);
            // Everything that expired at or before `now`: below the least key at `now + 1`.
            let upto = (now + 1, Key::new(String::new(), String::new()));
            tables.expiry.range(..upto).map(|(_, key)| (key.clone(), None)).collect::<Changes>()
        };
        self.commit(changes, Vec::new())
    }
}

/// The applier thread: applies each durable group to the tables under their write lock,
/// takes it off the durable list in the same lock, and answers its requests.
fn apply_groups(tables: &Shared, durable: &Durable, groups: &mpsc::Receiver<Applied>) {
    for applied in groups {
        match applied {
            Applied::Group(answers) => {
                let mut tables = tables.write().unwrap_or_else(PoisonError::into_inner);
                let changes = lock(durable).pop_front().unwrap_or_default();
                for (key, value) in changes {
                    tables.set(key, value);
                }
                drop(tables);
                for (result, reply) in answers {
                    let _ = reply.send(result);
                }
            }
            Applied::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The writes of one group of requests, not committed yet. Later requests of the group
/// read through it, and through the durable groups not applied yet.
struct Group<'t> {
    tables: &'t Tables,
    durable: &'t VecDeque<Changes>,
    changes: Changes,
}

impl Group<'_> {
    /// The item at `key` as the group leaves it, expired or not.
    fn head(&self, key: &Key) -> Option<&Stored> {
        if let Some(pending) = self.changes.get(key) {
            return pending.as_ref();
        }
        for changes in self.durable.iter().rev() {
            if let Some(pending) = changes.get(key) {
                return pending.as_ref();
            }
        }
        self.tables.get(key)
    }

    /// Checks every condition of one request, then applies all of its writes.
    fn apply_request(&mut self, writes: Vec<Write>, now: i64) -> Result<(), StoreError> {
        let mut current = Vec::with_capacity(writes.len());
        for (index, write) in writes.iter().enumerate() {
            let key = write.key();
            let stored = self.head(key);
            let live = stored.filter(|item| !item.is_expired(now));
            let holds = match write.condition() {
                Condition::None => true,
                Condition::NotExists => live.is_none(),
                Condition::Exists => live.is_some(),
                Condition::VersionIs(v) => live.is_some_and(|item| item.version == v),
            };
            if !holds {
                return Err(StoreError::ConditionFailed { index, key: key.clone() });
            }
            current.push(stored.map(|item| item.version));
        }
        for (write, stored) in writes.into_iter().zip(current) {
            match write {
                Write::Check { .. } => {}
                Write::Delete { key, .. } => {
                    if stored.is_some() {
                        self.changes.insert(key, None);
                    }
                }
                Write::Put { item, condition } => {
                    let version = match condition {
                        Condition::NotExists => 1,
                        Condition::VersionIs(v) => v + 1,
                        Condition::None | Condition::Exists => stored.map_or(1, |version| version + 1),
                    };
                    let Item { key, index, expires_at, body, .. } = item;
                    let stored =
                        Stored { version, expires_at, index: index.map(Box::new), body: body.into_boxed_slice() };
                    self.changes.insert(key, Some(stored));
                }
            }
        }
        Ok(())
    }
}

/// The journal file of a durable store.
struct Journal {
    folder: PathBuf,
    file: File,
    /// The length of its whole records: where the next one starts.
    bytes: u64,
    /// A record being encoded, kept to reuse its allocation.
    buffer: Vec<u8>,
}

impl Journal {
    const NAME: &'static str = "journal";

    /// Replays the folder's journal into `tables` and opens it for appending (rewritten
    /// first when it has grown to four times the live data).
    fn open(folder: &Path, tables: &mut Tables) -> Result<Self, StoreError> {
        let path = folder.join(Self::NAME);
        let bytes = match File::open(&path) {
            Ok(file) => replay(file, tables)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                refuse_foreign(folder)?;
                0
            }
            Err(e) => return Err(StoreError::unavailable(e)),
        };
        let file = OpenOptions::new().create(true).append(true).open(&path).map_err(StoreError::unavailable)?;
        // Drops a record cut short by a crash, so the next one follows the last whole one.
        file.set_len(bytes).map_err(StoreError::unavailable)?;
        sync_folder(folder).map_err(StoreError::unavailable)?;
        let mut journal = Self { folder: folder.to_path_buf(), file, bytes, buffer: Vec::new() };
        if journal.is_due(tables.live_bytes) {
            journal.rewrite(tables).map_err(StoreError::unavailable)?;
        }
        Ok(journal)
    }

    fn is_due(&self, live_bytes: u64) -> bool {
        self.bytes > REWRITE_MIN_BYTES && self.bytes > REWRITE_RATIO * live_bytes
    }

    /// Appends one group's changes as one record and syncs it.
    fn append(&mut self, changes: &Changes) -> std::io::Result<()> {
        self.buffer.clear();
        self.buffer.extend_from_slice(&[0; HEADER]);
        for (key, value) in changes {
            encode_entry(&mut self.buffer, key, value.as_ref());
        }
        frame(&mut self.buffer)?;
        self.file.write_all(&self.buffer)?;
        self.file.sync_data()?;
        self.bytes += self.buffer.len() as u64;
        Ok(())
    }

    /// Cuts off whatever a failed append left after the last whole record.
    fn undo(&mut self) -> std::io::Result<()> {
        self.file.set_len(self.bytes)?;
        self.file.sync_data()
    }

    /// Writes the live items to a new journal and puts it in place of this one.
    fn rewrite(&mut self, tables: &Tables) -> std::io::Result<()> {
        let next = self.folder.join("journal.next");
        match std::fs::remove_file(&next) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        // Opened for appending now, so that once renamed it is the journal with nothing
        // left to fail.
        let mut out = BufWriter::new(OpenOptions::new().create_new(true).append(true).open(&next)?);
        let mut chunk = Vec::with_capacity(REWRITE_RECORD_BYTES + 1024);
        chunk.extend_from_slice(&[0; HEADER]);
        let mut written = 0u64;
        let mut flush = |chunk: &mut Vec<u8>, out: &mut BufWriter<File>| -> std::io::Result<()> {
            frame(chunk)?;
            out.write_all(chunk)?;
            written += chunk.len() as u64;
            chunk.truncate(HEADER);
            Ok(())
        };
        for (pk, items) in &tables.items {
            for (sk, stored) in items.iter() {
                let key = Key::new(pk.clone(), String::from_utf8_lossy(sk).into_owned());
                encode_entry(&mut chunk, &key, Some(stored));
                if chunk.len() >= REWRITE_RECORD_BYTES {
                    flush(&mut chunk, &mut out)?;
                }
            }
        }
        if chunk.len() > HEADER {
            flush(&mut chunk, &mut out)?;
        }
        let file = out.into_inner().map_err(std::io::IntoInnerError::into_error)?;
        file.sync_all()?;
        // Until the rename the old journal stands whole; after it, appends go to the new one.
        std::fs::rename(&next, self.folder.join(Self::NAME))?;
        self.file = file;
        self.bytes = written;
        sync_folder(&self.folder)
    }
}

/// A folder without a journal holds nothing but the lock, or it is another store's (an
/// earlier engine's under an old data directory): starting empty beside it would lose
/// what it holds without a word.
fn refuse_foreign(folder: &Path) -> Result<(), StoreError> {
    let entries = std::fs::read_dir(folder).map_err(StoreError::unavailable)?;
    for entry in entries {
        let name = entry.map_err(StoreError::unavailable)?.file_name();
        if name != "LOCK" && name != "journal.next" {
            return Err(StoreError::Unavailable(
                format!(
                    "{} holds files of another store ({}) and no journal: move it away to start afresh",
                    folder.display(),
                    name.to_string_lossy()
                )
                .into(),
            ));
        }
    }
    Ok(())
}

fn sync_folder(folder: &Path) -> std::io::Result<()> {
    File::open(folder)?.sync_all()
}

/// A record's length and checksum, before its entries.
const HEADER: usize = 8;

/// Fills in the header of `record`: its first [`HEADER`] bytes, before the entries.
fn frame(record: &mut [u8]) -> std::io::Result<()> {
    let (header, entries) = record.split_at_mut(HEADER);
    let length = u32::try_from(entries.len()).map_err(|_| std::io::Error::other("a journal record over 4 GiB"))?;
    header[..4].copy_from_slice(&length.to_le_bytes());
    header[4..].copy_from_slice(&crc32fast::hash(entries).to_le_bytes());
    Ok(())
}

fn encode_entry(out: &mut Vec<u8>, key: &Key, value: Option<&Stored>) {
    fn bytes(out: &mut Vec<u8>, part: &[u8]) {
        // Keys and bodies are far below 4 GiB: the port bounds bodies at 350 KiB.
        out.extend_from_slice(&(part.len() as u32).to_le_bytes());
        out.extend_from_slice(part);
    }
    out.push(u8::from(value.is_some()));
    bytes(out, key.pk.as_bytes());
    bytes(out, key.sk.as_bytes());
    let Some(stored) = value else { return };
    out.extend_from_slice(&stored.version.to_le_bytes());
    out.extend_from_slice(&stored.expires_at.unwrap_or(i64::MIN).to_le_bytes());
    match &stored.index {
        None => out.push(0),
        Some(index) => {
            out.push(1);
            bytes(out, index.pk.as_bytes());
            bytes(out, index.sk.as_bytes());
        }
    }
    bytes(out, &stored.body);
}

/// Applies the journal's records to `tables`; answers the length of its whole records.
fn replay(file: File, tables: &mut Tables) -> Result<u64, StoreError> {
    let length = file.metadata().map_err(StoreError::unavailable)?.len();
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut at = 0u64;
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; 8];
        if length - at < 8 {
            return Ok(at);
        }
        reader.read_exact(&mut header).map_err(StoreError::unavailable)?;
        let (size, checksum) = header.split_at(4);
        let size = u64::from(u32::from_le_bytes(size.try_into().unwrap_or_default()));
        let checksum = u32::from_le_bytes(checksum.try_into().unwrap_or_default());
        if length - at - 8 < size {
            return Ok(at);
        }
        payload.resize(size as usize, 0);
        reader.read_exact(&mut payload).map_err(StoreError::unavailable)?;
        let end = at + 8 + size;
        if crc32fast::hash(&payload) != checksum {
            // The last record of the file may be one whose length reached the disk before
            // its bytes did; anything before the end is damage.
            if end == length {
                return Ok(at);
            }
            return Err(corrupt(at));
        }
        decode_entries(&payload, tables).map_err(|()| corrupt(at))?;
        at = end;
    }
}

fn corrupt(at: u64) -> StoreError {
    StoreError::Unavailable(format!("the store's journal is damaged at byte {at}").into())
}

fn decode_entries(mut rest: &[u8], tables: &mut Tables) -> Result<(), ()> {
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], ()> {
        if rest.len() < n {
            return Err(());
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head)
    }
    fn number<const N: usize>(rest: &mut &[u8]) -> Result<[u8; N], ()> {
        take(rest, N)?.try_into().map_err(|_| ())
    }
    fn bytes<'a>(rest: &mut &'a [u8]) -> Result<&'a [u8], ()> {
        let n = u32::from_le_bytes(number(rest)?) as usize;
        take(rest, n)
    }
    fn string(rest: &mut &[u8]) -> Result<String, ()> {
        String::from_utf8(bytes(rest)?.to_vec()).map_err(|_| ())
    }
    while !rest.is_empty() {
        let put = take(&mut rest, 1)? == [1];
        let key = Key::new(string(&mut rest)?, string(&mut rest)?);
        let value = if put {
            let version = u64::from_le_bytes(number(&mut rest)?);
            let expires_at = i64::from_le_bytes(number(&mut rest)?);
            let index = match take(&mut rest, 1)? {
                [0] => None,
                _ => Some(Box::new(Key::new(string(&mut rest)?, string(&mut rest)?))),
            };
            let body = bytes(&mut rest)?.into();
            Some(Stored { version, expires_at: (expires_at != i64::MIN).then_some(expires_at), index, body })
        } else {
            None
        };
        tables.set(key, value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_rewritten_journal_replays_to_the_same_tables_and_holds_only_live_items() {
        let folder = tempfile::tempdir().unwrap();
        let mut tables = Tables::default();
        let mut journal = Journal::open(folder.path(), &mut tables).unwrap();
        // Fifty versions of forty items, a fifth of them removed at the end; some indexed,
        // some expiring, one index entry moved.
        for round in 0..50u8 {
            let mut changes = Changes::default();
            for n in 0..40u8 {
                let key = Key::new(format!("P{}", n % 4), format!("S{n}"));
                let gone = round == 49 && n % 5 == 0;
                let stored = Stored {
                    version: u64::from(round) + 1,
                    expires_at: (n % 3 == 0).then_some(1_000 + i64::from(n)),
                    index: (n % 2 == 0).then(|| Box::new(Key::new(format!("G{}", round / 25), format!("g{n}")))),
                    body: vec![round; 100].into(),
                };
                changes.insert(key, (!gone).then_some(stored));
            }
            journal.append(&changes).unwrap();
            for (key, value) in changes {
                tables.set(key, value);
            }
        }
        let grown = journal.bytes;
        journal.rewrite(&tables).unwrap();
        let path = folder.path().join(Journal::NAME);
        assert_eq!(journal.bytes, std::fs::metadata(&path).unwrap().len());
        assert!(journal.bytes * 40 < grown, "{} bytes against {grown}", journal.bytes);
        // The live items' size, which decides when to rewrite, is what they take in one:
        // here one record (well under a rewrite's record size) and its header.
        assert_eq!(journal.bytes, tables.live_bytes + HEADER as u64);

        let mut replayed = Tables::default();
        assert_eq!(replay(File::open(&path).unwrap(), &mut replayed).unwrap(), journal.bytes);
        assert_eq!(replayed, tables);
        assert_eq!(replayed.items.values().map(|items| items.iter().count()).sum::<usize>(), 32);
        assert_eq!(replayed.gsi.keys().collect::<Vec<_>>(), ["G1"]);
        // A group appended after the rewrite follows it.
        journal.append(&Changes::from_iter([(Key::new("P1", "S1"), None)])).unwrap();
        let mut again = Tables::default();
        replay(File::open(&path).unwrap(), &mut again).unwrap();
        assert_eq!(again.items.values().map(|items| items.iter().count()).sum::<usize>(), 31);
    }

    #[test]
    fn a_group_is_checked_against_the_durable_groups_not_applied_yet() {
        // GIVEN the tables at version 1 of a key, and a durable group not applied yet that
        // left it at version 2
        let key = Key::new("P", "S");
        let stored = |version| Stored { version, expires_at: None, index: None, body: vec![1].into() };
        let mut tables = Tables::default();
        tables.set(key.clone(), Some(stored(1)));
        let durable = VecDeque::from([Changes::from_iter([(key.clone(), Some(stored(2)))])]);
        let mut group = Group { tables: &tables, durable: &durable, changes: Changes::default() };
        let put = |condition| {
            vec![Write::put(
                Item { key: key.clone(), index: None, version: 0, expires_at: None, body: vec![2] },
                condition,
            )]
        };
        // THEN a write conditioned on the tables' version fails, and one on the durable group's lands
        assert!(matches!(
            group.apply_request(put(Condition::VersionIs(1)), 0),
            Err(StoreError::ConditionFailed { .. })
        ));
        group.apply_request(put(Condition::VersionIs(2)), 0).unwrap();
        assert_eq!(group.head(&key).map(|s| s.version), Some(3));
        // and a later durable group wins over an earlier one
        let newer = VecDeque::from([
            Changes::from_iter([(key.clone(), Some(stored(2)))]),
            Changes::from_iter([(key.clone(), None)]),
        ]);
        let group = Group { tables: &tables, durable: &newer, changes: Changes::default() };
        assert!(group.head(&key).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_compare_and_swap_writers_on_a_durable_store_lose_no_increment() {
        use crate::ports::Store as _;
        const WRITERS: u64 = 16;
        const EACH: u64 = 25;
        let folder = tempfile::tempdir().unwrap();
        let clock = Arc::new(crate::adapters::clock::SystemClock);
        let store = Arc::new(EmbeddedStore::open(folder.path(), clock).unwrap());
        let counters = [Key::new("COUNTER", "a"), Key::new("COUNTER", "b")];
        for key in &counters {
            let item = Item { key: key.clone(), index: None, version: 0, expires_at: None, body: b"0".to_vec() };
            store.put(item, Condition::NotExists).await.unwrap();
        }
        let mut tasks = tokio::task::JoinSet::new();
        for writer in 0..WRITERS {
            let (store, key) = (store.clone(), counters[(writer % 2) as usize].clone());
            tasks.spawn(async move {
                for _ in 0..EACH {
                    loop {
                        let current = store.get(&key).await.unwrap().unwrap();
                        let value: u64 = current.decode().unwrap();
                        let next = Item { body: (value + 1).to_string().into_bytes(), ..current.clone() };
                        match store.put(next, Condition::VersionIs(current.version)).await {
                            Ok(()) => break,
                            Err(StoreError::ConditionFailed { .. }) => {}
                            Err(other) => panic!("{other:?}"),
                        }
                    }
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        drop(store);
        // THEN every increment landed once, in the store and in its journal
        let mut replayed = Tables::default();
        replay(File::open(folder.path().join(Journal::NAME)).unwrap(), &mut replayed).unwrap();
        for key in &counters {
            let stored = replayed.get(key).unwrap();
            assert_eq!(std::str::from_utf8(&stored.body).unwrap(), (WRITERS / 2 * EACH).to_string());
            assert_eq!(stored.version, WRITERS / 2 * EACH + 1);
        }
    }
}
