//! The Custody simulator: books of its own (money transfers by reference, DABS credited
//! when it approves a distribution), balances as of any time, a call log, and faults:
//! fail, delay, duplicate, time out after committing, reject the next distribution, or
//! approve it late. Decisions reach the platform as signed callbacks, as the Custody's
//! would, and can be polled. Given a file, it keeps a journal of every change to its books
//! (JSON lines) and replays it when opened again, so the local runner's Custody survives a
//! restart as its ledger and chain do.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, Write as _};
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::callback::Callback;
use super::faults::{Fault, FaultKind, Faults, next_seq};
use crate::domain::allocation::Checksum;
use crate::ports::Clock;
use crate::ports::custody::{
    Custody, CustodyBalance, CustodyEvent, CustodyReceipt, CustodyTransfer, Decision, Distribution, DistributionEntry,
};
use crate::ports::partner::PartnerError;

/// Calls kept for `GET /sim/custody/calls`.
const CALL_LOG: usize = 100_000;

/// Header names of the signed callback.
pub const TIMESTAMP_HEADER: &str = "custody-timestamp";
pub const SIGNATURE_HEADER: &str = "custody-signature";

/// One call (or decision) as the simulator saw it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CustodyCall {
    /// The call's place among every simulator's calls.
    pub seq: u64,
    pub call: String,
    pub reference: String,
    pub outcome: String,
}

#[derive(Default)]
struct Pending {
    pages: BTreeMap<u32, Vec<DistributionEntry>>,
    submitted: Option<Distribution>,
    decision: Option<Decision>,
}

/// An account's history: (when, balance after) for every booking that touched it.
type History = Vec<(DateTime<Utc>, i128)>;

/// A change to the books, as journalled and replayed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "entry", rename_all = "snake_case")]
enum Entry {
    /// A transfer as asked, its receipt, and the amount booked (short under a fault).
    Booked {
        transfer: CustodyTransfer,
        receipt: CustodyReceipt,
        amount: u64,
    },
    Page {
        reference: String,
        page: u32,
        entries: Vec<DistributionEntry>,
    },
    Submitted {
        distribution: Distribution,
    },
    /// An approval books the distribution's units at `at`.
    Decided {
        reference: String,
        decision: Decision,
        at: DateTime<Utc>,
    },
}

#[derive(Default)]
struct Books {
    transfers: HashMap<String, (CustodyTransfer, CustodyReceipt)>,
    /// Per asset, per account, sorted by account.
    history: HashMap<String, BTreeMap<String, History>>,
    distributions: HashMap<String, Pending>,
    calls: VecDeque<CustodyCall>,
    journal: Option<std::fs::File>,
}

impl Books {
    fn log(&mut self, call: &str, reference: &str, outcome: &str) {
        if self.calls.len() == CALL_LOG {
            self.calls.pop_front();
        }
        let (call, reference, outcome) = (call.to_owned(), reference.to_owned(), outcome.to_owned());
        self.calls.push_back(CustodyCall { seq: next_seq(), call, reference, outcome });
    }

    fn book(&mut self, asset: &str, debit: &str, credit: &str, amount: u64, at: DateTime<Utc>) {
        let accounts = self.history.entry(asset.to_owned()).or_default();
        for (account, sign) in [(debit, -1), (credit, 1)] {
            let history = accounts.entry(account.to_owned()).or_default();
            let before = history.last().map_or(0, |(_, b)| *b);
            history.push((at, before + sign * i128::from(amount)));
        }
    }

    /// Applies a change and journals it.
    fn commit(&mut self, entry: Entry) {
        if let Some(file) = &mut self.journal {
            let written =
                serde_json::to_string(&entry).map_err(std::io::Error::other).and_then(|line| writeln!(file, "{line}"));
            if let Err(error) = written {
                tracing::error!(%error, "the Custody simulator could not journal a change");
            }
        }
        self.apply(entry);
    }

