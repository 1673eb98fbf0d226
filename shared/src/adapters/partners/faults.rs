//! Faults a simulator injects into its next calls.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// The call fails (the chain answers unavailable; the bank reports the payout failed).
    Fail,
    /// The call is answered after `delay_ms`.
    Delay,
    /// The effect is delivered twice (the chain receives the record twice; the bank sends
    /// its webhook twice).
    Duplicate,
    /// The call takes effect but the caller hears a timeout (the bank's payout outcome
    /// follows `delay_ms` later).
    TimeoutAfterCommit,
    /// The Custody only: it rejects the next distribution submitted.
    Reject,
    /// The Custody only: it approves the next distribution `delay_ms` after it is submitted
    /// (until then it answers pending).
    ApproveLate,
    /// The chain only: it acknowledges the record but keeps nothing (a lost record).
    Lose,
    /// The Custody only: it books the transfer one unit (one cent) short.
    BookShort,
    /// The bank only: it answers `429` (slow down) and does nothing.
    Throttle,
    /// The bank only: it answers `409` (the reference is taken) whether or not it holds it.
    Conflict,
    /// The bank only: it refuses the payout for good (`422`) and pays nothing.
    Refuse,
}

impl FaultKind {
    /// Whether the fault is about the Custody's decision on a distribution, not a call.
    pub fn is_decision(self) -> bool {
        matches!(self, Self::Reject | Self::ApproveLate)
    }
}

/// Orders the calls of every simulator in the process: each call-log entry takes the next
/// number, so tests can tell which partner saw what first.
pub fn next_seq() -> u64 {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A fault for the next `times` calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    pub kind: FaultKind,
    #[serde(default = "one")]
    pub times: u32,
    #[serde(default)]
    pub delay_ms: u64,
}

fn one() -> u32 {
    1
}

impl Fault {
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.min(600_000))
    }
}

/// The faults queued for a simulator, consumed one call at a time.
#[derive(Debug, Default)]
pub struct Faults(Mutex<VecDeque<Fault>>);

impl Faults {
    pub fn inject(&self, fault: Fault) {
        if fault.times > 0 {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).push_back(fault);
        }
    }

    pub fn clear(&self) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// The fault for this call, if one is queued.
    pub fn next(&self) -> Option<Fault> {
        let mut queue = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let front = queue.front_mut()?;
        let fault = *front;
        front.times -= 1;
        if front.times == 0 {
            queue.pop_front();
        }
        Some(fault)
    }
}
