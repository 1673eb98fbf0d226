//! The mirror: delivers the ledger's chain outbox (written in the same transaction as
//! each mirrored transfer) to the `Chain`, oldest first, and books the movements of
//! investors' deposit accounts and the units of trades at the `Custody` too (the
//! Custody's other holdings of DABS come from the distributions it approves), then removes what was delivered. Both are
//! idempotent by transfer id, so a record delivered twice (a crash between an answer and
//! the removal, a timeout after the partner committed) is harmless.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::app::failure::Permanence;
use crate::app::ledger::{CHAIN_OUTBOX, outbox_key, sortable};
use crate::domain::ledger::{Account, Kind, SGD, codes};
use crate::domain::reconcile::Class;
use crate::ports::chain::ChainTransfer;
use crate::ports::custody::CustodyTransfer;
use crate::ports::partner::PartnerError;
use crate::ports::store::{Condition, Item, Key, Query, StoreError, Write};
use crate::ports::{Chain, Clock, Custody, Store};

/// Secondary-index partition of delivered records, by when they were delivered.
pub const DELIVERED: &str = "MIRROR#DELIVERED";
/// How long a delivered record is kept: reconciliations of cut-offs up to a week back see
/// what was still in flight at theirs.
const KEEP_DELIVERED: TimeDelta = TimeDelta::days(7);

/// A record waiting in the outbox; `chain_height` once the chain has it but the Custody
/// has not booked it yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outboxed {
    #[serde(flatten)]
    pub record: ChainTransfer,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain_height: Option<u64>,
}

/// A record as its partners took it: which block holds it, when the Custody booked it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    pub record: ChainTransfer,
    pub chain_height: u64,
    /// `None`: not a movement the Custody books.
    pub custody_at: Option<DateTime<Utc>>,
    pub delivered_at: DateTime<Utc>,
}

/// The account the Custody keeps for a ledger account: an owner's order lock is, at the
/// Custody, still the owner's (DABS locked in a sell order stay in the holding; a buy
/// order's cash stays in the deposit account until the trade moves it).
pub fn custody_account(account: &str) -> String {
    match account.split(':').collect::<Vec<_>>().as_slice() {
        ["lock", owner, asset] if *asset == SGD => Account::id_of(Kind::Deposit, owner, asset),
        ["lock", owner, asset] => Account::id_of(Kind::Holding, owner, asset),
        _ => account.to_owned(),
    }
}

/// What the Custody books for a record, if anything: movements of investors' deposit
/// accounts, and the units of a trade (the Custody's holdings of DABS otherwise come from
/// the distributions it approves). Order locks are the owner's own accounts there, so
/// locking, releasing and posting a buy order's hold book nothing.
pub fn at_custody(record: &ChainTransfer) -> Option<CustodyTransfer> {
    let (debit, credit) = (custody_account(&record.debit), custody_account(&record.credit));
    let deposit = |account: &str| Class::of(account) == Some(Class::Deposit);
    let booked = debit != credit && (deposit(&debit) || deposit(&credit) || record.code == codes::TRADE_UNITS);
    booked.then(|| CustodyTransfer {
        reference: record.transfer_id.clone(),
        debit,
        credit,
        asset: record.asset.clone(),
        amount: record.amount,
    })
}

/// Whether the Custody books a record (see [`at_custody`]).
pub fn booked_at_custody(record: &ChainTransfer) -> bool {
    at_custody(record).is_some()
}

fn delivered_key(transfer_id: &str) -> Key {
    Key::new(format!("{DELIVERED}#{transfer_id}"), "RECORD")
}

/// What one drain did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub delivered: usize,
    /// The chain failed; the rest waits for the next drain.
    pub stopped: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A partner refused a record for good: it needs an operator.
    #[error("the chain or the Custody refused transfer {transfer_id}: {reason}")]
    Refused { transfer_id: String, reason: String },
}

