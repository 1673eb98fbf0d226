//! A deal's settlement as rules: its phases, and the life of its external legs (the
//! proceeds to the issuer, the distribution the Custody approves). `app::settlement` moves
//! the money and keeps the state; these decide where it goes next.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
/// Where a settlement stands: legs (holds posted or voided), proceeds, distribution,
/// awaiting the Custody's approval, issuing, and one of the two ends.
pub enum Phase {
    Legs,
    Proceeds,
    Distribution,
    AwaitingApproval,
    Issuing,
    Issued,
    Rejected,
}

impl Phase {
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Issued | Self::Rejected)
    }

    /// The phase after every hold was settled: the proceeds go to the issuer if anything
    /// was charged, otherwise (nothing sold) straight to issuing nothing.
    pub fn after_legs(charged: u128) -> Self {
        if charged > 0 { Self::Proceeds } else { Self::Issuing }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LegKind {
    /// The proceeds to the issuer's account at the Custody.
    Proceeds,
    /// The distribution submitted for the Custody's approval.
    Distribution,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LegStatus {
    Pending,
    Confirmed,
    /// The Custody rejected it (a distribution): final.
    Rejected,
    /// Refused, or past its deadline: waits for a finance operator's retry.
    Stuck,
}

impl LegStatus {
    /// Whether the leg waits for a finance operator: stuck, or pending past its deadline.
    pub fn waits_for_operator(self, deadline: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self == Self::Stuck || (self == Self::Pending && deadline <= now)
    }

    /// Whether a failed attempt leaves the leg stuck: a failure not worth retrying, or
    /// one past the deadline.
    pub fn stuck_after_failure(retryable: bool, deadline: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        !retryable || deadline <= now
    }

    /// The Custody's decision on a distribution.
    pub fn on_decision(approved: bool) -> Self {
        if approved { Self::Confirmed } else { Self::Rejected }
    }

    /// An operator's retry: pending again, unless the leg already ended (answers which end).
    pub fn retried(self) -> Result<Self, &'static str> {
        match self {
            Self::Confirmed => Err("confirmed"),
            Self::Rejected => Err("rejected"),
            Self::Pending | Self::Stuck => Ok(Self::Pending),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    #[test]
    fn phases_and_legs_follow_the_table() {
        assert_eq!((Phase::after_legs(1), Phase::after_legs(0)), (Phase::Proceeds, Phase::Issuing));
        let finished: Vec<Phase> = [
            Phase::Legs,
            Phase::Proceeds,
            Phase::Distribution,
            Phase::AwaitingApproval,
            Phase::Issuing,
            Phase::Issued,
            Phase::Rejected,
        ]
        .into_iter()
        .filter(|p| p.is_finished())
        .collect();
        assert_eq!(finished, [Phase::Issued, Phase::Rejected]);

        let now: DateTime<Utc> = "2026-11-30T12:00:00Z".parse().unwrap();
        let (past, future) = (now - TimeDelta::seconds(1), now + TimeDelta::minutes(15));
        for (status, deadline, waits) in [
            (LegStatus::Stuck, future, true),
            (LegStatus::Pending, past, true),
            (LegStatus::Pending, now, true),
            (LegStatus::Pending, future, false),
            (LegStatus::Confirmed, past, false),
            (LegStatus::Rejected, past, false),
        ] {
            assert_eq!(status.waits_for_operator(deadline, now), waits, "{status:?} {deadline}");
        }
        assert!(LegStatus::stuck_after_failure(false, future, now), "a refusal is not retried");
        assert!(LegStatus::stuck_after_failure(true, past, now), "past the deadline");
        assert!(!LegStatus::stuck_after_failure(true, future, now));
        assert_eq!(
            (LegStatus::on_decision(true), LegStatus::on_decision(false)),
            (LegStatus::Confirmed, LegStatus::Rejected)
        );
        assert_eq!(LegStatus::Stuck.retried(), Ok(LegStatus::Pending));
        assert_eq!(LegStatus::Pending.retried(), Ok(LegStatus::Pending));
        assert_eq!(
            (LegStatus::Confirmed.retried(), LegStatus::Rejected.retried()),
            (Err("confirmed"), Err("rejected"))
        );
    }
}
