//! The chain mirror: delivers the ledger's chain outbox (written in the same transaction
//! as each mirrored transfer) to the `Chain`, oldest first, and removes what was
//! delivered. Delivery is idempotent by transfer id, so a record delivered twice (a crash
//! between the chain's answer and the removal, a timeout after the chain committed) is
//! harmless.

use std::sync::Arc;

use crate::app::ledger::{CHAIN_OUTBOX, outbox_key};
use crate::ports::chain::ChainTransfer;
use crate::ports::partner::PartnerError;
use crate::ports::store::{Condition, Query, StoreError};
use crate::ports::{Chain, Store};

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
    /// The chain refused a record for good: it needs an operator.
    #[error("the chain refused transfer {transfer_id}: {reason}")]
    Refused { transfer_id: String, reason: String },
}

pub struct ChainMirror {
    store: Arc<dyn Store>,
    chain: Arc<dyn Chain>,
}

impl ChainMirror {
    pub fn new(store: Arc<dyn Store>, chain: Arc<dyn Chain>) -> Self {
        Self { store, chain }
    }

    pub fn for_platform(platform: &crate::Platform) -> Self {
        Self::new(platform.store.clone(), platform.chain.clone())
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
                match self.chain.record(&record).await {
                    Ok(_) => {}
                    Err(PartnerError::Refused(reason)) => {
                        tracing::error!(transfer = %record.transfer_id, %reason, "chain refused a mirrored transfer");
                        return Err(MirrorError::Refused { transfer_id: record.transfer_id, reason });
                    }
                    Err(e) => {
                        tracing::warn!(transfer = %record.transfer_id, error = %e, "chain unavailable; will retry");
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
