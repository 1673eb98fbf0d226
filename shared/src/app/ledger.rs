//! The ledger in the store: accounts and transfers as versioned items, each transfer
//! applied by read-check-write in one transaction conditioned on the versions read, so
//! concurrent transfers never lose an update or overdraw. A transfer's id makes a retry
//! harmless: the same id with the same fields answers the first result.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::domain::ledger::{Account, Amount, Hold, Phase, Refusal, Transfer, apply, same_transfer};
use crate::ports::store::{Condition, Item, Key, StoreError, Write};
use crate::ports::{Clock, Store};

/// Conflicting writers retry this many times (with growing pauses) before giving up.
const ATTEMPTS: u32 = 50;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
    #[error("no account {0}")]
    NoAccount(String),
    #[error("too much contention; retry later")]
    Busy,
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
        for attempt in 0..ATTEMPTS {
            if let Some(item) = self.store.get(&transfer_key(&transfer.id)).await? {
                let record: Record = item.decode()?;
                same_transfer(&record.transfer, transfer)?;
                return Ok(record.amount);
            }
            let debit = self
                .store
                .get(&account_key(&transfer.debit))
                .await?
                .ok_or_else(|| LedgerError::NoAccount(transfer.debit.clone()))?;
            let credit = self
                .store
                .get(&account_key(&transfer.credit))
                .await?
                .ok_or_else(|| LedgerError::NoAccount(transfer.credit.clone()))?;
            let pending = match &transfer.pending_id {
                Some(id) => self.store.get(&transfer_key(id)).await?,
                None => None,
            };
            let pending_record: Option<Record> = pending.as_ref().map(|item| item.decode()).transpose()?;
            let held = pending_record.as_ref().and_then(|r| Some((&r.transfer, r.hold?)));
            let applied = apply(&debit.decode()?, &credit.decode()?, transfer, held)?;
            let record = Record {
                transfer: transfer.clone(),
                amount: applied.amount,
                hold: (transfer.phase == Phase::Pending).then_some(Hold::Open),
                at: self.clock.now(),
            };
            let mut writes = vec![
                Write::put(
                    Item::new(account_key(&applied.debit.id), &applied.debit)?,
                    Condition::VersionIs(debit.version),
                ),
                Write::put(
                    Item::new(account_key(&applied.credit.id), &applied.credit)?,
                    Condition::VersionIs(credit.version),
                ),
                Write::put(Item::new(transfer_key(&transfer.id), &record)?, Condition::NotExists),
            ];
            if let (Some(item), Some(mut resolved), Some(hold)) = (pending, pending_record, applied.hold) {
                resolved.hold = Some(hold);
                writes.push(Write::put(Item::new(item.key.clone(), &resolved)?, Condition::VersionIs(item.version)));
            }
            match self.store.transact(writes).await {
                Ok(()) => return Ok(applied.amount),
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => {
                    // Someone wrote one of these first: read again, decide again.
                    let pause = Duration::from_micros(200 * u64::from(attempt.min(20) + 1));
                    tokio::time::sleep(pause).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(LedgerError::Busy)
    }
}
