//! Time and identifiers, behind traits so tests control both.

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub trait Ids: Send + Sync {
    /// A new unique, time-ordered identifier: `prefix` + `_` + 26 Crockford characters.
    fn new_id(&self, prefix: &str) -> String;
}
