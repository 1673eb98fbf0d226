//! DABS locked in open sell orders. Placing an order moves its units from the owner's
//! holding to the owner's order lock (`lock:owner:asset`) in the ledger, and so on the
//! chain; the Custody keeps them with their owner until the order is filled or returns at
//! market close. Each lock is recorded with the ledger transfer (one transaction) so a
//! reconciliation knows which locks were open at its cut-off and since when: the
//! difference they make at the Custody is a timing difference, not a break.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::ledger::{Ledger, LedgerError, sortable};
use crate::domain::ledger::{Account, Amount, Kind, Transfer, codes};
use crate::ports::store::{self, Condition, Item, Key, Query, Range, StoreError, Write};
use crate::ports::{Clock, Store};

const OPEN: &str = "ORDERLOCK#OPEN";
/// Released locks by release time, kept a week for reconciliations of earlier cut-offs.
const RELEASED: &str = "ORDERLOCK#RELEASED";
const KEEP_RELEASED: TimeDelta = TimeDelta::days(7);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLock {
    pub order_id: String,
    pub owner: String,
    pub asset: String,
    pub units: Amount,
    pub locked_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub released_at: Option<DateTime<Utc>>,
    /// Units that left the lock in trades, and when.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fills: Vec<LockFill>,
}

/// Units of a lock delivered to a buyer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockFill {
    pub at: DateTime<Utc>,
    pub units: Amount,
}

impl OrderLock {
    /// The holding the units came from.
    pub fn holding(&self) -> String {
        Account::id_of(Kind::Holding, &self.owner, &self.asset)
    }

    /// Whether the units were locked at `at`.
    pub fn open_at(&self, at: DateTime<Utc>) -> bool {
        self.locked_at <= at && self.released_at.is_none_or(|released| released > at)
    }

    /// Units still in the lock at `at`: locked, less those traded by then.
    pub fn units_at(&self, at: DateTime<Utc>) -> Amount {
        if !self.open_at(at) {
            return 0;
        }
        self.units - self.fills.iter().filter(|f| f.at <= at).map(|f| f.units).sum::<Amount>()
    }

    /// Units in the lock now.
    pub fn remaining(&self) -> Amount {
        self.units - self.fills.iter().map(|f| f.units).sum::<Amount>()
    }

    /// The stored form: listed as open, or (once released) by release time for a week.
    pub fn item(&self) -> Result<Item, StoreError> {
        let item = Item::new(lock_key(&self.order_id), self)?;
        Ok(match self.released_at {
            None => item.with_index(OPEN, &self.order_id),
            Some(at) => {
                item.with_index(RELEASED, format!("{}#{}", sortable(at), self.order_id)).expiring_at(at + KEEP_RELEASED)
            }
        })
    }
}

pub(crate) fn lock_key(order_id: &str) -> Key {
    Key::new(format!("ORDERLOCK#{order_id}"), "LOCK")
}

pub struct OrderLocks {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ledger: Ledger,
}

impl OrderLocks {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, ledger: Ledger) -> Self {
        Self { store, clock, ledger }
    }

    /// Locks `units` of `owner`'s holding for an order; locking the same order again is harmless.
    pub async fn lock(
        &self,
        order_id: &str,
        owner: &str,
        asset: &str,
        units: Amount,
    ) -> Result<OrderLock, LedgerError> {
        let lock_account = Account::of(Kind::OrderLock, owner, asset);
        self.ledger.open(lock_account.clone()).await?;
        let lock = OrderLock {
            order_id: order_id.to_owned(),
            owner: owner.to_owned(),
            asset: asset.to_owned(),
            units,
            locked_at: self.clock.now(),
            released_at: None,
            fills: Vec::new(),
        };
        let transfer = Transfer::single(
            format!("lock:{order_id}"),
            &lock.holding(),
            &lock_account.id,
            units,
            asset,
            codes::ORDER_LOCK,
        );
        self.ledger.submit_checked(&[transfer], &[Write::put(lock.item()?, Condition::NotExists)]).await?;
        Ok(self.get(order_id).await?.unwrap_or(lock))
    }

    /// Returns an order's locked units to its owner (the order returned at market close).
    pub async fn release(&self, order_id: &str) -> Result<OrderLock, LedgerError> {
        let item = self
            .store
            .get(&lock_key(order_id))
            .await?
            .ok_or_else(|| LedgerError::Invalid(format!("no order lock {order_id}")))?;
        let mut lock: OrderLock = item.decode()?;
        if lock.released_at.is_some() {
            return Ok(lock);
        }
        let released_at = self.clock.now();
        lock.released_at = Some(released_at);
        let transfer = Transfer::single(
            format!("release:{order_id}"),
            &Account::id_of(Kind::OrderLock, &lock.owner, &lock.asset),
            &lock.holding(),
            lock.remaining(),
            &lock.asset,
            codes::ORDER_RELEASE,
        );
        match self
            .ledger
            .submit_checked(&[transfer], &[Write::put(lock.item()?, Condition::VersionIs(item.version))])
            .await
        {
            Ok(_) => Ok(lock),
            // Released meanwhile by another call: that one stands.
            Err(LedgerError::ContextChanged) => Box::pin(self.release(order_id)).await,
            Err(e) => Err(e),
        }
    }

    pub async fn get(&self, order_id: &str) -> Result<Option<OrderLock>, StoreError> {
        self.store.get(&lock_key(order_id)).await?.map(|i| i.decode()).transpose()
    }

    /// The locks open at `cut_off`: still open, or released after it (within the week a
    /// released lock is kept).
    pub async fn open_at(&self, cut_off: DateTime<Utc>) -> Result<Vec<OrderLock>, StoreError> {
        let mut locks = Vec::new();
        for query in [Query::secondary(OPEN), Query::secondary(RELEASED).range(Range::AtLeast(sortable(cut_off)))] {
            store::each(self.store.as_ref(), &query, |item| {
                let lock: OrderLock = item.decode()?;
                if lock.units_at(cut_off) > 0 {
                    locks.push(lock);
                }
                Ok(())
            })
            .await?;
        }
        Ok(locks)
    }
}
