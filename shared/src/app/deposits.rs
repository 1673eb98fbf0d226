//! Investors' deposit accounts: a virtual account reference per investor for incoming
//! money, the bank's signed notifications turned into ledger transfers (pending until
//! cleared, posted on confirmation, voided when returned), and withdrawals (a hold, a
//! payout instruction, then post on settlement or void on failure). Every step is
//! idempotent: a notification or request delivered twice moves money once.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::app::failure::{Permanence, Retried};
use crate::app::ledger::{Ledger, LedgerError, sortable};
use crate::app::notices::{self, Audience, Notice};
use crate::domain::ledger::{Account, Amount, Kind, Refusal, SGD, Transfer, codes};
use crate::domain::money::{self, MoneyError};
use crate::ports::bank::{BankEvent, Payout};
use crate::ports::partner::PartnerError;
use crate::ports::store::{Condition, Contention, Item, Key, Query, Range, StoreError};
use crate::ports::{Bank, Clock, Store};

/// The bank's omnibus account owner.
pub const BANK: &str = "bank";
/// How long a webhook's event id is remembered (beyond any bank's retry schedule).
const EVENT_MEMORY: TimeDelta = TimeDelta::days(30);
const PENDING_WITHDRAWALS: &str = "WITHDRAWALS#PENDING";
/// How old a pending withdrawal must be before the sweep instructs it again.
pub const RETRY_AFTER: TimeDelta = TimeDelta::seconds(30);

#[derive(Debug, thiserror::Error)]
pub enum DepositError {
    #[error("no investor has virtual account {0}")]
    UnknownVirtualAccount(String),
    #[error("no withdrawal {0}")]
    UnknownWithdrawal(String),
    #[error("amount: {0}")]
    Amount(#[from] MoneyError),
    #[error("the idempotency key was used with another amount")]
    KeyReused,
    #[error("the notification contradicts what was recorded: {0}")]
    Contradicts(Refusal),
    #[error(transparent)]
    Ledger(LedgerError),
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The bank did not take a payout instruction; the withdrawal stays pending and held.
    #[error("the bank did not take the payout: {0}")]
    Partner(PartnerError),
}

impl Permanence for DepositError {
    fn is_permanent(&self) -> bool {
        match self {
            Self::Ledger(e) => e.is_permanent(),
            Self::Store(e) => e.is_permanent(),
            Self::Partner(e) => e.is_permanent(),
            Self::UnknownVirtualAccount(_)
            | Self::UnknownWithdrawal(_)
            | Self::Amount(_)
            | Self::KeyReused
            | Self::Contradicts(_) => true,
        }
    }
}

impl From<LedgerError> for DepositError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Store(s) => Self::Store(s),
            other => Self::Ledger(other),
        }
    }
}

