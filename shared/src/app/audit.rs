//! The append-only audit log: every operator action and security event, hash-chained so
//! an edited or removed entry shows.
//!
//! One chain per actor per UTC day: an append conditions on its own chain's head only, so
//! one caller's flood of (throttled) refusals never contends with another operator's
//! approval, and a writer that keeps losing gives up within [`Contention`]. Every entry is
//! also on the secondary index by time, to read the log newest first.
//!
//! Once a day has ended, [`AuditLog::anchor`] seals the digest of that day's chain heads
//! under the audit key (a KMS key the table's administrators are not granted): rewriting a
//! chain, or removing one, then needs the key too. An anchored day takes no more entries
//! (each append checks that its day has no anchor). [`AuditLog::check`], run on a schedule,
//! anchors the days that ended and verifies recent days against their anchors.

use std::sync::Arc;

use aws_lc_rs::digest::{SHA256, digest};
use chrono::{DateTime, Days, NaiveDate, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::ledger::sortable;
use crate::ports::envelope::{EncryptionContext, Envelope, Sealing};
use crate::ports::keyring::KeyringError;
use crate::ports::store::{self, Condition, Contention, Cursor, Item, Key, Query, Range, StoreError, Write};
use crate::ports::{Clock, Keyring, Store};

/// The secondary-index partition of every entry, by time.
const LOG: &str = "AUDIT";
const ANCHORS: &str = "AUDIT-ANCHOR";
const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// How many settled days [`AuditLog::check`] verifies entry by entry (older ones: their
/// anchor's seal).
pub const VERIFIED_DAYS: u64 = 7;
/// How long after its end a day is anchored: longer than any function runs (Lambda stops
/// one at 15 minutes), so no append prepared within the day is still in flight.
pub const SETTLED_AFTER: TimeDelta = TimeDelta::minutes(16);

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
    /// Position in its chain (the actor's entries of the UTC day of `at`), from 1.
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub decision: String,
    pub reason: String,
    /// Hash of the entry before in the chain (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over `prev_hash` and this entry's fields.
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Head {
    actor: String,
    seq: u64,
    hash: String,
}

/// A day's chain heads sealed under the audit key.
#[derive(Debug, Serialize, Deserialize)]
struct Anchor {
    day: NaiveDate,
    chains: usize,
    /// The SHA-256 of the day's heads, sealed (authenticated encryption) with the day as
    /// its context: only the audit key's holder can make one that opens.
    sealed: Envelope,
    anchored_at: DateTime<Utc>,
}

/// What a check of the log found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Checked {
    /// Days anchored by this check.
    pub anchored: Vec<NaiveDate>,
    /// Days verified entry by entry.
    pub verified: usize,
    /// Every break: the day and what does not hold. Empty when the log is intact.
    pub breaks: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

fn chain_partition(day: NaiveDate, actor: &str) -> String {
    format!("AUDIT#{day}#{actor}")
}

fn head_key(day: NaiveDate, actor: &str) -> Key {
    Key::new(chain_partition(day, actor), "HEAD")
}

fn entry_key(day: NaiveDate, actor: &str, seq: u64) -> Key {
    Key::new(chain_partition(day, actor), format!("E#{seq:020}"))
}

/// The secondary-index partition listing a day's chain heads.
fn heads_of(day: NaiveDate) -> String {
    format!("AUDIT-HEADS#{day}")
}

fn anchor_key(day: NaiveDate) -> Key {
    Key::new(ANCHORS, day.to_string())
}

fn anchor_context(day: NaiveDate) -> EncryptionContext {
    EncryptionContext::from([("purpose".to_owned(), "audit-anchor".to_owned()), ("day".to_owned(), day.to_string())])
}

fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
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
    hex(digest(&SHA256, content.to_string().as_bytes()).as_ref())
}

