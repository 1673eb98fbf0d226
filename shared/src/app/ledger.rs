//! The ledger in the store: accounts and transfers as versioned items, each transfer
//! applied by read-check-write in one transaction conditioned on the versions read, so
//! concurrent transfers never lose an update or overdraw. A transfer's id makes a retry
//! harmless: the same id with the same fields answers the first result.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::ledger::{Account, Amount, Hold, Phase, Refusal, Transfer, apply, same_transfer};
use crate::ports::store::{Condition, Item, Key, StoreError, Write};
use crate::ports::{Clock, Store};

/// Conflicting writers retry this many times (with growing pauses) before giving up.
const ATTEMPTS: u32 = 50;
/// Linked transfers per batch: each writes its record and at most two accounts and a hold,
/// within one 100-operation store transaction.
pub const MAX_LINKED: usize = 25;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    #[error("no account {0}")]
    NoAccount(String),
    #[error("too much contention; retry later")]
    Busy,
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A transfer as recorded, with the hold state when it is a pending one.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    transfer: Transfer,
    amount: Amount,
    hold: Option<Hold>,
    at: chrono::DateTime<chrono::Utc>,
}

fn account_key(id: &str) -> Key {
    Key::new(format!("LEDGER#ACCOUNT#{id}"), "STATE")
}

fn transfer_key(id: &str) -> Key {
    Key::new(format!("LEDGER#TRANSFER#{id}"), "RECORD")
}

pub struct Ledger {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl Ledger {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Opens an account; opening the same account again is harmless.
    pub async fn open(&self, account: Account) -> Result<(), LedgerError> {
        match self.store.put(Item::new(account_key(&account.id), &account)?, Condition::NotExists).await {
            Ok(()) | Err(StoreError::ConditionFailed { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn account(&self, id: &str) -> Result<Option<Account>, LedgerError> {
        Ok(self.store.get(&account_key(id)).await?.map(|item| item.decode()).transpose()?)
    }

    /// Applies a transfer once; answers the amount that moved.
    pub async fn submit(&self, transfer: &Transfer) -> Result<Amount, LedgerError> {
        Ok(self.submit_linked(std::slice::from_ref(transfer)).await?[0])
    }

    /// Applies linked transfers in order, all or none (one store transaction); answers the
    /// amount each moved. Retrying the same batch answers the first result.
    pub async fn submit_linked(&self, transfers: &[Transfer]) -> Result<Vec<Amount>, LedgerError> {
        if transfers.is_empty() || transfers.len() > MAX_LINKED {
            return Err(LedgerError::Invalid(format!("a batch links 1 to {MAX_LINKED} transfers")));
        }
        for attempt in 0..ATTEMPTS {
            if let Some(amounts) = self.recorded(transfers).await? {
                return Ok(amounts);
            }
            match self.try_apply(transfers).await? {
                Some(amounts) => return Ok(amounts),
                // Someone wrote one of these items first: read again, decide again.
                None => tokio::time::sleep(Duration::from_micros(200 * u64::from(attempt.min(20) + 1))).await,
            }
        }
        Err(LedgerError::Busy)
    }

    /// The amounts of a batch already applied; `None` if none of it was. A batch of which
    /// only some ids exist reuses ids of another batch, and is refused.
    async fn recorded(&self, transfers: &[Transfer]) -> Result<Option<Vec<Amount>>, LedgerError> {
        let mut amounts = Vec::with_capacity(transfers.len());
        for transfer in transfers {
            if let Some(item) = self.store.get(&transfer_key(&transfer.id)).await? {
                let record: Record = item.decode()?;
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
    async fn try_apply(&self, transfers: &[Transfer]) -> Result<Option<Vec<Amount>>, LedgerError> {
        // Each account and each resolved hold: its state now and the version it was read at.
        let mut accounts: HashMap<String, (Account, u64)> = HashMap::new();
        let mut holds: HashMap<String, (Record, u64)> = HashMap::new();
        let mut records = Vec::with_capacity(transfers.len());
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
                .and_then(|(r, _)| Some((&r.transfer, r.hold?)));
            let applied = apply(&accounts[&transfer.debit].0, &accounts[&transfer.credit].0, transfer, held)?;
            if let (Some(id), Some(hold)) = (&transfer.pending_id, applied.hold)
                && let Some((record, _)) = holds.get_mut(id)
            {
                record.hold = Some(hold);
            }
            records.push(Record {
                transfer: transfer.clone(),
                amount: applied.amount,
                hold: (transfer.phase == Phase::Pending).then_some(Hold::Open),
                at: now,
            });
            // Later transfers of the batch see this one's effect; the versions stay as read.
            for account in [applied.debit, applied.credit] {
                if let Some((current, _)) = accounts.get_mut(&account.id) {
                    *current = account;
                }
            }
        }
        let amounts = records.iter().map(|r| r.amount).collect();
        let mut writes = Vec::with_capacity(accounts.len() + holds.len() + records.len());
        for (id, (account, version)) in &accounts {
            writes.push(Write::put(Item::new(account_key(id), account)?, Condition::VersionIs(*version)));
        }
        for (id, (record, version)) in &holds {
            writes.push(Write::put(Item::new(transfer_key(id), record)?, Condition::VersionIs(*version)));
        }
        for record in &records {
            writes.push(Write::put(Item::new(transfer_key(&record.transfer.id), record)?, Condition::NotExists));
        }
        match self.store.transact(writes).await {
            Ok(()) => Ok(Some(amounts)),
            Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}