/// An investor's deposit account.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DepositAccount {
    pub user_id: String,
    /// The reference the investor's bank transfers name.
    pub virtual_account: String,
    /// The ledger account.
    pub account_id: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawalStatus {
    /// Held; the bank has not yet taken the instruction.
    Pending,
    /// The bank took the instruction.
    Instructed,
    /// Paid out.
    Settled,
    /// The bank could not pay; the hold was released.
    Failed,
    /// More than available: nothing was held.
    Rejected,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Withdrawal {
    pub id: String,
    pub user_id: String,
    pub amount: Amount,
    pub status: WithdrawalStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Withdrawal {
    fn hold_id(&self) -> String {
        format!("{}:hold", self.id)
    }
}

/// What a notification did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    Applied,
    /// This event id was processed before; nothing changed.
    Duplicate,
}

fn va_key(number: &str) -> Key {
    Key::new(format!("VACCOUNT#{number}"), "USER")
}

fn user_va_key(user_id: &str) -> Key {
    Key::new(format!("USER#{user_id}"), "DEPOSIT_ACCOUNT")
}

fn withdrawal_key(id: &str) -> Key {
    Key::new(format!("WITHDRAWAL#{id}"), "RECORD")
}

fn event_key(event_id: &str) -> Key {
    Key::new(format!("WEBHOOK#BANK#{event_id}"), "SEEN")
}

fn withdrawal_item(w: &Withdrawal) -> Result<Item, StoreError> {
    let item = Item::new(withdrawal_key(&w.id), w)?;
    Ok(if w.status == WithdrawalStatus::Pending {
        item.with_index(PENDING_WITHDRAWALS, format!("{}#{}", sortable(w.created_at), w.id))
    } else {
        item
    })
}

pub struct DepositAccounts {
    store: Arc<dyn Store>,
    ledger: Ledger,
    bank: Arc<dyn Bank>,
    clock: Arc<dyn Clock>,
    omnibus: OnceCell<String>,
}

impl DepositAccounts {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, bank: Arc<dyn Bank>, ledger: Ledger) -> Self {
        Self { store, ledger, bank, clock, omnibus: OnceCell::new() }
    }

    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The bank's omnibus account, opened on first use.
    async fn omnibus(&self) -> Result<&str, DepositError> {
        let id = self
            .omnibus
            .get_or_try_init(|| async {
                let account = Account::of(Kind::Omnibus, BANK, SGD);
                let id = account.id.clone();
                self.ledger.open(account).await.map(|()| id)
            })
            .await?;
        Ok(id)
    }

    /// The investor's deposit account, opened (with a new virtual account) on first use.
    pub async fn account_for(&self, user_id: &str) -> Result<DepositAccount, DepositError> {
        let mut contention = Contention::default();
        loop {
            if let Some(item) = self.store.get(&user_va_key(user_id)).await? {
                return Ok(item.decode()?);
            }
            let account = Account::of(Kind::Deposit, user_id, SGD);
            self.ledger.open(account.clone()).await?;
            let mut digits = [0u8; 8];
            aws_lc_rs::rand::fill(&mut digits).map_err(|_| StoreError::Invalid("no randomness".into()))?;
            let number: String =
                std::iter::once("8801".to_owned()).chain(digits.iter().map(|d| (d % 10).to_string())).collect();
            let opened =
                DepositAccount { user_id: user_id.to_owned(), virtual_account: number.clone(), account_id: account.id };
            let writes = vec![
                crate::ports::store::Write::put(Item::new(user_va_key(user_id), &opened)?, Condition::NotExists),
                crate::ports::store::Write::put(Item::new(va_key(&number), &opened)?, Condition::NotExists),
            ];
            match self.store.transact(writes).await {
                Ok(()) => return Ok(opened),
                // Opened by a concurrent request, or the number is taken: look again.
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub async fn by_virtual_account(&self, number: &str) -> Result<Option<DepositAccount>, DepositError> {
        Ok(self.store.get(&va_key(number)).await?.map(|item| item.decode()).transpose()?)
    }

    /// Applies a verified bank notification. A repeated event id is a duplicate; a
    /// repeated notification under a new event id moves nothing either (the ledger's ids
    /// come from the bank's deposit id and the payout reference).
    pub async fn receive(&self, event: &BankEvent) -> Result<Received, DepositError> {
        let seen = event_key(event.event_id());
        if self.store.get(&seen).await?.is_some() {
            return Ok(Received::Duplicate);
        }
        match event {
            BankEvent::DepositReceived { deposit_id, virtual_account, amount, .. } => {
                self.hold_deposit(deposit_id, virtual_account, amount).await?;
            }
            BankEvent::DepositConfirmed { deposit_id, virtual_account, amount, .. } => {
                let hold = self.hold_deposit(deposit_id, virtual_account, amount).await?;
                let account = self.deposit_account(virtual_account).await?;
                let notice = Notice::DepositCredited {
                    amount: hold.amount,
                    bank_reference: deposit_id.clone(),
                    at: self.clock.now(),
                };
                let post = Transfer::post(format!("{deposit_id}:post"), &hold, hold.amount);
                self.settle_noting(&post, &account.user_id, notice).await?;
            }
            BankEvent::DepositReturned { deposit_id, virtual_account, amount, .. } => {
                let account = self.deposit_account(virtual_account).await?;
                money::parse_cents(amount)?;
                if let Some(record) = self.ledger.transfer(&format!("dep:{deposit_id}")).await? {
                    let notice = Notice::DepositReturned {
                        amount: record.transfer.amount,
                        bank_reference: deposit_id.clone(),
                        at: self.clock.now(),
                    };
                    let void = Transfer::void(format!("{deposit_id}:void"), &record.transfer);
                    self.settle_noting(&void, &account.user_id, notice).await?;
                }
            }
            BankEvent::PayoutSettled { reference, .. } => {
                let w = self.withdrawal_by_id(reference).await?;
                let hold = Self::withdrawal_hold(&w);
                let notice =
                    Notice::WithdrawalPaid { withdrawal_id: w.id.clone(), amount: w.amount, at: self.clock.now() };
                self.settle_noting(&Transfer::post(format!("{}:post", w.id), &hold, w.amount), &w.user_id, notice)
                    .await?;
                self.set_status(&w.id, WithdrawalStatus::Settled, None).await?;
            }
            BankEvent::PayoutFailed { reference, reason, .. } => {
                let w = self.withdrawal_by_id(reference).await?;
                let hold = Self::withdrawal_hold(&w);
                let notice = Notice::WithdrawalFailed {
                    withdrawal_id: w.id.clone(),
                    amount: w.amount,
                    reason: reason.clone(),
                    at: self.clock.now(),
                };
                self.settle_noting(&Transfer::void(format!("{}:void", w.id), &hold), &w.user_id, notice).await?;
                self.set_status(&w.id, WithdrawalStatus::Failed, Some(reason.clone())).await?;
            }
        }
        let expires = self.clock.now() + EVENT_MEMORY;
        match self.store.put(Item::new(seen, &event)?.expiring_at(expires), Condition::NotExists).await {
            Ok(()) | Err(StoreError::ConditionFailed { .. }) => Ok(Received::Applied),
            Err(e) => Err(e.into()),
        }
    }

    async fn deposit_account(&self, number: &str) -> Result<DepositAccount, DepositError> {
        self.by_virtual_account(number).await?.ok_or_else(|| DepositError::UnknownVirtualAccount(number.to_owned()))
    }

    /// The deposit's pending transfer from the omnibus to the investor (made if new).
    async fn hold_deposit(&self, deposit_id: &str, number: &str, amount: &str) -> Result<Transfer, DepositError> {
        let account = self.deposit_account(number).await?;
        let cents = money::parse_cents(amount)?;
        let hold = Transfer::pending(
            format!("dep:{deposit_id}"),
            self.omnibus().await?,
            &account.account_id,
            cents,
            SGD,
            codes::DEPOSIT,
        )
        .with_reference(deposit_id);
        self.settle(&hold).await?;
        Ok(hold)
    }

    /// Submits a transfer the bank's word decided; a refusal means the notification
    /// contradicts the ledger (a different amount for the same deposit, a return after
    /// the deposit cleared).
    async fn settle(&self, transfer: &Transfer) -> Result<(), DepositError> {
        match self.ledger.submit(transfer).await {
            Ok(_) => Ok(()),
            Err(LedgerError::Refused(refusal)) => Err(DepositError::Contradicts(refusal)),
            Err(e) => Err(e.into()),
        }
    }

    /// [`DepositAccounts::settle`] with the investor's notice of it in the same transaction
    /// (its id is the transfer's: one notice however often the bank tells us).
    async fn settle_noting(&self, transfer: &Transfer, user_id: &str, notice: Notice) -> Result<(), DepositError> {
        let at = self.clock.now();
        let noted = notices::write(&transfer.id, Audience::Investor(user_id.to_owned()), notice, at)?;
        match self.ledger.submit_with(std::slice::from_ref(transfer), &[], &[noted]).await {
            Ok(_) => Ok(()),
            Err(LedgerError::Refused(refusal)) => Err(DepositError::Contradicts(refusal)),
            Err(e) => Err(e.into()),
        }
    }

    async fn withdrawal_by_id(&self, id: &str) -> Result<Withdrawal, DepositError> {
        let item = self.store.get(&withdrawal_key(id)).await?;
        item.map(|i| i.decode()).transpose()?.ok_or_else(|| DepositError::UnknownWithdrawal(id.to_owned()))
    }

    fn withdrawal_hold(w: &Withdrawal) -> Transfer {
        let omnibus = Account::id_of(Kind::Omnibus, BANK, SGD);
        let investor = Account::id_of(Kind::Deposit, &w.user_id, SGD);
        Transfer::pending(w.hold_id(), &investor, &omnibus, w.amount, SGD, codes::WITHDRAWAL).with_reference(&w.id)
    }

    /// A user's withdrawal.
    pub async fn withdrawal(&self, user_id: &str, id: &str) -> Result<Option<Withdrawal>, DepositError> {
        let item = self.store.get(&withdrawal_key(id)).await?;
        Ok(item.map(|i| i.decode::<Withdrawal>()).transpose()?.filter(|w| w.user_id == user_id))
    }

    /// Withdraws `amount` cents under the caller's idempotency key: the same key and
    /// amount answer the same withdrawal (in its current state), another amount is refused.
    pub async fn withdraw(&self, user_id: &str, key: &str, amount: Amount) -> Result<Withdrawal, DepositError> {
        let id = super::keyed_id("wd", user_id, key);
        self.account_for(user_id).await?;
        self.omnibus().await?;
        let now = self.clock.now();
        let fresh = Withdrawal {
            id: id.clone(),
            user_id: user_id.to_owned(),
            amount,
            status: WithdrawalStatus::Pending,
            reason: None,
            created_at: now,
            updated_at: now,
        };
        match self.store.put(withdrawal_item(&fresh)?, Condition::NotExists).await {
            // Held but not taken by the bank: pending, instructed again by the sweep.
            Ok(()) => match self.advance(fresh.clone()).await {
                Err(DepositError::Partner(_)) => Ok(fresh),
                other => other,
            },
            Err(StoreError::ConditionFailed { .. }) => {
                let first = self.withdrawal_by_id(&id).await?;
                if first.amount != amount {
                    return Err(DepositError::KeyReused);
                }
                Ok(first)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Moves a pending withdrawal on: hold the amount, then instruct the bank. Only the
    /// bank's refusal (it will not pay) releases the hold. Any other failure leaves the
    /// withdrawal pending and held, to be instructed again under the same reference by
    /// [`Self::retry_pending`]: the bank may have taken an earlier instruction, and money
    /// is never released while it may be paid.
    async fn advance(&self, w: Withdrawal) -> Result<Withdrawal, DepositError> {
        let hold = Self::withdrawal_hold(&w);
        match self.ledger.submit(&hold).await {
            Ok(_) => {}
            Err(LedgerError::Refused(Refusal::ExceedsLimit(_))) => {
                return self.set_status(&w.id, WithdrawalStatus::Rejected, Some("more than available".into())).await;
            }
            Err(e) => return Err(e.into()),
        }
        let account = self.account_for(&w.user_id).await?;
        let payout = Payout {
            reference: w.id.clone(),
            virtual_account: account.virtual_account,
            amount: money::format_cents(i128::from(w.amount)),
            currency: SGD.to_owned(),
        };
        let error = match self.bank.instruct_payout(&payout).await {
            Ok(_) => return self.set_status(&w.id, WithdrawalStatus::Instructed, None).await,
            Err(PartnerError::Refused(reason)) => {
                self.settle(&Transfer::void(format!("{}:void", w.id), &hold)).await?;
                return self.set_status(&w.id, WithdrawalStatus::Failed, Some(reason)).await;
            }
            // The reference is taken: an earlier attempt reached the bank.
            Err(PartnerError::Conflict(_)) => match self.bank.find_payout(&w.id).await {
                Ok(Some(_)) => return self.set_status(&w.id, WithdrawalStatus::Instructed, None).await,
                Ok(None) => PartnerError::Conflict("the bank does not show the payout yet".into()),
                Err(e) => e,
            },
            Err(e) => e,
        };
        if error.is_retryable() {
            tracing::warn!(withdrawal = %w.id, %error, "payout instruction unanswered; will retry");
        } else {
            tracing::error!(withdrawal = %w.id, %error, "payout instruction not taken; held for an operator");
        }
        Err(DepositError::Partner(error))
    }

    /// Instructs again the withdrawals the bank did not answer. Only those older than
    /// [`RETRY_AFTER`]: a younger one may still be in its request. One failing does not
    /// stop the others; each failure is reported.
    pub async fn retry_pending(&self, max: usize) -> Result<Retried, DepositError> {
        let before = format!("{}#\u{10FFFF}", sortable(self.clock.now() - RETRY_AFTER));
        let query = Query::secondary(PENDING_WITHDRAWALS).range(Range::AtMost(before)).limit(max.clamp(1, 100));
        let page = self.store.query(&query).await?;
        let mut retried = Retried::default();
        for item in &page.items {
            // An item that does not read is reported (it fails for good) and passed over.
            match item.decode::<Withdrawal>() {
                Ok(w) => retried.record(w.id.clone(), self.advance(w).await),
                Err(e) => retried.record(item.key.pk.clone(), Err::<(), _>(e)),
            }
        }
        Ok(retried)
    }

    /// Sets a withdrawal's status unless it already reached an end state; answers it as stored.
    async fn set_status(
        &self,
        id: &str,
        status: WithdrawalStatus,
        reason: Option<String>,
    ) -> Result<Withdrawal, DepositError> {
        let mut contention = Contention::default();
        loop {
            let item = self
                .store
                .get(&withdrawal_key(id))
                .await?
                .ok_or_else(|| DepositError::UnknownWithdrawal(id.to_owned()))?;
            let mut w: Withdrawal = item.decode()?;
            let ended =
                matches!(w.status, WithdrawalStatus::Settled | WithdrawalStatus::Failed | WithdrawalStatus::Rejected);
            if ended || w.status == status {
                return Ok(w);
            }
            w.status = status;
            w.reason = reason.clone();
            w.updated_at = self.clock.now();
            match self.store.put(withdrawal_item(&w)?, Condition::VersionIs(item.version)).await {
                Ok(()) => return Ok(w),
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }
}