/// The digest an anchor seals: every chain head of the day, in actor order.
fn heads_digest(day: NaiveDate, heads: &[Head]) -> Result<Vec<u8>, StoreError> {
    let content = serde_json::to_vec(&(day, heads)).map_err(|e| StoreError::Codec(e.to_string()))?;
    Ok(digest(&SHA256, &content).as_ref().to_vec())
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
        let at = self.clock.now();
        let day = at.date_naive();
        let (head, condition) = match self.store.get(&head_key(day, &event.actor)).await? {
            Some(item) => (item.decode::<Head>()?, Condition::VersionIs(item.version)),
            None => (Head { actor: event.actor.clone(), seq: 0, hash: GENESIS.to_owned() }, Condition::NotExists),
        };
        let seq = head.seq + 1;
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
        let by_time = format!("{}#{}#{seq:020}", sortable(at), event.actor);
        let head = Head { actor: event.actor.clone(), seq, hash };
        Ok(vec![
            Write::put(
                Item::new(head_key(day, &event.actor), &head)?.with_index(heads_of(day), &event.actor),
                condition,
            ),
            Write::put(
                Item::new(entry_key(day, &event.actor, seq), &entry)?.with_index(LOG, by_time),
                Condition::NotExists,
            ),
            // An anchored day is closed.
            Write::check(anchor_key(day), Condition::NotExists),
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
        let page = self.store.query(&Query::secondary(LOG).descending().limit(limit).after(cursor)).await?;
        let entries = page.items.iter().map(Item::decode).collect::<Result<Vec<AuditEntry>, _>>()?;
        Ok((entries, page.next))
    }

    /// The day's chain heads, in actor order.
    async fn heads(&self, day: NaiveDate) -> Result<Vec<Head>, StoreError> {
        let mut heads = Vec::new();
        store::each(self.store.as_ref(), &Query::secondary(heads_of(day)), |item| {
            heads.push(item.decode()?);
            Ok(())
        })
        .await?;
        Ok(heads)
    }

    /// Walks one chain; answers what does not hold, if anything.
    async fn verify_chain(&self, day: NaiveDate, head: &Head) -> Result<Option<String>, StoreError> {
        let mut prev_hash = GENESIS.to_owned();
        let mut expected_seq = 1;
        let mut broken = None;
        let query = Query::partition(chain_partition(day, &head.actor)).range(Range::Prefix("E#".into()));
        store::each(self.store.as_ref(), &query, |item| {
            let entry: AuditEntry = item.decode()?;
            let event = Event {
                actor: entry.actor.clone(),
                action: entry.action.clone(),
                target: entry.target.clone(),
                decision: entry.decision.clone(),
                reason: entry.reason.clone(),
            };
            let intact = entry.seq == expected_seq
                && entry.actor == head.actor
                && entry.at.date_naive() == day
                && entry.prev_hash == prev_hash
                && entry.hash == chain_hash(&prev_hash, entry.seq, &entry.at, &event);
            if !intact && broken.is_none() {
                broken = Some(expected_seq);
            }
            prev_hash = entry.hash;
            expected_seq += 1;
            Ok(())
        })
        .await?;
        let actor = &head.actor;
        Ok(match broken {
            Some(seq) => Some(format!("{day}: {actor}'s entry {seq} does not match its chain")),
            // The head must point at the last entry: removing the newest entries shows too.
            None if head.seq != expected_seq - 1 || head.hash != prev_hash => {
                Some(format!("{day}: {actor}'s chain does not end at its head"))
            }
            None => None,
        })
    }

    /// Verifies every chain of `day` entry by entry, and its anchor if it has one; answers
    /// the breaks found (none: intact).
    pub async fn verify_day(&self, keyring: &dyn Keyring, day: NaiveDate) -> Result<Vec<String>, AuditError> {
        let heads = self.heads(day).await?;
        let mut breaks = Vec::new();
        for head in &heads {
            breaks.extend(self.verify_chain(day, head).await?);
        }
        if let Some(item) = self.store.get(&anchor_key(day)).await? {
            breaks.extend(self.verify_anchor(keyring, &item.decode()?, &heads).await?);
        }
        Ok(breaks)
    }

    /// Whether the anchor opens under the audit key and seals these heads.
    async fn verify_anchor(
        &self,
        keyring: &dyn Keyring,
        anchor: &Anchor,
        heads: &[Head],
    ) -> Result<Option<String>, AuditError> {
        let day = anchor.day;
        let sealed = match keyring.decrypt(&anchor.sealed, &anchor_context(day)).await {
            Ok(digest) => digest,
            Err(KeyringError::Decrypt) => return Ok(Some(format!("{day}: the anchor's seal does not open"))),
            Err(e) => return Err(e.into()),
        };
        Ok((sealed != heads_digest(day, heads)?).then(|| format!("{day}: the chain heads differ from the anchor")))
    }

    /// Seals the heads of `day`; answers `false` if it already was. Call it once the day
    /// has settled (see [`SETTLED_AFTER`]); from then on the day takes no entry.
    pub async fn anchor(&self, keyring: &dyn Keyring, day: NaiveDate) -> Result<bool, AuditError> {
        if self.store.get(&anchor_key(day)).await?.is_some() {
            return Ok(false);
        }
        let heads = self.heads(day).await?;
        let sealed = keyring.encrypt(&heads_digest(day, &heads)?, &anchor_context(day)).await?;
        let anchor = Anchor { day, chains: heads.len(), sealed, anchored_at: self.clock.now() };
        match self.store.put(Item::new(anchor_key(day), &anchor)?, Condition::NotExists).await {
            Ok(()) => Ok(true),
            Err(StoreError::ConditionFailed { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The first day with an entry.
    async fn first_day(&self) -> Result<Option<NaiveDate>, StoreError> {
        let page = self.store.query(&Query::secondary(LOG).limit(1)).await?;
        Ok(page.items.first().map(Item::decode::<AuditEntry>).transpose()?.map(|e| e.at.date_naive()))
    }

    /// The scheduled check: anchors the settled days after the last anchor (only the
    /// latest settled day when there is none yet), then verifies every anchor's seal, the
    /// last [`VERIFIED_DAYS`] settled days entry by entry, and that no day since the log's
    /// first lacks an anchor. A day whose anchor went missing is reported, never anchored
    /// again: that would seal whatever its chains were rewritten to.
    pub async fn check(&self, keyring: &dyn Keyring) -> Result<Checked, AuditError> {
        let mut checked = Checked::default();
        // Anchors sort by their day (ISO dates).
        let mut anchors = Vec::new();
        store::each(self.store.as_ref(), &Query::partition(ANCHORS), |item| {
            anchors.push(item.decode::<Anchor>()?);
            Ok(())
        })
        .await?;
        let first_entry = self.first_day().await?;
        let Some(first) = anchors.first().map(|a| a.day).into_iter().chain(first_entry).min() else {
            return Ok(checked);
        };
        // Days before `settled` have ended and settled.
        let settled = (self.clock.now() - SETTLED_AFTER).date_naive();
        let next = match anchors.last() {
            Some(last) => last.day.succ_opt(),
            None => settled.pred_opt().map(|latest| latest.max(first)),
        };
        for day in days(next, settled) {
            if self.anchor(keyring, day).await? {
                checked.anchored.push(day);
            }
        }
        let anchored: std::collections::BTreeSet<NaiveDate> =
            anchors.iter().map(|a| a.day).chain(checked.anchored.iter().copied()).collect();
        for day in days(Some(first), settled) {
            if !anchored.contains(&day) {
                checked.breaks.push(format!("{day}: the day ended and has no anchor"));
            }
        }
        let recent = settled.checked_sub_days(Days::new(VERIFIED_DAYS)).unwrap_or(first).max(first);
        for anchor in &anchors {
            if anchor.day < recent {
                let heads = self.heads(anchor.day).await?;
                checked.breaks.extend(self.verify_anchor(keyring, anchor, &heads).await?);
            }
        }
        for day in days(Some(recent), settled) {
            checked.breaks.extend(self.verify_day(keyring, day).await?);
            checked.verified += 1;
        }
        Ok(checked)
    }
}

/// The days from `from` (none: no day) up to, not including, `until`.
fn days(from: Option<NaiveDate>, until: NaiveDate) -> Vec<NaiveDate> {
    from.map(|from| from.iter_days().take_while(|day| *day < until).collect()).unwrap_or_default()
}
