//! The re-wrap job: after the key's rotation, every person's data key is wrapped again
//! under the current key version, one page per queue message. A job record counts what
//! was done; a message for a page already counted is dropped, so redelivery neither counts
//! twice nor forks the chain; a job stopped midway resumes from its last cursor.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::vault::{Vault, VaultError};
use crate::ports::queue::QueueName;
use crate::ports::store::{Condition, Cursor, Item, Key, StoreError};
use crate::ports::{Clock, Ids, Queue, Store};

/// Person keys re-wrapped per message.
pub const PAGE: usize = 100;

/// A re-wrap job's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RewrapJob {
    pub id: String,
    pub started_at: DateTime<Utc>,
    /// Pages done so far.
    pub pages: u64,
    pub rewrapped: u64,
    /// Keys changed by someone else (erased, re-wrapped) while their page ran.
    pub skipped: u64,
    /// Where the next page starts (absent when finished).
    pub next_cursor: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// One page of a job, as the queue carries it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RewrapPage {
    pub job: String,
    pub page: u64,
    pub after: Option<String>,
}

/// The queue message body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RewrapMessage {
    pub rewrap: RewrapPage,
}

#[derive(Debug, thiserror::Error)]
pub enum RewrapError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] crate::ports::queue::QueueError),
    #[error("no such job")]
    NotFound,
}

impl crate::app::failure::Permanence for RewrapError {
    fn is_permanent(&self) -> bool {
        match self {
            Self::Store(e) | Self::Vault(VaultError::Store(e)) => e.is_permanent(),
            _ => false,
        }
    }
}

fn job_key(id: &str) -> Key {
    Key::new("MYINFO#REWRAP", id)
}

pub struct Rewrap {
    pub vault: Vault,
    pub queue: std::sync::Arc<dyn Queue>,
    pub clock: std::sync::Arc<dyn Clock>,
    pub ids: std::sync::Arc<dyn Ids>,
}

impl Rewrap {
    fn store(&self) -> &dyn Store {
        self.vault.store.as_ref()
    }

    async fn send(&self, page: RewrapPage) -> Result<(), RewrapError> {
        let body =
            serde_json::to_string(&RewrapMessage { rewrap: page }).map_err(|e| StoreError::Codec(e.to_string()))?;
        self.queue.send(QueueName::Myinfo, vec![body]).await?;
        Ok(())
    }

    /// Starts a job at the first person key.
    pub async fn start(&self) -> Result<RewrapJob, RewrapError> {
        let job = RewrapJob {
            id: self.ids.new_id("rwj"),
            started_at: self.clock.now(),
            pages: 0,
            rewrapped: 0,
            skipped: 0,
            next_cursor: None,
            finished_at: None,
        };
        self.store().put(Item::new(job_key(&job.id), &job)?, Condition::NotExists).await?;
        self.send(RewrapPage { job: job.id.clone(), page: 0, after: None }).await?;
        tracing::info!(job = %job.id, "re-wrap of person data keys started");
        Ok(job)
    }

    /// Sends the next page of an unfinished job again (after its chain stopped).
    pub async fn resume(&self, id: &str) -> Result<RewrapJob, RewrapError> {
        let job = self.job(id).await?.ok_or(RewrapError::NotFound)?;
        if job.finished_at.is_none() {
            self.send(RewrapPage { job: job.id.clone(), page: job.pages, after: job.next_cursor.clone() }).await?;
        }
        Ok(job)
    }

    pub async fn job(&self, id: &str) -> Result<Option<RewrapJob>, StoreError> {
        self.store().get(&job_key(id)).await?.map(|i| i.decode()).transpose()
    }

    /// Does one page: re-wraps it, sends the next, then counts it on the job (once).
    pub async fn run_page(&self, page: &RewrapPage) -> Result<(), RewrapError> {
        let Some(item) = self.store().get(&job_key(&page.job)).await? else { return Ok(()) };
        let mut job: RewrapJob = item.decode()?;
        if job.pages > page.page || job.finished_at.is_some() {
            return Ok(());
        }
        let after = page.after.as_deref().map(Cursor::decode).transpose()?;
        let (done, next) = self.vault.rewrap_page(after, PAGE).await?;
        let next = next.map(|c| c.encode());
        if let Some(after) = &next {
            self.send(RewrapPage { job: job.id.clone(), page: page.page + 1, after: Some(after.clone()) }).await?;
        }
        job.pages = page.page + 1;
        job.rewrapped += done.rewrapped;
        job.skipped += done.skipped;
        job.next_cursor = next.clone();
        if next.is_none() {
            job.finished_at = Some(self.clock.now());
            tracing::info!(job = %job.id, rewrapped = job.rewrapped, skipped = job.skipped, "re-wrap finished");
        }
        match self.store().put(Item::new(job_key(&job.id), &job)?, Condition::VersionIs(item.version)).await {
            Ok(()) | Err(StoreError::ConditionFailed { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
