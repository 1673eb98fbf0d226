//! The lockout policy for guesses (passwords, second-factor codes, emailed codes), as
//! rules: a scope tolerates some failures, then each attempt locks it for twice as long as
//! the last, up to a cap; a counter forgets after a quiet window. `app::throttle` keeps the
//! counts in the store and reserves each attempt before it is checked.

use chrono::{DateTime, TimeDelta, Utc};

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

/// How long the `failures`-th failure locks the scope, if at all.
pub fn lock_for(failures: u32, limits: &Limits) -> Option<TimeDelta> {
    let over = failures.checked_sub(limits.free_failures + 1)?;
    let factor = 1i64.checked_shl(over.min(30)).unwrap_or(i64::MAX);
    Some(limits.first_lock.checked_mul(factor as i32).unwrap_or(limits.max_lock).min(limits.max_lock))
}

/// What reserving one attempt in a scope comes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reservation {
    /// The scope is locked until then: the attempt is refused and not counted.
    Locked { until: DateTime<Utc> },
    /// The attempt is counted (the `count`-th) and may be checked; it locks the scope for
    /// the attempts after it until `locked_until`, if it reached a threshold.
    Counted { count: u32, locked_until: Option<DateTime<Utc>> },
}

/// Reserves an attempt in a scope that has counted `count` failures and is locked until
/// `locked_until`, at `now`.
pub fn reserve(count: u32, locked_until: Option<DateTime<Utc>>, now: DateTime<Utc>, limits: &Limits) -> Reservation {
    if let Some(until) = locked_until.filter(|until| *until > now) {
        return Reservation::Locked { until };
    }
    let count = count.saturating_add(1);
    Reservation::Counted { count, locked_until: lock_for(count, limits).map(|length| now + length) }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    #[test]
    fn locks_double_after_the_free_failures_up_to_the_cap() {
        let locks: Vec<Option<i64>> = (1..=16).map(|n| lock_for(n, &ACCOUNT).map(|d| d.num_seconds())).collect();
        assert_eq!(&locks[..5], &[None; 5]);
        assert_eq!(&locks[5..11], &[Some(1), Some(2), Some(4), Some(8), Some(16), Some(32)]);
        assert_eq!((locks[14], locks[15]), (Some(512), Some(900)));
        assert_eq!(lock_for(40, &ACCOUNT), Some(TimeDelta::minutes(15)));
        assert_eq!(lock_for(u32::MAX, &ACCOUNT), Some(TimeDelta::minutes(15)));
    }

    #[test]
    fn a_locked_scope_refuses_without_counting_and_an_unlocked_one_counts() {
        let now: DateTime<Utc> = "2026-11-30T12:00:00Z".parse().unwrap();
        let later = now + TimeDelta::seconds(5);
        assert_eq!(reserve(6, Some(later), now, &ACCOUNT), Reservation::Locked { until: later });
        assert_eq!(
            reserve(6, Some(now), now, &ACCOUNT),
            Reservation::Counted { count: 7, locked_until: Some(now + TimeDelta::seconds(2)) }
        );
        assert_eq!(reserve(0, None, now, &ACCOUNT), Reservation::Counted { count: 1, locked_until: None });
    }

    proptest! {
        /// Every limit: no lock within the free failures, then locks that never shrink and
        /// never pass the cap.
        #[test]
        fn locks_never_shrink_and_never_pass_the_cap(failures in 0u32..200, which in 0usize..6) {
            let limits = [ACCOUNT, ADDRESS, REFUSED, CLIENT_SIGNUPS, SECOND_FACTOR, EMAIL_CODE][which];
            let (this, next) = (lock_for(failures, &limits), lock_for(failures + 1, &limits));
            prop_assert_eq!(this.is_none(), failures <= limits.free_failures);
            prop_assert!(next >= this);
            prop_assert!(this.is_none_or(|lock| lock >= limits.first_lock && lock <= limits.max_lock));
        }
    }
}