    /// The one place the books change, live and on replay.
    fn apply(&mut self, entry: Entry) {
        match entry {
            Entry::Booked { transfer, receipt, amount } => {
                self.book(&transfer.asset, &transfer.debit, &transfer.credit, amount, receipt.at);
                self.transfers.insert(transfer.reference.clone(), (transfer, receipt));
            }
            Entry::Page { reference, page, entries } => {
                self.distributions.entry(reference).or_default().pages.insert(page, entries);
            }
            Entry::Submitted { distribution } => {
                let reference = distribution.reference.clone();
                self.distributions.entry(reference).or_default().submitted = Some(distribution);
            }
            Entry::Decided { reference, decision, at } => {
                let pending = self.distributions.entry(reference).or_default();
                pending.decision = Some(decision.clone());
                if decision == Decision::Approved
                    && let Some(submitted) = pending.submitted.clone()
                {
                    let entries: Vec<DistributionEntry> = pending.pages.values().flatten().cloned().collect();
                    let source = format!("custody:issuance:{}", submitted.asset);
                    for e in entries.iter().filter(|e| e.units > 0) {
                        self.book(&submitted.asset, &source, &e.account, e.units, at);
                    }
                }
            }
        }
    }

    /// Checks a submitted distribution against its pages; books the units if they agree.
    fn decide(&mut self, reference: &str, at: DateTime<Utc>) -> Decision {
        let Some(pending) = self.distributions.get(reference) else {
            return Decision::Rejected { reason: "unknown distribution".into() };
        };
        let Some(submitted) = pending.submitted.clone() else {
            return Decision::Rejected { reason: "not submitted".into() };
        };
        let entries: Vec<DistributionEntry> = pending.pages.values().flatten().cloned().collect();
        let mut checksum = Checksum::default();
        for e in &entries {
            checksum.add(&e.subscription_id, e.units);
        }
        let units: u64 = entries.iter().map(|e| e.units).sum();
        let decision = if pending.pages.len() as u32 != submitted.pages
            || entries.len() as u64 != submitted.entries
            || units != submitted.units
            || checksum.hex() != submitted.checksum
        {
            Decision::Rejected { reason: "the entries do not add up to the submitted totals and checksum".into() }
        } else {
            Decision::Approved
        };
        self.settle(reference, decision.clone(), at);
        decision
    }

    fn settle(&mut self, reference: &str, decision: Decision, at: DateTime<Utc>) {
        if self.distributions.contains_key(reference) {
            self.commit(Entry::Decided { reference: reference.to_owned(), decision: decision.clone(), at });
        }
        let outcome = match &decision {
            Decision::Approved => "approved",
            Decision::Rejected { .. } => "rejected",
            Decision::Pending => "pending",
        };
        self.log("decision", reference, outcome);
    }
}

struct Inner {
    books: Mutex<Books>,
    callback: Callback,
    clock: Arc<dyn Clock>,
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the platform (twice under a duplicate fault).
    async fn notify(&self, reference: &str, decision: Decision, times: usize) {
        for _ in 0..times {
            let event = CustodyEvent::DistributionDecided {
                event_id: format!("cevt_{}", next_seq()),
                reference: reference.to_owned(),
                decision: decision.clone(),
            };
            let status = self.callback.post(&event).await;
            self.lock().log("callback", reference, &format!("answered {status}"));
        }
    }
}

pub struct CustodySimulator {
    inner: Arc<Inner>,
    /// Faults of the next calls (fail, delay, duplicate, timeout after commit).
    faults: Faults,
    /// Decisions of the next distributions submitted (reject, approve late).
    decisions: Faults,
}

impl CustodySimulator {
    /// A Custody that signs its callbacks with `secret`; they go nowhere until [`Self::target`].
    pub fn new(secret: Vec<u8>, clock: Arc<dyn Clock>) -> Self {
        Self::with_books(Books::default(), secret, clock)
    }

