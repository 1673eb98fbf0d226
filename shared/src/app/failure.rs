//! What a failure means for whoever would try again: a permanent one comes back however
//! often it is tried (a deal that does not exist, a partner's refusal, a message that does
//! not parse) and needs an operator; any other may pass later (the store or a partner
//! busy, a race lost). Errors keep this kind up to the consumer or sweep that decides what
//! to do: a consumer dead-letters a permanent failure at once and lets the queue deliver a
//! passing one again; a sweep reports a permanent failure to operators (it stays pending,
//! and is not worth failing the sweep over) and fails on a passing one, to be run again.

use std::fmt;

use crate::ports::partner::PartnerError;
use crate::ports::queue::QueueError;
use crate::ports::store::StoreError;

/// Whether a failure will come back however often the work is tried again.
pub trait Permanence {
    fn is_permanent(&self) -> bool;
}

impl Permanence for StoreError {
    fn is_permanent(&self) -> bool {
        matches!(self, Self::Codec(_) | Self::Invalid(_) | Self::ForeignCursor)
    }
}

impl Permanence for QueueError {
    fn is_permanent(&self) -> bool {
        matches!(self, Self::Invalid(_))
    }
}

impl Permanence for PartnerError {
    /// A refusal, or a request the partner could not take as sent: nothing changes by
    /// sending it again. A taken reference is looked up on the next try.
    fn is_permanent(&self) -> bool {
        matches!(self, Self::Refused(_) | Self::Rejected(_))
    }
}

/// One piece of work that failed: what it was, whether trying again can help, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub subject: String,
    pub permanent: bool,
    pub reason: String,
}

impl Failure {
    pub fn of(subject: impl Into<String>, error: &(impl fmt::Display + Permanence)) -> Self {
        Self { subject: subject.into(), permanent: error.is_permanent(), reason: error.to_string() }
    }

    /// A failure that trying again cannot mend (what was sent does not read).
    pub fn permanent(subject: impl Into<String>, reason: impl Into<String>) -> Self {
        Self { subject: subject.into(), permanent: true, reason: reason.into() }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.reason)
    }
}

/// What a sweep over pending items did: how many it tried, and each that failed. A
/// failing item does not stop the sweep.
#[derive(Debug, Default)]
pub struct Retried {
    pub tried: usize,
    pub failed: Vec<Failure>,
}

impl Retried {
    /// Counts one item's outcome.
    pub fn record<T, E: fmt::Display + Permanence>(&mut self, id: String, outcome: Result<T, E>) {
        self.tried += 1;
        if let Err(e) = outcome {
            self.failed.push(Failure::of(id, &e));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partners_refusal_is_permanent_and_its_silence_is_not() {
        let kinds = [
            (PartnerError::Refused("no".into()), true),
            (PartnerError::Rejected("bad".into()), true),
            (PartnerError::Conflict("taken".into()), false),
            (PartnerError::Timeout, false),
            (PartnerError::Throttled, false),
        ];
        for (error, permanent) in kinds {
            assert_eq!(error.is_permanent(), permanent, "{error:?}");
            assert_eq!(Failure::of("x", &error).permanent, permanent);
        }
        assert!(StoreError::Codec("not json".into()).is_permanent());
        assert!(!StoreError::Conflict.is_permanent());
        assert!(QueueError::Invalid("too long".into()).is_permanent());
    }

    #[test]
    fn a_sweep_counts_each_item_and_keeps_each_failures_kind() {
        let mut retried = Retried::default();
        retried.record("a".into(), Ok::<(), StoreError>(()));
        retried.record("b".into(), Err::<(), _>(StoreError::Conflict));
        retried.record("c".into(), Err::<(), _>(StoreError::Codec("bad".into())));
        assert_eq!(retried.tried, 3);
        let kinds: Vec<_> = retried.failed.iter().map(|f| (f.subject.as_str(), f.permanent)).collect();
        assert_eq!(kinds, [("b", false), ("c", true)]);
        assert!(retried.failed[1].to_string().starts_with("c: "), "{}", retried.failed[1]);
    }
}
