//! The chain simulator: an append-only book of its own (one transfer a block), kept in a
//! JSON-lines file when given one, answering balances as of any height.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use serde::Serialize;

use super::faults::{FaultKind, Faults};
use crate::ports::chain::{Chain, ChainTransfer, Receipt};
use crate::ports::partner::PartnerError;

/// Calls kept for `GET /sim/chain/calls`.
const CALL_LOG: usize = 100_000;

/// One call as the simulator saw it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ChainCall {
    /// The call's place among every simulator's calls.
    pub seq: u64,
    pub transfer_id: String,
    pub outcome: String,
}

#[derive(Default)]
struct Book {
    blocks: Vec<ChainTransfer>,
    by_id: HashMap<String, u64>,
    /// Per (asset, account), in that order: (height, balance after) for every block that
    /// touched it.
    history: BTreeMap<(String, String), Vec<(u64, i128)>>,
    calls: VecDeque<ChainCall>,
}

impl Book {
    fn append(&mut self, transfer: ChainTransfer) -> u64 {
        let height = self.blocks.len() as u64 + 1;
        for (account, sign) in [(&transfer.debit, -1), (&transfer.credit, 1)] {
            let history = self.history.entry((transfer.asset.clone(), account.clone())).or_default();
            let before = history.last().map_or(0, |(_, b)| *b);
            history.push((height, before + sign * i128::from(transfer.amount)));
        }
        self.by_id.insert(transfer.transfer_id.clone(), height);
        self.blocks.push(transfer);
        height
    }

    fn log(&mut self, transfer_id: &str, outcome: &str) {
        if self.calls.len() == CALL_LOG {
            self.calls.pop_front();
        }
        self.calls.push_back(ChainCall {
            seq: super::faults::next_seq(),
            transfer_id: transfer_id.to_owned(),
            outcome: outcome.to_owned(),
        });
    }
}

pub struct ChainSimulator {
    book: Mutex<Book>,
    file: Option<PathBuf>,
    pub faults: Faults,
}

impl ChainSimulator {
    /// A chain that forgets everything when dropped.
    pub fn in_memory() -> Self {
        Self { book: Mutex::new(Book::default()), file: None, faults: Faults::default() }
    }

    /// A chain kept in `path` (created if missing).
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let mut book = Book::default();
        if path.exists() {
            for line in std::io::BufReader::new(std::fs::File::open(path)?).lines() {
                let transfer = serde_json::from_str(&line?).map_err(std::io::Error::other)?;
                book.append(transfer);
            }
        }
        Ok(Self { book: Mutex::new(book), file: Some(path.to_owned()), faults: Faults::default() })
    }

    /// The latest calls, oldest first.
    pub fn calls(&self) -> Vec<ChainCall> {
        self.lock().calls.iter().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records once: the same id answers its block; the same id with other fields is refused.
    fn commit(&self, transfer: &ChainTransfer) -> Result<Receipt, PartnerError> {
        let mut book = self.lock();
        if let Some(&height) = book.by_id.get(&transfer.transfer_id) {
            let original = &book.blocks[height as usize - 1];
            if (&original.debit, &original.credit, &original.asset, original.amount)
                != (&transfer.debit, &transfer.credit, &transfer.asset, transfer.amount)
            {
                book.log(&transfer.transfer_id, "refused: id reused");
                return Err(PartnerError::Conflict(format!(
                    "transfer {} was recorded with other fields",
                    transfer.transfer_id
                )));
            }
            book.log(&transfer.transfer_id, "duplicate");
            return Ok(Receipt { height, duplicate: true });
        }
        if let Some(path) = &self.file {
            let line = serde_json::to_string(transfer).map_err(|e| PartnerError::Unavailable(e.to_string()))?;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| PartnerError::Unavailable(e.to_string()))?;
            writeln!(file, "{line}").map_err(|e| PartnerError::Unavailable(e.to_string()))?;
        }
        let height = book.append(transfer.clone());
        book.log(&transfer.transfer_id, "recorded");
        Ok(Receipt { height, duplicate: false })
    }
}