    /// The same, with its books journalled in `path` (replayed if it exists).
    pub fn open(path: &Path, secret: Vec<u8>, clock: Arc<dyn Clock>) -> std::io::Result<Self> {
        let mut books = Books::default();
        if path.exists() {
            for line in std::io::BufReader::new(std::fs::File::open(path)?).lines() {
                books.apply(serde_json::from_str(&line?).map_err(std::io::Error::other)?);
            }
        }
        books.journal = Some(std::fs::OpenOptions::new().create(true).append(true).open(path)?);
        Ok(Self::with_books(books, secret, clock))
    }

    fn with_books(books: Books, secret: Vec<u8>, clock: Arc<dyn Clock>) -> Self {
        let callback = Callback::new(secret, (TIMESTAMP_HEADER, SIGNATURE_HEADER), clock.clone());
        Self {
            inner: Arc::new(Inner { books: Mutex::new(books), callback, clock }),
            faults: Faults::default(),
            decisions: Faults::default(),
        }
    }

    /// Where callbacks go: the platform's `POST /v1/webhooks/custody`.
    pub fn target(&self, url: String) {
        self.inner.callback.target(url);
    }

    /// Queues a fault: decisions for the next distributions, the others for the next calls.
    pub fn inject(&self, fault: Fault) {
        if fault.kind.is_decision() { self.decisions.inject(fault) } else { self.faults.inject(fault) }
    }

    pub fn clear_faults(&self) {
        self.faults.clear();
        self.decisions.clear();
    }

    /// The latest calls, oldest first.
    pub fn calls(&self) -> Vec<CustodyCall> {
        self.inner.lock().calls.iter().cloned().collect()
    }

    /// An account's latest balance in an asset.
    pub fn balance(&self, account: &str, asset: &str) -> i128 {
        let books = self.inner.lock();
        books.history.get(asset).and_then(|a| a.get(account)).and_then(|h| h.last()).map_or(0, |(_, b)| *b)
    }

    /// The fault for this call: fails at once, or sleeps first under a delay.
    async fn call_fault(&self, call: &str, reference: &str) -> Result<Option<Fault>, PartnerError> {
        let fault = self.faults.next();
        match fault.map(|f| f.kind) {
            Some(FaultKind::Fail) => {
                self.inner.lock().log(call, reference, "failed (injected)");
                Err(PartnerError::Unavailable("injected failure".into()))
            }
            Some(FaultKind::Delay) => {
                tokio::time::sleep(fault.map(|f| f.delay()).unwrap_or_default()).await;
                Ok(fault)
            }
            _ => Ok(fault),
        }
    }

    /// Books a transfer once (`amount` of it: short under a fault); the same reference again
    /// answers the first receipt, with other fields it is refused.
    fn book_transfer(&self, transfer: &CustodyTransfer, amount: u64) -> Result<CustodyReceipt, PartnerError> {
        let mut books = self.inner.lock();
        if let Some((first, receipt)) = books.transfers.get(&transfer.reference) {
            if first != transfer {
                books.log("transfer", &transfer.reference, "refused: reference reused");
                return Err(PartnerError::Conflict(format!(
                    "reference {} was booked with other fields",
                    transfer.reference
                )));
            }
            let receipt = CustodyReceipt { duplicate: true, ..receipt.clone() };
            books.log("transfer", &transfer.reference, "duplicate");
            return Ok(receipt);
        }
        let at = self.inner.clock.now();
        let receipt = CustodyReceipt { reference: transfer.reference.clone(), at, duplicate: false };
        books.commit(Entry::Booked { transfer: transfer.clone(), receipt: receipt.clone(), amount });
        let outcome = if amount == transfer.amount { "booked" } else { "booked one unit short (injected)" };
        books.log("transfer", &transfer.reference, outcome);
        Ok(receipt)
    }

