//! The mirror: delivers the ledger's chain outbox (written in the same transaction as
//! each mirrored transfer) to the `Chain`, oldest first, and books the movements of
//! investors' deposit accounts at the `Custody` too (the Custody's holdings of DABS come
//! from the distributions it approves), then removes what was delivered. Both are
//! idempotent by transfer id, so a record delivered twice (a crash between an answer and
//! the removal, a timeout after the partner committed) is harmless.

use std::sync::Arc;

use crate::app::ledger::{CHAIN_OUTBOX, outbox_key};
use crate::domain::reconcile::Class;
use crate::ports::chain::ChainTransfer;
use crate::ports::custody::CustodyTransfer;
use crate::ports::partner::PartnerError;
use crate::ports::store::{Condition, Query, StoreError};
use crate::ports::{Chain, Custody, Store};

/// What one drain did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub delivered: usize,
    /// The chain failed; the rest waits for the next drain.
    pub stopped: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A partner refused a record for good: it needs an operator.
    #[error("the chain or the Custody refused transfer {transfer_id}: {reason}")]
    Refused { transfer_id: String, reason: String },
}

pub struct ChainMirror {
    store: Arc<dyn Store>,
    chain: Arc<dyn Chain>,
    custody: Arc<dyn Custody>,
}

impl ChainMirror {
    pub fn new(store: Arc<dyn Store>, chain: Arc<dyn Chain>, custody: Arc<dyn Custody>) -> Self {
        Self { store, chain, custody }
    }

    pub fn for_platform(platform: &crate::Platform) -> Self {
        Self::new(platform.store.clone(), platform.chain.clone(), platform.custody.clone())
    }

    /// Records a transfer on the chain, and at the Custody if it moves a deposit account.
    async fn deliver(&self, record: &ChainTransfer) -> Result<(), PartnerError> {
        self.chain.record(record).await?;
        let deposit = |account: &str| Class::of(account) == Some(Class::Deposit);
        if deposit(&record.debit) || deposit(&record.credit) {
            let booking = CustodyTransfer {
                reference: record.transfer_id.clone(),
                debit: record.debit.clone(),
                credit: record.credit.clone(),
                asset: record.asset.clone(),
                amount: record.amount,
            };
            self.custody.transfer(&booking).await?;
        }
        Ok(())
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
                let record: ChainTransfer = item.decode()?;
                match self.deliver(&record).await {
                    Ok(()) => {}
                    Err(PartnerError::Refused(reason)) => {
                        tracing::error!(transfer = %record.transfer_id, %reason, "a partner refused a mirrored transfer");
                        return Err(MirrorError::Refused { transfer_id: record.transfer_id, reason });
                    }
                    Err(e) => {
                        tracing::warn!(transfer = %record.transfer_id, error = %e, "a partner is unavailable; will retry");
                        drained.stopped = true;
                        return Ok(drained);
                    }
                }
                match self.store.delete(outbox_key(&record.transfer_id), Condition::Exists).await {
                    // Another drain delivered it at the same time: harmless.
                    Ok(()) | Err(StoreError::ConditionFailed { .. }) => drained.delivered += 1,
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
