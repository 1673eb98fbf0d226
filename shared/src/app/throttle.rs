//! Throttling of guesses (passwords, second-factor codes, emailed codes): every attempt is
//! reserved in its scopes before it is checked, by a conditional write that each racer
//! retries until it lands, so parallel guesses are all counted and a locked scope lets none
//! through. Past a threshold each attempt locks the scope for twice as long as the last, up
//! to a cap. Counters forget after a quiet window.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::audit::{AuditLog, Event};
use crate::ports::store::{Condition, Contention, Item, Key, StoreError};
use crate::ports::{Clock, Store};

/// What a scope tolerates before locking, and how long locks last.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub free_failures: u32,
    pub first_lock: TimeDelta,
    pub max_lock: TimeDelta,
    /// A counter with no failure for this long starts again from zero.
    pub window: TimeDelta,
}

/// Per account: five free tries, then 1 s, 2 s, 4 s... up to 15 minutes.
pub const ACCOUNT: Limits = Limits {
    free_failures: 5,
    first_lock: TimeDelta::seconds(1),
    max_lock: TimeDelta::minutes(15),
    window: TimeDelta::minutes(30),
};
/// Per client address: more room, since many people can share one address.
pub const ADDRESS: Limits = Limits {
    free_failures: 20,
    first_lock: TimeDelta::seconds(1),
    max_lock: TimeDelta::minutes(15),
    window: TimeDelta::minutes(30),
};
/// Per caller, calls the access policy refused: 20 in ten minutes, then growing pauses.
pub const REFUSED: Limits = Limits {
    free_failures: 20,
    first_lock: TimeDelta::seconds(1),
    max_lock: TimeDelta::minutes(15),
    window: TimeDelta::minutes(10),
};
/// Per client, for sign-ups and verifications: room for an office behind one address.
pub const CLIENT_SIGNUPS: Limits = Limits {
    free_failures: 50,
    first_lock: TimeDelta::seconds(1),
    max_lock: TimeDelta::minutes(15),
    window: TimeDelta::hours(1),
};
/// Per account, across challenges and addresses: the fifth wrong second-factor code locks
/// for a minute, then two, four... up to an hour; a correct code alone resets it.
pub const SECOND_FACTOR: Limits = Limits {
    free_failures: 4,
    first_lock: TimeDelta::minutes(1),
    max_lock: TimeDelta::hours(1),
    window: TimeDelta::hours(24),
};
/// Per address being signed up or verified: a handful of codes mailed or tried, then
/// growing pauses (an attacker cannot flood someone's mailbox or guess their code).
pub const EMAIL_CODE: Limits = Limits {
    free_failures: 4,
    first_lock: TimeDelta::minutes(1),
    max_lock: TimeDelta::hours(1),
    window: TimeDelta::hours(24),
};

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

/// How long the `failures`-th failure locks the scope, if at all.
pub fn lock_for(failures: u32, limits: &Limits) -> Option<TimeDelta> {
    let over = failures.checked_sub(limits.free_failures + 1)?;
    let factor = 1i64.checked_shl(over.min(30)).unwrap_or(i64::MAX);
    Some(limits.first_lock.checked_mul(factor as i32).unwrap_or(limits.max_lock).min(limits.max_lock))
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
            if let Some(until) = failures.locked_until.filter(|until| *until > now) {
                return Ok(Err(until));
            }
            failures.count += 1;
            let lock = lock_for(failures.count, limits).map(|length| Locked {
                scope: scope.to_owned(),
                until: now + length,
                failures: failures.count,
            });
            failures.locked_until = lock.as_ref().map(|l| l.until);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_double_after_the_free_failures_up_to_the_cap() {
        let locks: Vec<Option<i64>> = (1..=16).map(|n| lock_for(n, &ACCOUNT).map(|d| d.num_seconds())).collect();
        assert_eq!(&locks[..5], &[None; 5]);
        assert_eq!(&locks[5..11], &[Some(1), Some(2), Some(4), Some(8), Some(16), Some(32)]);
        assert_eq!((locks[14], locks[15]), (Some(512), Some(900)));
        assert_eq!(lock_for(40, &ACCOUNT), Some(TimeDelta::minutes(15)));
        assert_eq!(lock_for(u32::MAX, &ACCOUNT), Some(TimeDelta::minutes(15)));
    }
}
