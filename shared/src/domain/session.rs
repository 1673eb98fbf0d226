//! Login sessions as refresh-token families, and the rule that decides every refresh.
//!
//! A family starts at login with generation 0. Refresh token *g* of a family is derived
//! from a server secret, the family id and *g*, so the server stores only hashes yet can
//! hand the same successor to concurrent refreshes. Presenting the current token rotates
//! the family (one conditional write); presenting the one just before it, within the
//! grace window, replays the successor; presenting any genuine older token is reuse, and
//! reuse revokes the family. Idle and absolute lifetimes bound every family.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// Lifetimes; all of them configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPolicy {
    pub access_ttl: TimeDelta,
    /// A refresh token unused this long is dead; each rotation re-arms it.
    pub idle: TimeDelta,
    /// From login; never extended.
    pub absolute: TimeDelta,
    /// How long the token just rotated away still yields the same successor.
    pub grace: TimeDelta,
    /// Accepted clock skew when checking an access token's expiry.
    pub leeway: TimeDelta,
    /// A signing key this old is replaced when a process loads the keys.
    pub signing_key_max_age: TimeDelta,
}

impl SessionPolicy {
    /// How long a replaced signing key stays published: every token it signed has expired
    /// by then.
    pub fn key_overlap(&self) -> TimeDelta {
        self.access_ttl + self.leeway + TimeDelta::minutes(5)
    }
}

impl Default for SessionPolicy {
    fn default() -> Self {
        Self {
            access_ttl: TimeDelta::minutes(10),
            idle: TimeDelta::minutes(10),
            absolute: TimeDelta::hours(12),
            grace: TimeDelta::seconds(5),
            leeway: TimeDelta::seconds(30),
            signing_key_max_age: TimeDelta::days(30),
        }
    }
}

/// Why a family no longer yields tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RevokedBecause {
    Logout,
    LogoutAll,
    PasswordChanged,
    ReuseDetected,
    /// An operator role was removed: its tokens must stop working at once.
    RolesChanged,
}

/// A refresh-token family as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Family {
    pub id: String,
    pub user_id: String,
    /// The generation of the only token that rotates.
    pub generation: u64,
    pub rotated_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub idle_expires_at: DateTime<Utc>,
    pub absolute_expires_at: DateTime<Utc>,
    pub revoked: Option<(DateTime<Utc>, RevokedBecause)>,
    /// When the login proved a second factor (absent for a password-only login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub second_factor_at: Option<DateTime<Utc>>,
}

impl Family {
    pub fn start(id: String, user_id: String, now: DateTime<Utc>, policy: &SessionPolicy) -> Self {
        let absolute_expires_at = now + policy.absolute;
        Self {
            id,
            user_id,
            generation: 0,
            rotated_at: now,
            created_at: now,
            idle_expires_at: (now + policy.idle).min(absolute_expires_at),
            absolute_expires_at,
            revoked: None,
            second_factor_at: None,
        }
    }

    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.revoked.is_none() && now < self.idle_expires_at && now < self.absolute_expires_at
    }
}

/// What to do with a presented, genuine refresh token of generation `presented`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refresh {
    /// Write this family (conditionally on the version read) and hand out its token.
    Rotate(Family),
    /// A concurrent refresh rotated first: hand out the current token again.
    Replay { generation: u64 },
    /// A spent token: revoke the family (write this) and refuse.
    Reuse(Family),
    /// Refuse; nothing changes.
    Refuse(Refused),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Revoked,
    IdleExpired,
    AbsoluteExpired,
}

