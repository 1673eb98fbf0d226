//! Subscriptions: a level-3 investor applies for units of an open deal, and the amount is
//! held (a pending transfer) from their deposit account to the deal's escrow. One live
//! subscription per investor per deal; cancelling while the deal is open voids the hold.
//! Every ledger step carries a check that the deal is still at the version read as open,
//! so nothing is held or released after the deal closed.
//!
//! A subscription is written `pending` with its investor lock first, then held, then
//! marked `live` (or `rejected`, lock released); one left pending by a crash is moved on
//! by the sweep ([`Subscriptions::retry_pending`]).

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::deals::{Deal, deal_key};
use super::deposits::DepositAccounts;
use super::failure::Retried;
use super::ledger::{Ledger, LedgerError, sortable};
use super::notices::{self, Audience, Notice};
use crate::domain::deal::{DealState, UnitsRefusal, subscription_amount};
use crate::domain::ledger::{Account, Amount, Kind, Refusal, SGD, Transfer, codes};
use crate::ports::store::{self, Condition, Contention, Cursor, Item, Key, Query, Range, StoreError, Write};
use crate::ports::{Clock, Store};

const PENDING: &str = "SUBSCRIPTIONS#PENDING";
/// How old a pending subscription must be before the sweep moves it on.
pub const RETRY_AFTER: TimeDelta = TimeDelta::seconds(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    /// Recorded; the hold is being placed.
    Pending,
    /// Held in escrow.
    Live,
    /// Cancelled by the investor; the hold was released.
    Cancelled,
    /// More than the investor's available balance, or the deal closed first: nothing held.
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub deal_id: String,
    pub investor_id: String,
    pub units: u64,
    /// Cents held.
    pub amount: Amount,
    pub status: SubscriptionStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The hold of subscription `id`: `amount` from the investor's deposit account into `escrow`.
pub fn hold_of(id: &str, investor_id: &str, escrow: &str, amount: Amount) -> Transfer {
    let investor = Account::id_of(Kind::Deposit, investor_id, SGD);
    Transfer::pending(format!("sub:{id}"), &investor, escrow, amount, SGD, codes::SUBSCRIPTION).with_reference(id)
}

impl Subscription {
    /// The hold of this subscription, from the investor's deposit account into `escrow`.
    fn hold(&self, escrow: &str) -> Transfer {
        hold_of(&self.id, &self.investor_id, escrow, self.amount)
    }

    /// The transfer that releases the hold.
    fn release(&self, escrow: &str) -> Transfer {
        let hold = self.hold(escrow);
        Transfer::void(format!("{}:void", hold.id), &hold)
    }
}

/// The book's sums over live subscriptions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BookTotals {
    pub live: u64,
    pub units: u128,
    pub amount: u128,
}

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error("no such deal or subscription")]
    NotFound,
    #[error("the deal is not open for subscriptions")]
    NotOpen,
    #[error("units: {0}")]
    Units(#[from] UnitsRefusal),
    #[error("the investor already has a live subscription to this deal")]
    AlreadySubscribed,
    #[error("the Idempotency-Key was used for another subscription")]
    KeyReused,
    #[error("the subscription cannot be cancelled while {0}")]
    NotCancellable(&'static str),
    #[error(transparent)]
    Ledger(LedgerError),
    #[error(transparent)]
    Account(#[from] super::deposits::DepositError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl From<LedgerError> for SubscriptionError {
    fn from(e: LedgerError) -> Self {
        match e {
            LedgerError::Store(s) => Self::Store(s),
            other => Self::Ledger(other),
        }
    }
}

impl super::failure::Permanence for SubscriptionError {
    fn is_permanent(&self) -> bool {
        match self {
            Self::Ledger(e) => e.is_permanent(),
            Self::Store(e) => e.is_permanent(),
            // A deposit account's store may be busy; nothing else about it is final here.
            Self::Account(_) => false,
            _ => true,
        }
    }
}

fn sub_key(id: &str) -> Key {
    Key::new(format!("SUB#{id}"), "SUB")
}

pub fn book_partition(deal_id: &str) -> String {
    format!("BOOK#{deal_id}")
}

/// The stored form of a subscription, listed in its deal's book.
pub fn sub_item(s: &Subscription) -> Result<Item, StoreError> {
    Ok(Item::new(sub_key(&s.id), s)?
        .with_index(book_partition(&s.deal_id), format!("{}#{}", sortable(s.created_at), s.id)))
}

fn live_lock(deal_id: &str, investor_id: &str) -> Key {
    Key::new(format!("DEAL#{deal_id}#INVESTOR#{investor_id}"), "LIVE")
}

fn mine_key(s: &Subscription) -> Key {
    Key::new(format!("USER#{}#SUBS", s.investor_id), format!("{}#{}", sortable(s.created_at), s.id))
}

fn pending_key(id: &str) -> Key {
    Key::new(format!("SUBPENDING#{id}"), "MARK")
}

pub struct Subscriptions {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ledger: Ledger,
    deposits: Arc<DepositAccounts>,
}

impl Subscriptions {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, ledger: Ledger, deposits: Arc<DepositAccounts>) -> Self {
        Self { store, clock, ledger, deposits }
    }

    pub async fn get(&self, id: &str) -> Result<Option<Subscription>, StoreError> {
        self.store.get(&sub_key(id)).await?.map(|i| i.decode()).transpose()
    }

    async fn deal(&self, id: &str) -> Result<(Deal, u64), SubscriptionError> {
        let item = self.store.get(&deal_key(id)).await?.ok_or(SubscriptionError::NotFound)?;
        Ok((item.decode()?, item.version))
    }

    /// Applies for `units` under the caller's idempotency key: the same key and request
    /// answer the same subscription (in its current state); another request is refused.
    pub async fn subscribe(
        &self,
        investor_id: &str,
        deal_id: &str,
        key: &str,
        units: u64,
    ) -> Result<Subscription, SubscriptionError> {
        let id = super::keyed_id("sub", investor_id, key);
        if let Some(first) = self.get(&id).await? {
            return if first.deal_id == deal_id && first.units == units {
                Ok(first)
            } else {
                Err(SubscriptionError::KeyReused)
            };
        }
        let (deal, _) = self.deal(deal_id).await?;
        if deal.state != DealState::Open || self.clock.now() >= deal.terms.closes_at {
            return Err(SubscriptionError::NotOpen);
        }
        let amount = subscription_amount(&deal.terms, units)?;
        self.deposits.account_for(investor_id).await?;
        let now = self.clock.now();
        let sub = Subscription {
            id,
            deal_id: deal_id.to_owned(),
            investor_id: investor_id.to_owned(),
            units,
            amount,
            status: SubscriptionStatus::Pending,
            reason: None,
            created_at: now,
            updated_at: now,
        };
        let pending =
            Item::new(pending_key(&sub.id), &sub.id)?.with_index(PENDING, format!("{}#{}", sortable(now), sub.id));
        let writes = vec![
            Write::put(sub_item(&sub)?, Condition::NotExists),
            Write::put(Item::new(live_lock(deal_id, investor_id), &sub.id)?, Condition::NotExists),
            Write::put(Item::new(mine_key(&sub), &sub.id)?, Condition::None),
            Write::put(pending, Condition::None),
        ];
        match self.store.transact(writes).await {
            Ok(()) => self.advance(sub).await,
            // The same key, concurrently: answer what the first wrote.
            Err(StoreError::ConditionFailed { index: 0, .. }) => {
                Box::pin(self.subscribe(investor_id, deal_id, key, units)).await
            }
            Err(StoreError::ConditionFailed { index: 1, .. }) => Err(SubscriptionError::AlreadySubscribed),
            Err(e) => Err(e.into()),
        }
    }

    /// Places the hold of a pending subscription while the deal is open, then marks it
    /// live; refused holds mark it rejected and release the investor's lock.
    async fn advance(&self, sub: Subscription) -> Result<Subscription, SubscriptionError> {
        loop {
            let (deal, version) = self.deal(&sub.deal_id).await?;
            if deal.state != DealState::Open {
                return self.resolve_closed(sub).await;
            }
            let open = Write::check(deal_key(&deal.id), Condition::VersionIs(version));
            let hold = sub.hold(&deal.escrow_account);
            let notice = Notice::SubscriptionReceived {
                deal_name: deal.terms.building.name.clone(),
                subscription_id: sub.id.clone(),
                units: sub.units,
                unit_price: deal.terms.unit_price,
                held: sub.amount,
                closes_at: deal.terms.closes_at,
                at: self.clock.now(),
            };
            let noted =
                notices::write(&hold.id, Audience::Investor(sub.investor_id.clone()), notice, self.clock.now())?;
            return match self.ledger.submit_with(&[hold], &[open], &[noted]).await {
                Ok(_) => self.finish(&sub.id, SubscriptionStatus::Live, None).await,
                Err(LedgerError::Refused(Refusal::ExceedsLimit(_))) => {
                    self.finish(&sub.id, SubscriptionStatus::Rejected, Some("more than the available balance")).await
                }
                // The deal changed meanwhile (an edit, or it closed): look again.
                Err(LedgerError::ContextChanged) => continue,
                Err(e) => Err(e.into()),
            };
        }
    }

    /// Settles a subscription left pending once its deal stopped being open: live if its
    /// hold was placed (holds are placed only while the deal is open), rejected otherwise.
    pub async fn resolve_closed(&self, sub: Subscription) -> Result<Subscription, SubscriptionError> {
        if sub.status != SubscriptionStatus::Pending {
            return Ok(sub);
        }
        let escrow = Account::id_of(Kind::Escrow, &sub.deal_id, SGD);
        if self.ledger.transfer(&sub.hold(&escrow).id).await?.is_some() {
            self.finish(&sub.id, SubscriptionStatus::Live, None).await
        } else {
            self.finish(&sub.id, SubscriptionStatus::Rejected, Some("the deal closed first")).await
        }
    }

    /// Cancels the caller's live subscription while the deal is open: voids the hold.
    pub async fn cancel(&self, investor_id: &str, id: &str) -> Result<Subscription, SubscriptionError> {
        let sub = self.get(id).await?.filter(|s| s.investor_id == investor_id).ok_or(SubscriptionError::NotFound)?;
        match sub.status {
            SubscriptionStatus::Live => {}
            SubscriptionStatus::Cancelled => return Ok(sub),
            SubscriptionStatus::Pending => return Err(SubscriptionError::NotCancellable("it is being placed")),
            SubscriptionStatus::Rejected => return Err(SubscriptionError::NotCancellable("it was rejected")),
        }
        loop {
            let (deal, version) = self.deal(&sub.deal_id).await?;
            if deal.state != DealState::Open {
                return Err(SubscriptionError::NotCancellable("the deal is not open"));
            }
            let open = Write::check(deal_key(&deal.id), Condition::VersionIs(version));
            let release = sub.release(&deal.escrow_account);
            let notice = Notice::SubscriptionCancelled {
                deal_name: deal.terms.building.name.clone(),
                subscription_id: sub.id.clone(),
                released: sub.amount,
                at: self.clock.now(),
            };
            let noted =
                notices::write(&release.id, Audience::Investor(sub.investor_id.clone()), notice, self.clock.now())?;
            match self.ledger.submit_with(&[release], &[open], &[noted]).await {
                Ok(_) => return self.finish(&sub.id, SubscriptionStatus::Cancelled, None).await,
                Err(LedgerError::ContextChanged) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Releases every live subscription of a cancelled deal (voids its hold); answers how
    /// many. Harmless to run again: each void has its own transfer id.
    pub async fn release_cancelled(&self, deal_id: &str) -> Result<usize, SubscriptionError> {
        let (deal, _) = self.deal(deal_id).await?;
        if deal.state != DealState::Cancelled {
            return Ok(0);
        }
        let mut released = 0;
        let mut cursor = None;
        loop {
            let (subs, next) = self.book(deal_id, 100, cursor).await?;
            for sub in
                subs.into_iter().filter(|s| matches!(s.status, SubscriptionStatus::Live | SubscriptionStatus::Pending))
            {
                match self.ledger.submit(&sub.release(&deal.escrow_account)).await {
                    // A pending one may never have been held.
                    Ok(_) | Err(LedgerError::Refused(Refusal::PendingMissing)) => {}
                    Err(e) => return Err(e.into()),
                }
                self.finish(&sub.id, SubscriptionStatus::Cancelled, Some("the deal was cancelled")).await?;
                released += 1;
            }
            match next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        // No subscription can join a cancelled deal (each is conditioned on its version).
        store::update(self.store.as_ref(), &deal_key(deal_id), |deal: &mut Deal| deal.holds_released = true).await?;
        Ok(released)
    }

    /// Sets a pending or live subscription's outcome; releases the investor's lock when it
    /// ends. Answers the subscription as stored.
    async fn finish(
        &self,
        id: &str,
        status: SubscriptionStatus,
        reason: Option<&str>,
    ) -> Result<Subscription, SubscriptionError> {
        let mut contention = Contention::default();
        loop {
            let item = self.store.get(&sub_key(id)).await?.ok_or(SubscriptionError::NotFound)?;
            let mut sub: Subscription = item.decode()?;
            let ended = matches!(sub.status, SubscriptionStatus::Cancelled | SubscriptionStatus::Rejected);
            if ended || sub.status == status {
                return Ok(sub);
            }
            sub.status = status;
            sub.reason = reason.map(str::to_owned);
            sub.updated_at = self.clock.now();
            let mut writes = vec![
                Write::put(sub_item(&sub)?, Condition::VersionIs(item.version)),
                Write::delete(pending_key(id), Condition::None),
            ];
            if status != SubscriptionStatus::Live {
                writes.push(Write::delete(live_lock(&sub.deal_id, &sub.investor_id), Condition::None));
            }
            match self.store.transact(writes).await {
                Ok(()) => return Ok(sub),
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Moves on subscriptions left pending longer than [`RETRY_AFTER`]; one failing does
    /// not stop the others, and each failure is reported.
    pub async fn retry_pending(&self, max: usize) -> Result<Retried, SubscriptionError> {
        let before = format!("{}#\u{10FFFF}", sortable(self.clock.now() - RETRY_AFTER));
        let query = Query::secondary(PENDING).range(Range::AtMost(before)).limit(max.clamp(1, 100));
        let page = self.store.query(&query).await?;
        let mut retried = Retried::default();
        for item in &page.items {
            let id: String = match item.decode() {
                Ok(id) => id,
                Err(e) => {
                    retried.record(item.key.pk.clone(), Err::<(), _>(e));
                    continue;
                }
            };
            let outcome = match self.get(&id).await {
                Ok(Some(sub)) if sub.status == SubscriptionStatus::Pending => self.advance(sub).await.map(|_| ()),
                Ok(_) => Ok(()),
                Err(e) => Err(SubscriptionError::from(e)),
            };
            retried.record(id, outcome);
        }
        Ok(retried)
    }

    /// The caller's subscriptions, newest first.
    pub async fn of_investor(
        &self,
        investor_id: &str,
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<(Vec<Subscription>, Option<Cursor>), StoreError> {
        let query = Query::partition(format!("USER#{investor_id}#SUBS")).descending().limit(limit).after(cursor);
        let page = self.store.query(&query).await?;
        let mut subs = Vec::with_capacity(page.items.len());
        for item in &page.items {
            if let Some(sub) = self.get(&item.decode::<String>()?).await? {
                subs.push(sub);
            }
        }
        Ok((subs, page.next))
    }

    /// A deal's book, oldest first.
    pub async fn book(
        &self,
        deal_id: &str,
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<(Vec<Subscription>, Option<Cursor>), StoreError> {
        let page = self.store.query(&Query::secondary(book_partition(deal_id)).limit(limit).after(cursor)).await?;
        Ok((page.items.iter().map(Item::decode).collect::<Result<_, _>>()?, page.next))
    }

    /// The book's totals over live subscriptions, a page at a time (memory stays flat
    /// whatever the size of the book).
    pub async fn totals(&self, deal_id: &str) -> Result<BookTotals, StoreError> {
        let mut totals = BookTotals::default();
        let mut cursor = None;
        loop {
            let page = self.store.query(&Query::secondary(book_partition(deal_id)).limit(1_000).after(cursor)).await?;
            for item in &page.items {
                let sub: Subscription = item.decode()?;
                if sub.status == SubscriptionStatus::Live {
                    totals.live += 1;
                    totals.units += u128::from(sub.units);
                    totals.amount += u128::from(sub.amount);
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(totals),
            }
        }
    }
}