    fn submit_now(&self, distribution: &Distribution) -> (Decision, bool) {
        let mut books = self.inner.lock();
        let pending = books.distributions.entry(distribution.reference.clone()).or_default();
        if let Some(decision) = &pending.decision {
            let decision = decision.clone();
            books.log("submit", &distribution.reference, "answered again");
            return (decision, false);
        }
        books.commit(Entry::Submitted { distribution: distribution.clone() });
        books.log("submit", &distribution.reference, "received");
        let at = self.inner.clock.now();
        let decision = match self.decisions.next().map(|f| (f.kind, f)) {
            Some((FaultKind::Reject, _)) => {
                let rejected = Decision::Rejected { reason: "rejected by the Custody's review".into() };
                books.settle(&distribution.reference, rejected.clone(), at);
                rejected
            }
            Some((FaultKind::ApproveLate, fault)) => {
                books.settle(&distribution.reference, Decision::Pending, at);
                let (inner, reference) = (self.inner.clone(), distribution.reference.clone());
                tokio::spawn(async move {
                    tokio::time::sleep(fault.delay()).await;
                    let decision = inner.lock().decide(&reference, inner.clock.now());
                    inner.notify(&reference, decision, 1).await;
                });
                Decision::Pending
            }
            _ => books.decide(&distribution.reference, at),
        };
        (decision, true)
    }
}

#[async_trait]
impl Custody for CustodySimulator {
    async fn transfer(&self, transfer: &CustodyTransfer) -> Result<CustodyReceipt, PartnerError> {
        let fault = self.call_fault("transfer", &transfer.reference).await?;
        let amount = match fault.map(|f| f.kind) {
            Some(FaultKind::BookShort) => transfer.amount.saturating_sub(1),
            _ => transfer.amount,
        };
        let receipt = self.book_transfer(transfer, amount)?;
        match fault.map(|f| f.kind) {
            Some(FaultKind::Duplicate) => self.book_transfer(transfer, amount),
            Some(FaultKind::TimeoutAfterCommit) => Err(PartnerError::Timeout),
            _ => Ok(receipt),
        }
    }

    async fn find_transfer(&self, reference: &str) -> Result<Option<CustodyReceipt>, PartnerError> {
        let mut books = self.inner.lock();
        let found = books.transfers.get(reference).map(|(_, r)| r.clone());
        books.log("find_transfer", reference, if found.is_some() { "found" } else { "not found" });
        Ok(found)
    }

    async fn put_entries(&self, reference: &str, page: u32, entries: &[DistributionEntry]) -> Result<(), PartnerError> {
        let fault = self.call_fault("put_entries", reference).await?;
        let mut books = self.inner.lock();
        let pending = books.distributions.entry(reference.to_owned()).or_default();
        if pending.submitted.is_some() {
            books.log("put_entries", reference, "refused: already submitted");
            return Err(PartnerError::Conflict("the distribution was submitted".into()));
        }
        books.commit(Entry::Page { reference: reference.to_owned(), page, entries: entries.to_vec() });
        books.log("put_entries", reference, &format!("page {page}: {} entries", entries.len()));
        match fault.map(|f| f.kind) {
            Some(FaultKind::TimeoutAfterCommit) => Err(PartnerError::Timeout),
            _ => Ok(()),
        }
    }

