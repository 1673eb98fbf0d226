//! The ledger in the store: accounts and transfers as versioned items, each transfer
//! applied by read-check-write in one transaction conditioned on the versions read, so
//! concurrent transfers never lose an update or overdraw. A transfer's id makes a retry
//! harmless: the same id with the same fields answers the first result.
//!
//! The same transaction writes a statement entry per account touched (with the running
//! balance), and for posted transfers that touch a mirrored account an outbox item the
//! chain relay delivers ([`crate::app::mirror`]).

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use futures_util::StreamExt as _;
use serde::{Deserialize, Serialize};

use super::failure::{Permanence, Retried};
use crate::domain::ledger::{Account, Amount, Hold, Phase, Refusal, Transfer, apply, same_transfer};
use crate::ports::chain::ChainTransfer;
use crate::ports::store::{Condition, Contention, Cursor, Item, Key, Query, Range, StoreError, Write};
use crate::ports::{Clock, Store};

mod stripes;

/// Account lock stripes (see [`stripes`]): enough that the hundreds of accounts of a
/// matcher's step take few others' stripes by chance, so a writer waits mostly for the
/// accounts it really shares.
const STRIPES: usize = 65_536;

static ACCOUNT_STRIPES: std::sync::LazyLock<stripes::Stripes> =
    std::sync::LazyLock::new(|| stripes::Stripes::new(STRIPES));

/// Linked transfers per batch: each writes its record, two statement entries, at most two
/// accounts, a hold and an outbox item, within one 100-operation store transaction (a full
/// batch leaves room for two checks of the caller's). A store with larger transactions
/// takes more: [`Ledger::max_linked`].
pub const MAX_LINKED: usize = 14;
/// Store operations one linked transfer may take (see [`MAX_LINKED`]): its record, two
/// statement entries, an outbox item, a hold it resolves, and two accounts.
pub const OPS_PER_TRANSFER: usize = 7;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    #[error("no account {0}")]
    NoAccount(String),
    /// A condition the caller added (see [`Ledger::submit_checked`]) did not hold.
    #[error("a condition of the transfer's context did not hold")]
    ContextChanged,
    #[error("too much contention; retry later")]
    Busy,
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl Permanence for LedgerError {
    fn is_permanent(&self) -> bool {
        match self {
            Self::Refused(_) | Self::NoAccount(_) | Self::Invalid(_) => true,
            Self::ContextChanged | Self::Busy => false,
            Self::Store(e) => e.is_permanent(),
        }
    }
}

/// A transfer as recorded, with the hold state when it is a pending one.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub transfer: Transfer,
    /// What moved: for `Post` what was posted, for `Void` what was released.
    pub amount: Amount,
    pub hold: Option<Hold>,
    pub at: DateTime<Utc>,
    /// For a pending transfer with a timeout: when it can no longer be posted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl Record {
    /// The hold's state as of `now`: an open hold past its timeout is expired.
    fn hold_at(&self, now: DateTime<Utc>) -> Option<Hold> {
        match self.hold? {
            Hold::Open if self.expires_at.is_some_and(|at| at <= now) => Some(Hold::Expired),
            other => Some(other),
        }
    }
}

/// Which side of a transfer an account was on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Debit,
    Credit,
}

/// One line of an account's statement: a transfer that changed it, and the account after.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub transfer: Transfer,
    pub side: Side,
    /// What moved (see [`Record::amount`]).
    pub amount: Amount,
    /// Posted balance after the transfer (credits minus debits).
    pub balance: i128,
    /// Pending debits and credits after the transfer.
    pub pending_debits: u128,
    pub pending_credits: u128,
    pub available: i128,
    pub at: DateTime<Utc>,
}

/// Per asset, the sums over every account: debits always equal credits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub asset: String,
    pub accounts: u64,
    pub debits_posted: u128,
    pub credits_posted: u128,
    pub debits_pending: u128,
    pub credits_pending: u128,
}

fn account_key(id: &str) -> Key {
    Key::new(account_pk(id), "STATE")
}

fn account_pk(id: &str) -> String {
    format!("LEDGER#ACCOUNT#{id}")
}

fn entry_key(account: &str, seq: u64) -> Key {
    Key::new(account_pk(account), format!("ENTRY#{seq:020}"))
}

fn transfer_key(id: &str) -> Key {
    Key::new(format!("LEDGER#TRANSFER#{id}"), "RECORD")
}

fn owner_pk(owner: &str) -> String {
    format!("LEDGER#OWNER#{owner}")
}

