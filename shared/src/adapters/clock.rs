//! Clocks and id generators: the system ones, and ones tests control.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

use crate::ports::{Clock, Ids};

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to, with millisecond resolution.
#[derive(Debug)]
pub struct ManualClock {
    millis: AtomicI64,
}

impl ManualClock {
    pub fn at(start: DateTime<Utc>) -> Self {
        Self { millis: AtomicI64::new(start.timestamp_millis()) }
    }

    pub fn advance(&self, by: TimeDelta) {
        self.millis.fetch_add(by.num_milliseconds(), Ordering::SeqCst);
    }

    pub fn set(&self, to: DateTime<Utc>) {
        self.millis.store(to.timestamp_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.millis.load(Ordering::SeqCst)).unwrap_or_default()
    }
}

/// ULIDs: 48 bits of milliseconds and 80 random bits, monotonic within a millisecond,
/// so ids sort by creation time.
#[derive(Default)]
pub struct UlidIds {
    generator: Mutex<ulid::Generator>,
}

impl Ids for UlidIds {
    fn new_id(&self, prefix: &str) -> String {
        let mut generator = self.generator.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // The generator fails only when 2^80 ids were made in one millisecond.
        let id = generator.generate().unwrap_or_else(|_| ulid::Ulid::new());
        format!("{prefix}_{id}")
    }
}

/// Predictable ids for tests: `prefix_00000000000000000000000001`, then 2, 3...
#[derive(Debug, Default)]
pub struct SequentialIds {
    next: AtomicU64,
}

impl Ids for SequentialIds {
    fn new_id(&self, prefix: &str) -> String {
        let n = self.next.fetch_add(1, Ordering::SeqCst) + 1;
        format!("{prefix}_{n:026}")
    }
}
