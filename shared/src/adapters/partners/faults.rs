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
    /// The call takes effect but the caller hears a timeout.
    TimeoutAfterCommit,
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
        Duration::from_millis(self.delay_ms.min(30_000))
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
