//! Login throttling: failures are counted per account and per client address; past a
//! threshold each further failure locks the scope for twice as long as the last, up to a
//! cap. Counters forget after a quiet window.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::ports::store::{Condition, Item, Key, StoreError};
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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Failures {
    count: u32,
    locked_until: Option<DateTime<Utc>>,
}

/// The lock a failure led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
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

    /// When the first locked scope unlocks, if any is locked now.
    pub async fn locked_until(&self, scopes: &[&str]) -> Result<Option<DateTime<Utc>>, StoreError> {
        let now = self.clock.now();
        let mut until = None;
        for scope in scopes {
            if let Some(item) = self.store.get(&key(scope)).await?
                && let Some(at) = item.decode::<Failures>()?.locked_until
                && at > now
            {
                until = until.max(Some(at));
            }
        }
        Ok(until)
    }

    /// Counts a failure in `scope`; answers the lock it set, if it set one.
    pub async fn failed(&self, scope: &str, limits: &Limits) -> Result<Option<Locked>, StoreError> {
        loop {
            let now = self.clock.now();
            let (mut failures, condition) = match self.store.get(&key(scope)).await? {
                Some(item) => (item.decode::<Failures>()?, Condition::VersionIs(item.version)),
                None => (Failures::default(), Condition::NotExists),
            };
            failures.count += 1;
            let lock =
                lock_for(failures.count, limits).map(|length| Locked { until: now + length, failures: failures.count });
            failures.locked_until = lock.map(|l| l.until);
            let item = Item::new(key(scope), &failures)?.expiring_at(now + limits.window);
            match self.store.put(item, condition).await {
                Ok(()) => return Ok(lock),
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Forgets the failures of `scope` (after a successful login).
    pub async fn reset(&self, scope: &str) -> Result<(), StoreError> {
        self.store.delete(key(scope), Condition::None).await
    }
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