fn asset_pk(asset: &str) -> String {
    format!("LEDGER#ASSET#{asset}")
}

const ASSETS_PK: &str = "LEDGER#ASSETS";
/// Secondary-index partition of open holds with a timeout, sorted by expiry.
const EXPIRING: &str = "LEDGER#EXPIRING";
/// Secondary-index partition of chain records not yet delivered, oldest first.
pub const CHAIN_OUTBOX: &str = "OUTBOX#CHAIN";

pub fn outbox_key(transfer_id: &str) -> Key {
    Key::new(format!("{CHAIN_OUTBOX}#{transfer_id}"), "RECORD")
}

/// Statements read at once when balances as of a time are listed.
const STATEMENT_READS: usize = 16;

/// Sort keys of times that order as the times do.
pub fn sortable(at: DateTime<Utc>) -> String {
    // RFC 3339 with nine fraction digits and `Z`: the same text as the format string
    // "%Y-%m-%dT%H:%M:%S%.9fZ", without parsing a format on every call.
    at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn record_item(record: &Record) -> Result<Item, StoreError> {
    let item = Item::new(transfer_key(&record.transfer.id), record)?;
    Ok(match (record.hold, record.expires_at) {
        (Some(Hold::Open), Some(at)) => item.with_index(EXPIRING, format!("{}#{}", sortable(at), record.transfer.id)),
        _ => item,
    })
}

#[derive(Clone)]
pub struct Ledger {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Whether writers in this process queue on the account stripes.
    local_locks: bool,
}

impl Ledger {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock, local_locks: true }
    }

    /// Linked transfers one batch may hold on this ledger's store: [`MAX_LINKED`] on
    /// DynamoDB, more where a store transaction holds more operations.
    pub fn max_linked(&self) -> usize {
        (self.store.max_transaction_ops().saturating_sub(2) / OPS_PER_TRANSFER).max(MAX_LINKED)
    }

    /// Without the in-process account locks: every writer behaves as if in its own process
    /// (as concurrent Lambda instances are), and conflicts are met at the version conditions.
    pub fn without_local_locks(mut self) -> Self {
        self.local_locks = false;
        self
    }

    /// Opens an account (listed under its owner and its asset); opening the same account
    /// again is harmless.
    pub async fn open(&self, account: Account) -> Result<(), LedgerError> {
        let mut writes = vec![Write::put(Item::new(account_key(&account.id), &account)?, Condition::NotExists)];
        let listing = Item::new(Key::new(asset_pk(&account.asset), &account.id), &account.id)?;
        writes.push(Write::put(listing, Condition::None));
        writes.push(Write::put(Item::new(Key::new(ASSETS_PK, &account.asset), &account.asset)?, Condition::None));
        if !account.owner.is_empty() {
            let owned = Item::new(Key::new(owner_pk(&account.owner), &account.id), &account.id)?;
            writes.push(Write::put(owned, Condition::None));
        }
        match self.store.transact(writes).await {
            Ok(()) => Ok(()),
            Err(StoreError::ConditionFailed { index: 0, .. }) => Ok(()),
            Err(StoreError::Conflict) => Box::pin(self.open(account)).await,
            Err(e) => Err(e.into()),
        }
    }

    pub async fn account(&self, id: &str) -> Result<Option<Account>, LedgerError> {
        Ok(self.store.get(&account_key(id)).await?.map(|item| item.decode()).transpose()?)
    }

    /// Every account of an owner, in id order.
    pub async fn accounts_of(&self, owner: &str) -> Result<Vec<Account>, LedgerError> {
        let mut accounts = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.store.query(&Query::partition(owner_pk(owner)).after(cursor)).await?;
            for item in &page.items {
                if let Some(account) = self.account(&item.key.sk).await? {
                    accounts.push(account);
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(accounts),
            }
        }
    }

    /// An account's statement, newest first.
    pub async fn statement(
        &self,
        account: &str,
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<(Vec<Entry>, Option<Cursor>), LedgerError> {
        let query = Query::partition(account_pk(account))
            .range(Range::Prefix("ENTRY#".into()))
            .descending()
            .limit(limit)
            .after(cursor);
        let page = self.store.query(&query).await?;
        let entries = page.items.iter().map(Item::decode).collect::<Result<_, _>>()?;
        Ok((entries, page.next))
    }

    /// Posted balances in `asset` as of `cut_off`, for the accounts whose id starts with
    /// `prefix`, sorted by account id: up to `limit` accounts after `after`. Each comes from
    /// the account's statement (every entry carries the posted balance after its transfer
    /// and never changes), so transfers applied while this reads do not move the answer.
    /// Accounts with no entry by the cut-off are absent.
    pub async fn balances_as_of(
        &self,
        asset: &str,
        prefix: &str,
        cut_off: DateTime<Utc>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, i128)>, LedgerError> {
        let mut balances = Vec::with_capacity(limit.min(1_000));
        // The smallest id after `after` (ids never hold control characters).
        let mut from = after.map(|a| format!("{a}\u{1}"));
        while balances.len() < limit {
            let range = match &from {
                Some(from) => Range::Between(from.clone(), format!("{prefix}\u{10FFFF}")),
                None => Range::Prefix(prefix.to_owned()),
            };
            let page =
                self.store.query(&Query::partition(asset_pk(asset)).range(range).limit(limit.min(1_000))).await?;
            // Each account's statement is its own read: several at once, answers in order.
            let ids: Vec<String> = page.items.iter().map(|item| item.key.sk.clone()).collect();
            let reads = ids.into_iter().map(|id| async move {
                let balance = self.balance_at(&id, cut_off).await;
                (id, balance)
            });
            let mut answers = futures_util::stream::iter(reads).buffered(STATEMENT_READS);
            while let Some((id, balance)) = answers.next().await {
                if let Some(balance) = balance? {
                    balances.push((id, balance));
                    if balances.len() == limit {
                        break;
                    }
                }
            }
            match page.items.last() {
                Some(last) if page.next.is_some() => from = Some(format!("{}\u{1}", last.key.sk)),
                _ => break,
            }
        }
        Ok(balances)
    }

    /// An account's posted balance after its last entry at or before `cut_off`.
    async fn balance_at(&self, account: &str, cut_off: DateTime<Utc>) -> Result<Option<i128>, LedgerError> {
        let mut cursor = None;
        loop {
            let (entries, next) = self.statement(account, 100, cursor).await?;
            if let Some(entry) = entries.iter().find(|e| e.at <= cut_off) {
                return Ok(Some(entry.balance));
            }
            match next {
                Some(next) => cursor = Some(next),
                None => return Ok(None),
            }
        }
    }

    /// A recorded transfer.
    pub async fn transfer(&self, id: &str) -> Result<Option<Record>, LedgerError> {
        Ok(self.store.get(&transfer_key(id)).await?.map(|item| item.decode()).transpose()?)
    }

    /// Every asset an account was opened in, in order.
    pub async fn assets(&self) -> Result<Vec<String>, LedgerError> {
        let mut assets = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.store.query(&Query::partition(ASSETS_PK).after(cursor)).await?;
            assets.extend(page.items.iter().map(|i| i.key.sk.clone()));
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(assets),
            }
        }
    }

    /// Per asset, the sums over every account, reading one account at a time.
    pub async fn totals(&self) -> Result<Vec<Totals>, LedgerError> {
        let mut all = Vec::new();
        let mut assets = None;
        loop {
            let page = self.store.query(&Query::partition(ASSETS_PK).after(assets)).await?;
            for asset in &page.items {
                all.push(self.totals_of(&asset.key.sk).await?);
            }
            match page.next {
                Some(next) => assets = Some(next),
                None => return Ok(all),
            }
        }
    }

    async fn totals_of(&self, asset: &str) -> Result<Totals, LedgerError> {
        let mut totals = Totals {
            asset: asset.to_owned(),
            accounts: 0,
            debits_posted: 0,
            credits_posted: 0,
            debits_pending: 0,
            credits_pending: 0,
        };
        let mut cursor = None;
        loop {
            let page = self.store.query(&Query::partition(asset_pk(asset)).after(cursor)).await?;
            for item in &page.items {
                let Some(a) = self.account(&item.key.sk).await? else { continue };
                totals.accounts += 1;
                totals.debits_posted += a.debits_posted;
                totals.credits_posted += a.credits_posted;
                totals.debits_pending += a.debits_pending;
                totals.credits_pending += a.credits_pending;
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(totals),
            }
        }
    }

    /// Voids up to `max` holds whose timeout has passed; answers how many it tried and
    /// which failed (one failing does not stop the others).
    pub async fn expire_due(&self, max: usize) -> Result<Retried, LedgerError> {
        let now = self.clock.now();
        let query = Query::secondary(EXPIRING).range(Range::AtMost(format!("{}#\u{10FFFF}", sortable(now))));
        let page = self.store.query(&query.limit(max.clamp(1, 100))).await?;
        let mut expired = Retried::default();
        for item in &page.items {
            let record: Record = match item.decode() {
                Ok(record) => record,
                Err(e) => {
                    expired.record(item.key.pk.clone(), Err::<(), _>(LedgerError::Store(e)));
                    continue;
                }
            };
            let void = Transfer::void(format!("{}:expired", record.transfer.id), &record.transfer);
            let outcome = match self.submit(&void).await {
                // Posted or voided by someone else meanwhile.
                Ok(_) | Err(LedgerError::Refused(Refusal::AlreadyResolved(_))) => Ok(()),
                Err(e) => Err(e),
            };
            expired.record(record.transfer.id, outcome);
        }
        Ok(expired)
    }

    /// Applies a transfer once; answers the amount that moved.
    pub async fn submit(&self, transfer: &Transfer) -> Result<Amount, LedgerError> {
        Ok(self.submit_linked(std::slice::from_ref(transfer)).await?[0])
    }

    /// Applies linked transfers in order, all or none (one store transaction); answers the
    /// amount each moved. Retrying the same batch answers the first result.
    pub async fn submit_linked(&self, transfers: &[Transfer]) -> Result<Vec<Amount>, LedgerError> {
        self.submit_checked(transfers, &[]).await
    }

    /// [`Ledger::submit_linked`], applied only if `checks` (conditions on other items, e.g.
    /// that a deal is still at the version read as open) hold in the same transaction;
    /// [`LedgerError::ContextChanged`] if one does not. A batch already applied answers its
    /// first result without looking at the checks.
    pub async fn submit_checked(&self, transfers: &[Transfer], checks: &[Write]) -> Result<Vec<Amount>, LedgerError> {
        self.submit_with(transfers, checks, &[]).await
    }

    /// [`Ledger::submit_checked`] that also writes `effects` in the same transaction: what
    /// the transfers cause and must never be lost or happen alone (a notice to the
    /// investor). An effect's condition failing is contention like the ledger's own, and
    /// the batch is decided again; a batch already applied wrote its effects then.
    pub async fn submit_with(
        &self,
        transfers: &[Transfer],
        checks: &[Write],
        effects: &[Write],
    ) -> Result<Vec<Amount>, LedgerError> {
        let most = self.max_linked();
        if transfers.is_empty() || transfers.len() > most {
            return Err(LedgerError::Invalid(format!("a batch links 1 to {most} transfers")));
        }
        let stripes = if self.local_locks {
            ACCOUNT_STRIPES.of(transfers.iter().flat_map(|t| [t.debit.as_str(), t.credit.as_str()]))
        } else {
            Vec::new()
        };
        let _held = ACCOUNT_STRIPES.take(stripes).await;
        for attempt in 0..Contention::ATTEMPTS {
            // The first pass takes the batch to be new, as nearly every batch is: a batch
            // written before fails its records' `NotExists`, and the passes after it ask.
            if attempt > 0
                && let Some(amounts) = self.recorded(transfers).await?
            {
                return Ok(amounts);
            }
            match self.try_apply(transfers, checks, effects).await {
                Ok(Some(amounts)) => return Ok(amounts),
                // Another process wrote one of these items first: read again, decide again.
                Ok(None) if attempt > 0 => tokio::time::sleep(Contention::pause(attempt)).await,
                Ok(None) => {}
                // The same batch, written before, answers what it did then; a refusal or a
                // changed context stands only for a batch not written.
                Err(e @ (LedgerError::Refused(_) | LedgerError::ContextChanged)) => {
                    return match self.recorded(transfers).await? {
                        Some(amounts) => Ok(amounts),
                        None => Err(e),
                    };
                }
                Err(e) => return Err(e),
            }
        }
        Err(LedgerError::Busy)
    }

    /// The amounts of a batch already applied; `None` if none of it was. A batch of which
    /// only some ids exist reuses ids of another batch, and is refused.
    async fn recorded(&self, transfers: &[Transfer]) -> Result<Option<Vec<Amount>>, LedgerError> {
        let mut amounts = Vec::with_capacity(transfers.len());
        for transfer in transfers {
            if let Some(record) = self.transfer(&transfer.id).await? {
                same_transfer(&record.transfer, transfer)?;
                amounts.push(record.amount);
            }
        }
        match amounts.len() {
            0 => Ok(None),
            n if n == transfers.len() => Ok(Some(amounts)),
            _ => Err(Refusal::IdReused("batch").into()),
        }
    }

    /// One read-check-write pass; `None` when a condition failed and the pass must be redone.
    async fn try_apply(
        &self,
        transfers: &[Transfer],
        checks: &[Write],
        effects: &[Write],
    ) -> Result<Option<Vec<Amount>>, LedgerError> {
        // Each account and each resolved hold: its state now and the version it was read at.
        let mut accounts: HashMap<String, (Account, u64)> = HashMap::new();
        let mut holds: HashMap<String, (Record, u64)> = HashMap::new();
        let mut records = Vec::with_capacity(transfers.len());
        let mut entries = Vec::with_capacity(2 * transfers.len());
        let mut outbox = Vec::new();
        let now = self.clock.now();
        for transfer in transfers {
            for id in [&transfer.debit, &transfer.credit] {
                if !accounts.contains_key(id) {
                    let item =
                        self.store.get(&account_key(id)).await?.ok_or_else(|| LedgerError::NoAccount(id.clone()))?;
                    accounts.insert(id.clone(), (item.decode()?, item.version));
                }
            }
            if let Some(id) = &transfer.pending_id
                && !holds.contains_key(id)
                && let Some(item) = self.store.get(&transfer_key(id)).await?
            {
                holds.insert(id.clone(), (item.decode()?, item.version));
            }
            let held = transfer
                .pending_id
                .as_ref()
                .and_then(|id| holds.get(id))
                .and_then(|(r, _)| Some((&r.transfer, r.hold_at(now)?)));
            let applied = match apply(&accounts[&transfer.debit].0, &accounts[&transfer.credit].0, transfer, held) {
                // Another worker made or resolved the hold between the two reads.
                Err(Refusal::Unreserved) => return Ok(None),
                applied => applied?,
            };
            if let (Some(id), Some(hold)) = (&transfer.pending_id, applied.hold)
                && let Some((record, _)) = holds.get_mut(id)
            {
                record.hold = Some(hold);
            }
            let (mut debit, mut credit) = (applied.debit, applied.credit);
            for (account, side) in [(&mut debit, Side::Debit), (&mut credit, Side::Credit)] {
                account.entries += 1;
                entries.push(Entry {
                    seq: account.entries,
                    transfer: transfer.clone(),
                    side,
                    amount: applied.amount,
                    balance: account.posted_balance(),
                    pending_debits: account.debits_pending,
                    pending_credits: account.credits_pending,
                    available: account.available(),
                    at: now,
                });
            }
            if transfer.posts() && (debit.kind.mirrored() || credit.kind.mirrored()) {
                outbox.push(ChainTransfer {
                    transfer_id: transfer.id.clone(),
                    debit: debit.id.clone(),
                    credit: credit.id.clone(),
                    asset: transfer.asset.clone(),
                    amount: applied.amount,
                    code: transfer.code,
                    at: now,
                });
            }
            let pending = transfer.phase == Phase::Pending;
            records.push(Record {
                transfer: transfer.clone(),
                amount: applied.amount,
                hold: pending.then_some(Hold::Open),
                at: now,
                expires_at: transfer.timeout.filter(|_| pending).map(|s| now + TimeDelta::seconds(i64::from(s))),
            });
            // Later transfers of the batch see this one's effect; the versions stay as read.
            for account in [debit, credit] {
                if let Some((current, _)) = accounts.get_mut(&account.id) {
                    *current = account;
                }
            }
        }
        let amounts = records.iter().map(|r| r.amount).collect();
        let mut writes = Vec::with_capacity(accounts.len() + holds.len() + records.len() + entries.len());
        for (id, (account, version)) in &accounts {
            writes.push(Write::put(Item::new(account_key(id), account)?, Condition::VersionIs(*version)));
        }
        for (record, version) in holds.values() {
            writes.push(Write::put(record_item(record)?, Condition::VersionIs(*version)));
        }
        for record in &records {
            writes.push(Write::put(record_item(record)?, Condition::NotExists));
        }
        for entry in &entries {
            let account = if entry.side == Side::Debit { &entry.transfer.debit } else { &entry.transfer.credit };
            writes.push(Write::put(Item::new(entry_key(account, entry.seq), entry)?, Condition::NotExists));
        }
        for record in &outbox {
            let item = Item::new(outbox_key(&record.transfer_id), record)?
                .with_index(CHAIN_OUTBOX, format!("{}#{}", sortable(record.at), record.transfer_id));
            writes.push(Write::put(item, Condition::NotExists));
        }
        writes.extend(effects.iter().cloned());
        let own = writes.len();
        writes.extend(checks.iter().cloned());
        match self.store.transact(writes).await {
            Ok(()) => Ok(Some(amounts)),
            Err(StoreError::ConditionFailed { index, .. }) if index >= own => Err(LedgerError::ContextChanged),
            Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