/// Decides a refresh. `presented` is the generation of a token whose authenticity the
/// caller has checked.
pub fn refresh(family: &Family, presented: u64, now: DateTime<Utc>, policy: &SessionPolicy) -> Refresh {
    if family.revoked.is_some() {
        return Refresh::Refuse(Refused::Revoked);
    }
    if now >= family.absolute_expires_at {
        return Refresh::Refuse(Refused::AbsoluteExpired);
    }
    let just_rotated = presented + 1 == family.generation && now - family.rotated_at <= policy.grace;
    if just_rotated {
        return Refresh::Replay { generation: family.generation };
    }
    if presented != family.generation {
        return Refresh::Reuse(Family { revoked: Some((now, RevokedBecause::ReuseDetected)), ..family.clone() });
    }
    if now >= family.idle_expires_at {
        return Refresh::Refuse(Refused::IdleExpired);
    }
    Refresh::Rotate(Family {
        generation: family.generation + 1,
        rotated_at: now,
        idle_expires_at: (now + policy.idle).min(family.absolute_expires_at),
        ..family.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_764_000_000 + seconds, 0).unwrap()
    }

    fn family() -> Family {
        Family::start("fam".into(), "usr".into(), at(0), &SessionPolicy::default())
    }

    fn rotated(family: &Family, now: DateTime<Utc>) -> Family {
        match refresh(family, family.generation, now, &SessionPolicy::default()) {
            Refresh::Rotate(next) => next,
            other => panic!("expected a rotation, got {other:?}"),
        }
    }

    /// A replaced signing key stays published until every token it signed has expired,
    /// leeway included.
    #[test]
    fn a_replaced_key_outlives_every_token_it_signed() {
        let lenient = SessionPolicy { leeway: TimeDelta::minutes(10), ..SessionPolicy::default() };
        for policy in [SessionPolicy::default(), lenient] {
            assert!(policy.key_overlap() > policy.access_ttl + policy.leeway, "{:?}", policy.key_overlap());
        }
    }

    #[test]
    fn a_family_ends_at_its_idle_expiry() {
        let family = family();
        assert!(family.is_live(family.idle_expires_at - TimeDelta::seconds(1)));
        assert!(!family.is_live(family.idle_expires_at));
    }

    /// A family as stored may say anything of its idle expiry (one written before a policy
    /// change): the absolute expiry ends it all the same.
    #[test]
    fn a_family_ends_at_its_absolute_expiry_whatever_its_idle_expiry_says() {
        let mut stored = family();
        stored.idle_expires_at = stored.absolute_expires_at + TimeDelta::hours(1);
        assert!(stored.is_live(stored.absolute_expires_at - TimeDelta::seconds(1)));
        assert!(!stored.is_live(stored.absolute_expires_at));
    }

    #[test]
    fn the_current_token_rotates_and_re_arms_the_idle_life() {
        let next = rotated(&family(), at(60));
        assert_eq!(next.generation, 1);
        assert_eq!(next.idle_expires_at, at(60 + 600));
        assert_eq!(next.absolute_expires_at, family().absolute_expires_at);
    }

    #[test]
    fn the_previous_token_within_grace_replays_the_successor_and_after_grace_is_reuse() {
        let next = rotated(&family(), at(60));
        assert_eq!(refresh(&next, 0, at(65), &SessionPolicy::default()), Refresh::Replay { generation: 1 });
        match refresh(&next, 0, at(66), &SessionPolicy::default()) {
            Refresh::Reuse(revoked) => assert_eq!(revoked.revoked, Some((at(66), RevokedBecause::ReuseDetected))),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_token_two_generations_old_is_reuse_even_inside_grace() {
        let second = rotated(&rotated(&family(), at(10)), at(11));
        assert!(matches!(refresh(&second, 0, at(12), &SessionPolicy::default()), Refresh::Reuse(_)));
    }

    #[test]
    fn idle_and_absolute_lifetimes_end_the_family() {
        let policy = SessionPolicy::default();
        assert_eq!(refresh(&family(), 0, at(600), &policy), Refresh::Refuse(Refused::IdleExpired));
        // Rotating every 5 minutes never passes the absolute limit.
        let mut current = family();
        let mut now = 0;
        while now + 300 < 12 * 3600 {
            now += 300;
            current = rotated(&current, at(now));
        }
        assert_eq!(current.idle_expires_at, current.absolute_expires_at);
        assert_eq!(
            refresh(&current, current.generation, at(12 * 3600), &policy),
            Refresh::Refuse(Refused::AbsoluteExpired)
        );
    }

    proptest! {
        /// Whatever the sequence of refreshes, a family's generation only grows by one per
        /// rotation, its absolute expiry never moves, idle expiry never passes it, and
        /// once revoked it yields nothing.
        #[test]
        fn refresh_never_extends_the_absolute_life_and_revocation_is_final(
            steps in proptest::collection::vec((0i64..400, 0u64..3), 1..60),
        ) {
            let policy = SessionPolicy::default();
            let mut current = family();
            let mut now = 0;
            for (wait, behind) in steps {
                now += wait;
                let presented = current.generation.saturating_sub(behind);
                let before = current.clone();
                match refresh(&current, presented, at(now), &policy) {
                    Refresh::Rotate(next) => {
                        prop_assert!(before.is_live(at(now)));
                        prop_assert_eq!(next.generation, before.generation + 1);
                        current = next;
                    }
                    Refresh::Replay { generation } => {
                        prop_assert_eq!(generation, before.generation);
                        prop_assert_eq!(presented + 1, before.generation);
                    }
                    Refresh::Reuse(next) => {
                        prop_assert!(before.revoked.is_none());
                        prop_assert!(next.revoked.is_some());
                        current = next;
                    }
                    Refresh::Refuse(_) => prop_assert!(!before.is_live(at(now)) || before.revoked.is_some()),
                }
                prop_assert_eq!(current.absolute_expires_at, family().absolute_expires_at);
                prop_assert!(current.idle_expires_at <= current.absolute_expires_at);
                if before.revoked.is_some() {
                    prop_assert_eq!(&current, &before);
                }
            }
        }
    }
}