    async fn submit(&self, distribution: &Distribution) -> Result<Decision, PartnerError> {
        let fault = self.call_fault("submit", &distribution.reference).await?;
        let (decision, first) = self.submit_now(distribution);
        if first && decision != Decision::Pending {
            let times = if fault.is_some_and(|f| f.kind == FaultKind::Duplicate) { 2 } else { 1 };
            let (inner, reference, decided) = (self.inner.clone(), distribution.reference.clone(), decision.clone());
            // The callback follows the answer, as the Custody's would.
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                inner.notify(&reference, decided, times).await;
            });
        }
        match fault.map(|f| f.kind) {
            Some(FaultKind::TimeoutAfterCommit) => Err(PartnerError::Timeout),
            _ => Ok(decision),
        }
    }

    async fn decision(&self, reference: &str) -> Result<Option<Decision>, PartnerError> {
        let mut books = self.inner.lock();
        let decision = books.distributions.get(reference).and_then(|p| p.decision.clone());
        books.log("decision_poll", reference, if decision.is_some() { "answered" } else { "not found" });
        Ok(decision)
    }

    async fn balances(
        &self,
        asset: &str,
        as_of: DateTime<Utc>,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<CustodyBalance>, PartnerError> {
        self.call_fault("balances", asset).await?;
        let books = self.inner.lock();
        let Some(accounts) = books.history.get(asset) else { return Ok(Vec::new()) };
        let start = after.map_or(std::ops::Bound::Unbounded, |a| std::ops::Bound::Excluded(a.to_owned()));
        Ok(accounts
            .range((start, std::ops::Bound::Unbounded))
            .filter_map(|(account, history)| {
                let upto = history.partition_point(|(at, _)| *at <= as_of);
                (upto > 0).then(|| CustodyBalance { account: account.clone(), balance: history[upto - 1].1 })
            })
            .take(limit)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::clock::ManualClock;

    fn transfer(reference: &str, amount: u64) -> CustodyTransfer {
        CustodyTransfer {
            reference: reference.into(),
            debit: "custody:bank:SGD".into(),
            credit: "deposit:ann:SGD".into(),
            asset: "SGD".into(),
            amount,
        }
    }

    /// Everything the books hold, as the port answers it.
    async fn seen(custody: &CustodySimulator, at: DateTime<Utc>) -> Vec<(String, Vec<CustodyBalance>)> {
        let mut all = Vec::new();
        for asset in ["SGD", "DABS-d1"] {
            all.push((asset.to_owned(), custody.balances(asset, at, None, 100).await.unwrap()));
        }
        all
    }

    #[tokio::test]
    async fn the_books_survive_a_reopen_bookings_distributions_and_decisions_alike() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("custody.jsonl");
        let clock = Arc::new(ManualClock::at("2026-11-25T06:00:00Z".parse().unwrap()));
        let custody = CustodySimulator::open(&path, b"k".to_vec(), clock.clone()).unwrap();
        let first = custody.transfer(&transfer("t1", 500)).await.unwrap();
        custody.inject(Fault { kind: FaultKind::BookShort, times: 1, delay_ms: 0 });
        custody.transfer(&transfer("t2", 100)).await.unwrap();
        clock.advance(chrono::TimeDelta::seconds(5));
        let entry = DistributionEntry { subscription_id: "s1".into(), account: "holding:ann:DABS-d1".into(), units: 7 };
        custody.put_entries("dist-1", 0, std::slice::from_ref(&entry)).await.unwrap();
        let mut checksum = Checksum::default();
        checksum.add("s1", 7);
        let distribution = Distribution {
            reference: "dist-1".into(),
            asset: "DABS-d1".into(),
            pages: 1,
            entries: 1,
            units: 7,
            checksum: checksum.hex(),
        };
        assert_eq!(custody.submit(&distribution).await.unwrap(), Decision::Approved);
        let (before, now) = (clock.now() - chrono::TimeDelta::seconds(1), clock.now());
        let books = (seen(&custody, before).await, seen(&custody, now).await);
        assert_eq!(custody.balance("deposit:ann:SGD", "SGD"), 599, "the second booking was a cent short");
        drop(custody);

        let reopened = CustodySimulator::open(&path, b"k".to_vec(), clock.clone()).unwrap();
        assert_eq!((seen(&reopened, before).await, seen(&reopened, now).await), books, "as of any time");
        assert_eq!(reopened.find_transfer("t1").await.unwrap().map(|r| r.at), Some(first.at));
        assert!(reopened.transfer(&transfer("t1", 500)).await.unwrap().duplicate, "still booked once");
        assert!(matches!(reopened.transfer(&transfer("t1", 501)).await, Err(PartnerError::Conflict(_))));
        assert_eq!(reopened.decision("dist-1").await.unwrap(), Some(Decision::Approved));
        assert!(matches!(reopened.put_entries("dist-1", 1, &[entry]).await, Err(PartnerError::Conflict(_))));
    }
}
