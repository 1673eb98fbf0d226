//! The Custody simulator: books of its own (money transfers by reference, DABS credited
//! when it approves a distribution), balances as of any time, a call log, and faults:
//! fail, delay, duplicate, time out after committing, reject the next distribution, or
//! approve it late. Decisions reach the platform as signed callbacks, as the Custody's
//! would, and can be polled.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

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

#[derive(Default)]
struct Books {
    transfers: HashMap<String, (CustodyTransfer, CustodyReceipt)>,
    /// Per asset, per account, sorted by account.
    history: HashMap<String, BTreeMap<String, History>>,
    distributions: HashMap<String, Pending>,
    calls: VecDeque<CustodyCall>,
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
            let source = format!("custody:issuance:{}", submitted.asset);
            for e in entries.iter().filter(|e| e.units > 0) {
                self.book(&submitted.asset, &source, &e.account, e.units, at);
            }
            Decision::Approved
        };
        self.settle(reference, decision.clone());
        decision
    }

    fn settle(&mut self, reference: &str, decision: Decision) {
        if let Some(pending) = self.distributions.get_mut(reference) {
            pending.decision = Some(decision.clone());
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
        let callback = Callback::new(secret, (TIMESTAMP_HEADER, SIGNATURE_HEADER), clock.clone());
        Self {
            inner: Arc::new(Inner { books: Mutex::new(Books::default()), callback, clock }),
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

    fn book_transfer(&self, transfer: &CustodyTransfer) -> Result<CustodyReceipt, PartnerError> {
        let mut books = self.inner.lock();
        if let Some((first, receipt)) = books.transfers.get(&transfer.reference) {
            if first != transfer {
                books.log("transfer", &transfer.reference, "refused: reference reused");
                return Err(PartnerError::Refused(format!(
                    "reference {} was booked with other fields",
                    transfer.reference
                )));
            }
            let receipt = CustodyReceipt { duplicate: true, ..receipt.clone() };
            books.log("transfer", &transfer.reference, "duplicate");
            return Ok(receipt);
        }
        let at = self.inner.clock.now();
        books.book(&transfer.asset, &transfer.debit, &transfer.credit, transfer.amount, at);
        let receipt = CustodyReceipt { reference: transfer.reference.clone(), at, duplicate: false };
        books.transfers.insert(transfer.reference.clone(), (transfer.clone(), receipt.clone()));
        books.log("transfer", &transfer.reference, "booked");
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
        pending.submitted = Some(distribution.clone());
        books.log("submit", &distribution.reference, "received");
        let at = self.inner.clock.now();
        let decision = match self.decisions.next().map(|f| (f.kind, f)) {
            Some((FaultKind::Reject, _)) => {
                let rejected = Decision::Rejected { reason: "rejected by the Custody's review".into() };
                books.settle(&distribution.reference, rejected.clone());
                rejected
            }
            Some((FaultKind::ApproveLate, fault)) => {
                books.settle(&distribution.reference, Decision::Pending);
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
        let receipt = match fault.map(|f| f.kind) {
            Some(FaultKind::BookShort) => {
                let receipt = self.book_transfer(&CustodyTransfer {
                    amount: transfer.amount.saturating_sub(1),
                    ..transfer.clone()
                })?;
                // Remembered as asked, so a retry is a duplicate, not a refusal.
                let mut books = self.inner.lock();
                books.transfers.insert(transfer.reference.clone(), (transfer.clone(), receipt.clone()));
                books.log("transfer", &transfer.reference, "booked one unit short (injected)");
                receipt
            }
            _ => self.book_transfer(transfer)?,
        };
        match fault.map(|f| f.kind) {
            Some(FaultKind::Duplicate) => self.book_transfer(transfer),
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
            return Err(PartnerError::Refused("the distribution was submitted".into()));
        }
        pending.pages.insert(page, entries.to_vec());
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