impl Permanence for MirrorError {
    fn is_permanent(&self) -> bool {
        match self {
            Self::Store(e) => e.is_permanent(),
            Self::Refused { .. } => true,
        }
    }
}

/// Why one record was not delivered.
enum Failed {
    Store(StoreError),
    Partner(String, PartnerError),
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

pub struct ChainMirror {
    store: Arc<dyn Store>,
    chain: Arc<dyn Chain>,
    custody: Arc<dyn Custody>,
    clock: Arc<dyn Clock>,
}

impl ChainMirror {
    pub fn new(store: Arc<dyn Store>, chain: Arc<dyn Chain>, custody: Arc<dyn Custody>, clock: Arc<dyn Clock>) -> Self {
        Self { store, chain, custody, clock }
    }

    /// Records a transfer on the chain, and at the Custody if it moves a deposit account.
    /// When the chain took it and the Custody did not, the outbox item notes the block.
    async fn deliver(&self, waiting: &Item) -> Result<Delivered, Failed> {
        let outboxed: Outboxed = waiting.decode()?;
        let record = outboxed.record;
        let chain_height = match self.chain.record(&record).await {
            Ok(receipt) => receipt.height,
            Err(e) => return Err(Failed::Partner(record.transfer_id, e)),
        };
        let mut custody_at = None;
        if let Some(booking) = at_custody(&record) {
            match self.custody.transfer(&booking).await {
                Ok(receipt) => custody_at = Some(receipt.at),
                Err(e) => {
                    if outboxed.chain_height != Some(chain_height) {
                        let noted = Outboxed { record: record.clone(), chain_height: Some(chain_height) };
                        let mut item = Item::new(waiting.key.clone(), &noted)?;
                        item.index = waiting.index.clone();
                        match self.store.put(item, Condition::VersionIs(waiting.version)).await {
                            Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                    return Err(Failed::Partner(record.transfer_id, e));
                }
            }
        }
        Ok(Delivered { record, chain_height, custody_at, delivered_at: self.clock.now() })
    }

    /// Records are waiting.
    pub async fn pending(&self) -> Result<bool, StoreError> {
        Ok(!self.store.query(&Query::secondary(CHAIN_OUTBOX).limit(1)).await?.items.is_empty())
    }

    /// Delivers waiting records, up to `max`, in the order they were written; stops at the
    /// first the chain does not take.
    pub async fn drain(&self, max: usize) -> Result<Drained, MirrorError> {
        let mut drained = Drained::default();
        let mut cursor = None;
        while drained.delivered < max {
            let query = Query::secondary(CHAIN_OUTBOX).limit((max - drained.delivered).min(100)).after(cursor);
            let page = self.store.query(&query).await?;
            for item in &page.items {
                let delivered = match self.deliver(item).await {
                    Ok(delivered) => delivered,
                    Err(Failed::Store(e)) => return Err(e.into()),
                    Err(Failed::Partner(transfer_id, e)) if !e.is_retryable() => {
                        let reason = e.to_string();
                        tracing::error!(transfer = %transfer_id, %reason, "a partner refused a mirrored transfer");
                        return Err(MirrorError::Refused { transfer_id, reason });
                    }
                    Err(Failed::Partner(transfer_id, e)) => {
                        tracing::warn!(transfer = %transfer_id, error = %e, "a partner is unavailable; will retry");
                        drained.stopped = true;
                        return Ok(drained);
                    }
                };
                let id = delivered.record.transfer_id.clone();
                let kept = Item::new(delivered_key(&id), &delivered)?
                    .with_index(DELIVERED, format!("{}#{id}", sortable(delivered.delivered_at)))
                    .expiring_at(delivered.delivered_at + KEEP_DELIVERED);
                let writes = vec![Write::delete(outbox_key(&id), Condition::Exists), Write::put(kept, Condition::None)];
                match self.store.transact(writes).await {
                    // Another drain delivered it at the same time: harmless.
                    Ok(()) | Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => drained.delivered += 1,
                    Err(e) => return Err(e.into()),
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        Ok(drained)
    }
}