#[async_trait]
impl Chain for ChainSimulator {
    async fn record(&self, transfer: &ChainTransfer) -> Result<Receipt, PartnerError> {
        match self.faults.next() {
            None => self.commit(transfer),
            Some(fault) => match fault.kind {
                FaultKind::Lose => {
                    let mut book = self.lock();
                    book.log(&transfer.transfer_id, "lost (injected)");
                    Ok(Receipt { height: book.blocks.len() as u64, duplicate: false })
                }
                FaultKind::Fail
                | FaultKind::Reject
                | FaultKind::ApproveLate
                | FaultKind::BookShort
                | FaultKind::Throttle
                | FaultKind::Conflict
                | FaultKind::Refuse => {
                    self.lock().log(&transfer.transfer_id, "failed (injected)");
                    Err(PartnerError::Unavailable("injected failure".into()))
                }
                FaultKind::Delay => {
                    tokio::time::sleep(fault.delay()).await;
                    self.commit(transfer)
                }
                FaultKind::Duplicate => {
                    self.commit(transfer)?;
                    self.commit(transfer)
                }
                FaultKind::TimeoutAfterCommit => {
                    self.commit(transfer)?;
                    Err(PartnerError::Timeout)
                }
            },
        }
    }

    async fn balance(&self, account: &str, asset: &str, height: Option<u64>) -> Result<i128, PartnerError> {
        let book = self.lock();
        let Some(history) = book.history.get(&(asset.to_owned(), account.to_owned())) else { return Ok(0) };
        Ok(as_of(history, height.unwrap_or(u64::MAX)).unwrap_or(0))
    }

    async fn height_at(&self, at: chrono::DateTime<chrono::Utc>) -> Result<u64, PartnerError> {
        let book = self.lock();
        Ok(book.blocks.iter().position(|b| b.at > at).unwrap_or(book.blocks.len()) as u64)
    }

    async fn balances(
        &self,
        asset: &str,
        height: u64,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<(String, i128)>, PartnerError> {
        use std::ops::Bound;
        if self.faults.next().is_some_and(|f| f.kind == FaultKind::Fail) {
            return Err(PartnerError::Unavailable("injected failure".into()));
        }
        let book = self.lock();
        let from = match after {
            Some(after) => Bound::Excluded((asset.to_owned(), after.to_owned())),
            None => Bound::Included((asset.to_owned(), String::new())),
        };
        Ok(book
            .history
            .range((from, Bound::Unbounded))
            .take_while(|((a, _), _)| a == asset)
            .filter_map(|((_, account), history)| Some((account.clone(), as_of(history, height)?)))
            .take(limit)
            .collect())
    }

    async fn height(&self) -> Result<u64, PartnerError> {
        Ok(self.lock().blocks.len() as u64)
    }
}

/// The balance after the last block at or before `height` that touched the account.
fn as_of(history: &[(u64, i128)], height: u64) -> Option<i128> {
    let upto = history.partition_point(|(h, _)| *h <= height);
    (upto > 0).then(|| history[upto - 1].1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::partners::{Fault, FaultKind};

    fn transfer(id: &str, amount: u64) -> ChainTransfer {
        ChainTransfer {
            transfer_id: id.into(),
            debit: "omnibus".into(),
            credit: "alice".into(),
            asset: "SGD".into(),
            amount,
            code: 1,
            at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
        }
    }

    #[tokio::test]
    async fn balances_as_of_a_height_survive_a_reopen_and_ids_record_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("chain.jsonl");
        let chain = ChainSimulator::open(&path).unwrap();
        assert_eq!(chain.record(&transfer("a", 100)).await.unwrap(), Receipt { height: 1, duplicate: false });
        chain.faults.inject(Fault { kind: FaultKind::TimeoutAfterCommit, times: 1, delay_ms: 0 });
        assert_eq!(chain.record(&transfer("b", 50)).await, Err(PartnerError::Timeout));
        assert_eq!(chain.record(&transfer("b", 50)).await.unwrap(), Receipt { height: 2, duplicate: true });
        assert!(matches!(chain.record(&transfer("b", 51)).await, Err(PartnerError::Conflict(_))));
        drop(chain);
        let chain = ChainSimulator::open(&path).unwrap();
        assert_eq!(chain.balance("alice", "SGD", Some(1)).await.unwrap(), 100);
        assert_eq!(chain.balance("alice", "SGD", None).await.unwrap(), 150);
        assert_eq!(chain.balance("omnibus", "SGD", None).await.unwrap(), -150);
        assert_eq!(chain.balance("alice", "SGD", Some(0)).await.unwrap(), 0);
        assert_eq!(chain.height().await.unwrap(), 2);
    }
}
