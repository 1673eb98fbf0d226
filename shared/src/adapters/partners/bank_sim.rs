//! The bank simulator: takes payout instructions and sends the platform the signed
//! webhooks a bank would (deposits arriving and clearing, payouts settling or failing).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Serialize;

use super::callback::Callback;
use super::faults::{Fault, FaultKind, Faults};
use crate::ports::bank::{Bank, BankEvent, Payout, PayoutAccepted};
use crate::ports::partner::PartnerError;
use crate::ports::{Clock, Ids};

/// Webhooks kept for `GET /sim/bank/calls`.
const CALL_LOG: usize = 1_000;

/// Header names of the signed webhook.
pub const TIMESTAMP_HEADER: &str = "bank-timestamp";
pub const SIGNATURE_HEADER: &str = "bank-signature";

/// A webhook the simulator sent, with the platform's answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SentWebhook {
    #[schema(value_type = Object)]
    pub event: BankEvent,
    /// The HTTP status the platform answered (0: not delivered).
    pub status: u16,
}

/// What `POST /sim/bank/deposits` did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SimulatedDeposit {
    pub deposit_id: String,
    /// The webhooks sent for it, in order.
    pub webhooks: Vec<SentWebhook>,
}

/// Signs and delivers webhooks to the platform, and keeps what it sent.
struct Sender {
    callback: Callback,
    sent: Mutex<VecDeque<SentWebhook>>,
}

impl Sender {
    async fn send(&self, event: BankEvent) -> SentWebhook {
        let status = self.callback.post(&event).await;
        let sent = SentWebhook { event, status };
        let mut log = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        if log.len() == CALL_LOG {
            log.pop_front();
        }
        log.push_back(sent.clone());
        sent
    }

    /// Sends `event` (twice under a duplicate fault, after the delay under a delay fault).
    async fn deliver(&self, event: BankEvent, fault: Option<Fault>) -> Vec<SentWebhook> {
        match fault.map(|f| (f.kind, f)) {
            Some((FaultKind::Delay, f)) => {
                tokio::time::sleep(f.delay()).await;
                vec![self.send(event).await]
            }
            Some((FaultKind::Duplicate, _)) => vec![self.send(event.clone()).await, self.send(event).await],
            _ => vec![self.send(event).await],
        }
    }
}

pub struct BankSimulator {
    sender: Arc<Sender>,
    payouts: Mutex<HashMap<String, PayoutAccepted>>,
    ids: Arc<dyn Ids>,
    pub faults: Faults,
}

impl BankSimulator {
    /// A bank that signs its webhooks with `secret`; they go nowhere until [`Self::target`].
    pub fn new(secret: Vec<u8>, clock: Arc<dyn Clock>, ids: Arc<dyn Ids>) -> Self {
        let callback = Callback::new(secret, (TIMESTAMP_HEADER, SIGNATURE_HEADER), clock);
        let sender = Sender { callback, sent: Mutex::new(VecDeque::new()) };
        Self { sender: Arc::new(sender), payouts: Mutex::new(HashMap::new()), ids, faults: Faults::default() }
    }

    /// Where webhooks go: the platform's `POST /v1/webhooks/bank`.
    pub fn target(&self, url: String) {
        self.sender.callback.target(url);
    }

    /// The latest webhooks, oldest first.
    /// The references of the payouts instructed so far, each once.
    pub fn payouts(&self) -> Vec<String> {
        self.payouts.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect()
    }

    pub fn sent(&self) -> Vec<SentWebhook> {
        self.sender.sent.lock().unwrap_or_else(|p| p.into_inner()).iter().cloned().collect()
    }

    /// Money arrives for a virtual account: the bank notifies it, then confirms it (or,
    /// under a fail fault, returns it).
    pub async fn deposit(&self, virtual_account: &str, amount: &str) -> SimulatedDeposit {
        let deposit_id = self.ids.new_id("bdep");
        let fault = self.faults.next();
        let (event_id, va, amount) = (|| self.ids.new_id("evt"), virtual_account.to_owned(), amount.to_owned());
        let received = BankEvent::DepositReceived {
            event_id: event_id(),
            deposit_id: deposit_id.clone(),
            virtual_account: va.clone(),
            amount: amount.clone(),
        };
        let mut webhooks = self.sender.deliver(received, fault).await;
        let outcome = if fault.is_some_and(|f| f.kind == FaultKind::Fail) {
            BankEvent::DepositReturned {
                event_id: event_id(),
                deposit_id: deposit_id.clone(),
                virtual_account: va,
                amount,
            }
        } else {
            BankEvent::DepositConfirmed {
                event_id: event_id(),
                deposit_id: deposit_id.clone(),
                virtual_account: va,
                amount,
            }
        };
        webhooks.extend(self.sender.deliver(outcome, fault).await);
        SimulatedDeposit { deposit_id, webhooks }
    }
}

#[async_trait]
impl Bank for BankSimulator {
    async fn instruct_payout(&self, payout: &Payout) -> Result<PayoutAccepted, PartnerError> {
        let accepted = PayoutAccepted { reference: payout.reference.clone(), status: "accepted".into() };
        let fault = self.faults.next();
        match fault.map(|f| f.kind) {
            Some(FaultKind::Throttle) => return Err(PartnerError::Throttled),
            Some(FaultKind::Conflict) => {
                return Err(PartnerError::Conflict(format!("payout {} is known", payout.reference)));
            }
            _ => {}
        }
        if let Some(first) = self.payouts.lock().unwrap_or_else(|p| p.into_inner()).get(&payout.reference) {
            return Ok(first.clone());
        }
        if fault.is_some_and(|f| f.kind == FaultKind::Refuse) {
            return Err(PartnerError::Refused("the beneficiary account is closed".into()));
        }
        if let Some(f) = fault.filter(|f| f.kind == FaultKind::Delay) {
            tokio::time::sleep(f.delay()).await;
        }
        self.payouts.lock().unwrap_or_else(|p| p.into_inner()).insert(payout.reference.clone(), accepted.clone());
        let event_id = self.ids.new_id("evt");
        let reference = payout.reference.clone();
        let outcome = match fault {
            Some(f) if f.kind == FaultKind::Fail => {
                BankEvent::PayoutFailed { event_id, reference, reason: "beneficiary account closed".into() }
            }
            _ => BankEvent::PayoutSettled { event_id, reference },
        };
        // The outcome follows the acceptance, as a bank's would: after this call returns.
        let sender = self.sender.clone();
        let delivered = fault.filter(|f| f.kind == FaultKind::Duplicate);
        // An answer lost on the way: the bank pays `delay_ms` later (a payout in progress).
        let pays_after = match fault {
            Some(f) if f.kind == FaultKind::TimeoutAfterCommit => f.delay(),
            _ => std::time::Duration::ZERO,
        };
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(5) + pays_after).await;
            sender.deliver(outcome, delivered).await;
        });
        match fault {
            Some(f) if f.kind == FaultKind::TimeoutAfterCommit => Err(PartnerError::Timeout),
            _ => Ok(accepted),
        }
    }

    async fn find_payout(&self, reference: &str) -> Result<Option<PayoutAccepted>, PartnerError> {
        Ok(self.payouts.lock().unwrap_or_else(|p| p.into_inner()).get(reference).cloned())
    }
}
