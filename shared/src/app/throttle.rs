//! Throttling of guesses (passwords, second-factor codes, emailed codes): every attempt is
//! reserved in its scopes before it is checked, by a conditional write that each racer
//! retries until it lands, so parallel guesses are all counted and a locked scope lets none
//! through. Past a threshold each attempt locks the scope for twice as long as the last, up
//! to a cap. Counters forget after a quiet window.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::audit::{AuditLog, Event};
pub use crate::domain::lockout::{
    ACCOUNT, ADDRESS, CLIENT_SIGNUPS, EMAIL_CODE, Limits, REFUSED, Reservation, SECOND_FACTOR, lock_for, reserve,
};
use crate::ports::store::{Condition, Contention, Item, Key, StoreError};
use crate::ports::{Clock, Store};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Failures {
    count: u32,
    locked_until: Option<DateTime<Utc>>,
}

/// What a reservation answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Go ahead and check; `locks` are those this attempt set for the next ones (to be
    /// audited if it fails).
    Allowed { locks: Vec<Locked> },
    /// The scope is locked until then; nothing was counted.
    Refused { until: DateTime<Utc> },
}

/// The lock an attempt led to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Locked {
    pub scope: String,
    pub until: DateTime<Utc>,
    /// The failure that caused this lock.
    pub failures: u32,
}

fn key(scope: &str) -> Key {
    Key::new(format!("THROTTLE#{scope}"), "FAILURES")
}

pub struct Throttle {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl Throttle {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Reserves one attempt in each scope in turn: refused at the first that is locked
    /// (and not counted there), otherwise counted before the caller checks anything, so a
    /// burst of parallel guesses gets no more checks than the limits allow. The attempt
    /// that reaches a threshold locks the scope for the ones after it.
    pub async fn reserve(&self, scopes: &[(&str, &Limits)]) -> Result<Attempt, StoreError> {
        let mut locks = Vec::new();
        for (scope, limits) in scopes {
            match self.reserve_in(scope, limits).await? {
                Ok(lock) => locks.extend(lock),
                Err(until) => return Ok(Attempt::Refused { until }),
            }
        }
        Ok(Attempt::Allowed { locks })
    }

    /// One scope's reservation: the lock it set, or when the scope unlocks.
    async fn reserve_in(
        &self,
        scope: &str,
        limits: &Limits,
    ) -> Result<Result<Option<Locked>, DateTime<Utc>>, StoreError> {
        let mut contention = Contention::default();
        loop {
            let now = self.clock.now();
            let (mut failures, condition) = match self.store.get(&key(scope)).await? {
                Some(item) => (item.decode::<Failures>()?, Condition::VersionIs(item.version)),
                None => (Failures::default(), Condition::NotExists),
            };
            let (count, locked_until) = match reserve(failures.count, failures.locked_until, now, limits) {
                Reservation::Locked { until } => return Ok(Err(until)),
                Reservation::Counted { count, locked_until } => (count, locked_until),
            };
            let lock = locked_until.map(|until| Locked { scope: scope.to_owned(), until, failures: count });
            failures = Failures { count, locked_until };
            let item = Item::new(key(scope), &failures)?.expiring_at(now + limits.window);
            match self.store.put(item, condition).await {
                Ok(()) => return Ok(Ok(lock)),
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => contention.lost().await?,
                Err(e) => return Err(e),
            }
        }
    }

    /// Gives back an attempt that succeeded in a scope a success does not reset (a client
    /// address many people share).
    pub async fn refund(&self, scope: &str) -> Result<(), StoreError> {
        let refunded = |f: &mut Failures| f.count = f.count.saturating_sub(1);
        crate::ports::store::update(self.store.as_ref(), &key(scope), refunded).await.map(|_| ())
    }

    /// Forgets the attempts of `scope` (after a success).
    pub async fn reset(&self, scope: &str) -> Result<(), StoreError> {
        self.store.delete(key(scope), Condition::None).await
    }
}

/// Audits the locks a failed attempt set, as `<action>` events naming the kind of scope
/// (`account`, `address`...), never the address or email itself.
pub async fn audit_locks(audit: &AuditLog, action: &str, locks: &[Locked]) -> Result<(), StoreError> {
    for lock in locks {
        let event = Event {
            actor: "system".into(),
            action: action.into(),
            target: lock.scope.split(':').next().unwrap_or("scope").into(),
            decision: format!("locked until {}", lock.until.to_rfc3339()),
            reason: format!("{} attempts", lock.failures),
        };
        audit.append(event).await?;
    }
    Ok(())
}
