//! Notices to people (email, the investor's inbox, a PDF), as an outbox.
//!
//! A notice is written in the same transaction as the fact it reports ([`write`]), with a
//! snapshot of what it needs, so it renders the facts as they were and none is lost. Its
//! delivery then goes, each step a conditional write:
//!
//! 1. **pending**, on the relay index: the relay ([`Notices::relay`], woken by the table's
//!    stream in AWS and by a loop locally) sends it to the notify queue and marks it
//!    **queued** (a crash between the two sends it twice; the next step takes one);
//! 2. **sending**: the notify function claims it ([`Notices::claim`]). An investor's notice
//!    enters their inbox and unread count in that same write;
//! 3. **sent** with the mail service's id, or **failed** with the reason (a refused
//!    address is recorded once and not tried again).
//!
//! A crash after the mail service took the email and before *sent* was written leaves it
//! *sending*: the next delivery claims it again and sends once more. A second such crash
//! marks it *failed* instead of sending a third time: **at most one email more than
//! asked**, never an endless resend.
//!
//! Notices for many people (offering news, monthly statements) are written once and fanned
//! out by the notify function into one notice per person, a page at a time.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::app::accounts::{USERS_INDEX, User, user_key};
use crate::app::failure::Permanence;
use crate::app::ledger::sortable;
use crate::domain::access::Role;
use crate::domain::reconcile::RunVerdict;
use crate::domain::settlement::LegKind;
use crate::ports::queue::{QueueError, QueueName};
use crate::ports::store::{Condition, Contention, Cursor, Item, Key, Query, StoreError, Write};
use crate::ports::{Clock, Queue, Store};

/// Secondary-index partition of notices waiting for the relay, oldest first.
pub const PENDING: &str = "NOTICE#PENDING";
/// Secondary-index partition of investors who want offering news.
const NEWS_SUBSCRIBERS: &str = "NEWS#SUBSCRIBERS";
/// A claim made this many times already is not made again (see the module's doc).
pub const MAX_SENDS: u8 = 2;

fn notice_key(id: &str) -> Key {
    Key::new(format!("NOTICE#{id}"), "NOTICE")
}

fn inbox_partition(user_id: &str) -> String {
    format!("INBOX#{user_id}")
}

fn unread_key(user_id: &str) -> Key {
    Key::new(format!("USER#{user_id}"), "INBOX")
}

fn preferences_key(user_id: &str) -> Key {
    Key::new(format!("USER#{user_id}"), "NOTIFY_PREFS")
}

/// Who a notice is for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    /// Every operator with this role.
    Operators(Role),
    /// One investor, by user id.
    Investor(String),
    /// Every accredited investor who opted in to offering news (fanned out).
    OfferingNews,
    /// Every investor (fanned out; each gets their own notice, or none).
    Investors,
}

impl Audience {
    /// Whether the notice is fanned out into one per person rather than sent itself.
    pub fn is_fan_out(&self) -> bool {
        matches!(self, Self::OfferingNews | Self::Investors)
    }
}

/// What a notice says, with a snapshot of the facts it needs as they were when it was
/// written: it renders the same whenever it is rendered. Amounts are in cents (SGD) or
/// whole units (DABS); the templates format them exactly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Notice {
    /// Money from the investor's bank reached their deposit account.
    DepositCredited { amount: u64, bank_reference: String, at: DateTime<Utc> },
    /// The bank took back a deposit before it cleared.
    DepositReturned { amount: u64, bank_reference: String, at: DateTime<Utc> },
    /// A withdrawal reached the investor's bank.
    WithdrawalPaid { withdrawal_id: String, amount: u64, at: DateTime<Utc> },
    /// The bank could not pay a withdrawal; the money is available again.
    WithdrawalFailed { withdrawal_id: String, amount: u64, reason: String, at: DateTime<Utc> },
    /// A subscription's money is held for the deal.
    SubscriptionReceived {
        deal_name: String,
        subscription_id: String,
        units: u64,
        unit_price: u64,
        held: u64,
        closes_at: DateTime<Utc>,
        at: DateTime<Utc>,
    },
    /// The investor cancelled a subscription; its hold was released.
    SubscriptionCancelled { deal_name: String, subscription_id: String, released: u64, at: DateTime<Utc> },
    /// A deal's allocation: what the investor asked for, what they got, what it cost and
    /// what came back.
    AllocationResult {
        deal_name: String,
        subscription_id: String,
        requested: u64,
        allocated: u64,
        /// The deal's allocation ratio, a decimal string to 15 places.
        ratio: String,
        unit_price: u64,
        charged: u64,
        refunded: u64,
        at: DateTime<Utc>,
    },
    /// DABS credited to the investor's holding at issuance.
    DabsIssued {
        deal_name: String,
        asset: String,
        subscription_id: String,
        units: u64,
        unit_price: u64,
        /// The Custody's reference of the approved distribution.
        custody_reference: String,
        /// The ledger's transfer id, as the chain records it.
        chain_record: String,
        at: DateTime<Utc>,
    },
    /// A fill of the investor's order on the secondary market, with its contract note.
    TradeConfirmed {
        trade_id: String,
        order_id: String,
        /// `buy` or `sell`.
        side: String,
        market: String,
        asset: String,
        units: u64,
        /// Cents per unit.
        price: u64,
        notional: u64,
        /// The investor's fee: added to a buy, deducted from a sale.
        fee: u64,
        /// What the investor paid (a buy) or received (a sale).
        net: u64,
        at: DateTime<Utc>,
    },
    /// An offering opened.
    DealPublished {
        deal_id: String,
        deal_name: String,
        unit_price: u64,
        supply: u64,
        opens_at: DateTime<Utc>,
        closes_at: DateTime<Utc>,
    },
    /// An investor's account over a calendar month (Singapore time): cash movements,
    /// holdings at the month's end and their last price.
    MonthlyStatement {
        /// `2026-11`.
        month: String,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        opening_balance: i64,
        closing_balance: i64,
        movements: Vec<Movement>,
        holdings: Vec<Holding>,
    },
    /// The month's statements are due: fanned out into a statement per investor.
    StatementsDue { month: String, from: DateTime<Utc>, to: DateTime<Utc> },
    /// A change request waits for a checker.
    ChangeAwaitingChecker { change_id: String, summary: String, proposed_at: DateTime<Utc> },
    /// A settlement leg failed past its deadline and waits for an operator.
    SettlementLegStuck { deal_id: String, leg_id: String, leg: LegKind, error: String, since: DateTime<Utc> },
    /// A reconciliation run finished (whatever its verdict, incomplete included).
    ReconciliationFinished {
        run_id: String,
        cut_off: DateTime<Utc>,
        verdict: RunVerdict,
        breaks: u64,
        timing: u64,
        resolved: u64,
    },
}

impl Notice {
    /// The kind's name, as its templates are named.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::DepositCredited { .. } => "deposit_credited",
            Self::DepositReturned { .. } => "deposit_returned",
            Self::WithdrawalPaid { .. } => "withdrawal_paid",
            Self::WithdrawalFailed { .. } => "withdrawal_failed",
            Self::SubscriptionReceived { .. } => "subscription_received",
            Self::SubscriptionCancelled { .. } => "subscription_cancelled",
            Self::AllocationResult { .. } => "allocation_result",
            Self::DabsIssued { .. } => "dabs_issued",
            Self::TradeConfirmed { .. } => "trade_confirmed",
            Self::DealPublished { .. } => "deal_published",
            Self::MonthlyStatement { .. } => "monthly_statement",
            Self::StatementsDue { .. } => "statements_due",
            Self::ChangeAwaitingChecker { .. } => "change_awaiting_checker",
            Self::SettlementLegStuck { .. } => "settlement_leg_stuck",
            Self::ReconciliationFinished { .. } => "reconciliation_finished",
        }
    }

    /// The PDF document the notice comes with, by template name; `None` for email only.
    pub fn document(&self) -> Option<&'static str> {
        match self {
            Self::DepositCredited { .. } | Self::DepositReturned { .. } => Some("deposit_advice"),
            Self::WithdrawalPaid { .. } | Self::WithdrawalFailed { .. } => Some("withdrawal_advice"),
            Self::AllocationResult { .. } => Some("allocation_notice"),
            Self::DabsIssued { .. } => Some("contract_note"),
            Self::TradeConfirmed { .. } => Some("trade_contract_note"),
            Self::MonthlyStatement { .. } => Some("account_statement"),
            _ => None,
        }
    }

    /// Whether the reader may stop receiving this kind (news); transactional notices not.
    pub fn is_news(&self) -> bool {
        matches!(self, Self::DealPublished { .. })
    }
}

/// A posted movement of an investor's deposit account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    pub at: DateTime<Utc>,
    pub description: String,
    /// Cents in (positive) or out (negative).
    pub amount: i64,
    /// The posted balance after it, in cents.
    pub balance: i64,
}

/// DABS held at a statement's end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holding {
    pub asset: String,
    pub units: u64,
    /// Cents per unit: the last price known (the offering's, before any trade).
    pub last_price: u64,
}

/// Where a notice's delivery stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Delivery {
    /// Written; waiting for the relay.
    Pending,
    /// On the notify queue.
    Queued,
    /// Claimed for sending, the `attempt`th time.
    Sending {
        attempt: u8,
        since: DateTime<Utc>,
    },
    Sent {
        message_id: String,
        at: DateTime<Utc>,
    },
    /// Not sent, for good: a refused address, a claim past [`MAX_SENDS`], a fan-out's
    /// parent done (nothing to send itself).
    Failed {
        reason: String,
        at: DateTime<Utc>,
    },
    /// A fan-out's parent whose notices for each person are all written.
    FannedOut {
        notices: u64,
        at: DateTime<Utc>,
    },
}

/// A notice as stored under `NOTICE#<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Noted {
    pub id: String,
    pub audience: Audience,
    pub notice: Notice,
    pub at: DateTime<Utc>,
    pub delivery: Delivery,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_at: Option<DateTime<Utc>>,
}

impl Noted {
    /// The owner of an investor's notice.
    pub fn investor(&self) -> Option<&str> {
        match &self.audience {
            Audience::Investor(id) => Some(id),
            _ => None,
        }
    }

    fn item(&self) -> Result<Item, StoreError> {
        let item = Item::new(notice_key(&self.id), self)?;
        let by_time = format!("{}#{}", sortable(self.at), self.id);
        Ok(match (&self.delivery, self.investor()) {
            (Delivery::Pending, _) => item.with_index(PENDING, by_time),
            (Delivery::Queued, _) | (_, None) => item,
            (_, Some(investor)) => item.with_index(inbox_partition(investor), by_time),
        })
    }
}

/// A notice's id from what it reports (`origin`, e.g. the transfer's id): the same fact
/// never makes two notices. Opaque and safe in a URL: `ntc_` and 26 hex digits of SHA-256.
pub fn id_of(origin: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, origin.as_bytes());
    let hex: String = digest.as_ref().iter().take(13).map(|b| format!("{b:02x}")).collect();
    format!("ntc_{hex}")
}

/// The write that queues the notice of `origin` (see [`id_of`]); put it in the
/// transaction of what it reports.
pub fn write(origin: &str, audience: Audience, notice: Notice, at: DateTime<Utc>) -> Result<Write, StoreError> {
    let noted = Noted { id: id_of(origin), audience, notice, at, delivery: Delivery::Pending, read_at: None };
    Ok(Write::put(noted.item()?, Condition::NotExists))
}

/// What the notify queue carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum NotifyMessage {
    /// Render and send notice `id`.
    Deliver { id: String },
    /// Write the next page of notice `id`'s per-person notices.
    FanOut { id: String, after: Option<Cursor> },
}

impl NotifyMessage {
    pub fn body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NoticeError {
    #[error("no notice {0}")]
    NotFound(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Queue(#[from] QueueError),
}

impl Permanence for NoticeError {
    fn is_permanent(&self) -> bool {
        match self {
            Self::NotFound(_) => true,
            Self::Store(e) => e.is_permanent(),
            Self::Queue(_) => false,
        }
    }
}

/// What a claim decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Send it now.
    Send(Noted),
    /// Sent, failed or fanned out already: nothing to do.
    Done,
    /// Claimed [`MAX_SENDS`] times already: marked failed, not sent again.
    GaveUp(Noted),
}

/// An investor's unread count, kept in the writes that change it.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
struct Unread {
    unread: u64,
}

/// An investor's notification preferences.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Preferences {
    /// Emails when an offering opens. Off unless the investor turns it on.
    pub offering_news: bool,
}

/// Preferences as stored, with whose they are (the news index lists these).
#[derive(Debug, Serialize, Deserialize)]
struct Subscriber {
    user_id: String,
    #[serde(flatten)]
    preferences: Preferences,
}

/// A page of an investor's inbox, newest first.
#[derive(Debug, Clone)]
pub struct Inbox {
    pub notices: Vec<Noted>,
    pub next: Option<Cursor>,
    pub unread: u64,
}

/// Notices' delivery states, the investor's inbox and preferences.
#[derive(Clone)]
pub struct Notices {
    store: Arc<dyn Store>,
    queue: Arc<dyn Queue>,
    clock: Arc<dyn Clock>,
}

impl Notices {
    pub fn new(store: Arc<dyn Store>, queue: Arc<dyn Queue>, clock: Arc<dyn Clock>) -> Self {
        Self { store, queue, clock }
    }

    pub async fn get(&self, id: &str) -> Result<Option<(Noted, u64)>, StoreError> {
        Ok(match self.store.get(&notice_key(id)).await? {
            Some(item) => Some((item.decode()?, item.version)),
            None => None,
        })
    }

    /// Sends up to `max` waiting notices to the notify queue and marks them queued;
    /// answers how many. Harmless to run twice, or beside another relay.
    pub async fn relay(&self, max: usize) -> Result<usize, NoticeError> {
        let waiting = self.store.query(&Query::secondary(PENDING).limit(max)).await?;
        if waiting.items.is_empty() {
            return Ok(0);
        }
        let mut bodies = Vec::with_capacity(waiting.items.len());
        for item in &waiting.items {
            let noted: Noted = item.decode()?;
            let id = noted.id.clone();
            let message = if noted.audience.is_fan_out() {
                NotifyMessage::FanOut { id, after: None }
            } else {
                NotifyMessage::Deliver { id }
            };
            bodies.push(message.body());
        }
        self.queue.send(QueueName::Notify, bodies).await?;
        for item in &waiting.items {
            let mut noted: Noted = item.decode()?;
            noted.delivery = Delivery::Queued;
            match self.store.put(noted.item()?, Condition::VersionIs(item.version)).await {
                // Claimed already by a quick consumer, or queued by another relay.
                Ok(()) | Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(waiting.items.len())
    }

    /// Claims notice `id` for sending (see the module's doc). An investor's notice enters
    /// their inbox, unread, in the same write as its first claim.
    pub async fn claim(&self, id: &str) -> Result<Claim, NoticeError> {
        let mut contention = Contention::default();
        loop {
            let (mut noted, version) = self.get(id).await?.ok_or_else(|| NoticeError::NotFound(id.to_owned()))?;
            let now = self.clock.now();
            let first = match noted.delivery {
                Delivery::Pending | Delivery::Queued => true,
                Delivery::Sending { attempt, .. } if attempt < MAX_SENDS => false,
                Delivery::Sending { .. } => {
                    noted.delivery = Delivery::Failed {
                        reason: format!("claimed {MAX_SENDS} times without an answer recorded; not sent again"),
                        at: now,
                    };
                    match self.store.put(noted.item()?, Condition::VersionIs(version)).await {
                        Ok(()) => return Ok(Claim::GaveUp(noted)),
                        Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => {
                            contention.lost().await?;
                            continue;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Delivery::Sent { .. } | Delivery::Failed { .. } | Delivery::FannedOut { .. } => return Ok(Claim::Done),
            };
            let attempt = match noted.delivery {
                Delivery::Sending { attempt, .. } => attempt + 1,
                _ => 1,
            };
            noted.delivery = Delivery::Sending { attempt, since: now };
            let mut writes = vec![Write::put(noted.item()?, Condition::VersionIs(version))];
            if first && let Some(investor) = noted.investor() {
                writes.push(self.unread_change(investor, 1).await?);
            }
            match self.store.transact(writes).await {
                Ok(()) => return Ok(Claim::Send(noted)),
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// The write that moves an investor's unread count by `by`, on the version read.
    async fn unread_change(&self, investor: &str, by: i64) -> Result<Write, StoreError> {
        let key = unread_key(investor);
        let (count, condition) = match self.store.get(&key).await? {
            Some(item) => (item.decode::<Unread>()?, Condition::VersionIs(item.version)),
            None => (Unread::default(), Condition::NotExists),
        };
        let unread = count.unread.saturating_add_signed(by);
        Ok(Write::put(Item::new(key, &Unread { unread })?, condition))
    }

    /// Records how a claimed send ended: sent with the mail service's id, or failed for
    /// good with the reason. Only a notice still *sending* changes.
    pub async fn finish(&self, id: &str, outcome: Result<String, String>) -> Result<(), NoticeError> {
        let now = self.clock.now();
        let mut contention = Contention::default();
        loop {
            let (mut noted, version) = self.get(id).await?.ok_or_else(|| NoticeError::NotFound(id.to_owned()))?;
            if !matches!(noted.delivery, Delivery::Sending { .. }) {
                return Ok(());
            }
            noted.delivery = match &outcome {
                Ok(message_id) => Delivery::Sent { message_id: message_id.clone(), at: now },
                Err(reason) => Delivery::Failed { reason: reason.clone(), at: now },
            };
            match self.store.put(noted.item()?, Condition::VersionIs(version)).await {
                Ok(()) => return Ok(()),
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Writes the per-person notices of fan-out notice `parent` for one page of people,
    /// the page after `after`: each as `fan_out` makes it, with its own id, pending. The
    /// last page marks the parent fanned out. Answers the cursor of the next page.
    pub async fn fan_out_page(
        &self,
        parent: &Noted,
        after: Option<Cursor>,
        page: usize,
        fan_out: &dyn FanOut,
    ) -> Result<Option<Cursor>, NoticeError> {
        let (people, next) = match parent.audience {
            Audience::OfferingNews => {
                let found = self.store.query(&Query::secondary(NEWS_SUBSCRIBERS).limit(page).after(after)).await?;
                let mut users = Vec::with_capacity(found.items.len());
                for item in &found.items {
                    let Subscriber { user_id, .. } = item.decode()?;
                    if let Some(user) = self.store.get(&user_key(&user_id)).await? {
                        users.push(user.decode::<User>()?);
                    }
                }
                (users, found.next)
            }
            Audience::Investors => {
                let found = self.store.query(&Query::secondary(USERS_INDEX).limit(page).after(after)).await?;
                let users = found.items.iter().map(Item::decode).collect::<Result<Vec<User>, _>>()?;
                (users.into_iter().filter(|u| u.roles.is_empty()).collect(), found.next)
            }
            Audience::Investor(_) | Audience::Operators(_) => return Ok(None),
        };
        let mut written = 0u64;
        for user in &people {
            let Some(notice) = fan_out.notice_for(parent, user).await? else { continue };
            let child =
                write(&format!("{}:{}", parent.id, user.id), Audience::Investor(user.id.clone()), notice, parent.at)?;
            match self.store.transact(vec![child]).await {
                Ok(()) => written += 1,
                Err(StoreError::ConditionFailed { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if written > 0 || next.is_none() {
            let now = self.clock.now();
            crate::ports::store::update(self.store.as_ref(), &notice_key(&parent.id), |noted: &mut Noted| {
                let before = match noted.delivery {
                    Delivery::FannedOut { notices, .. } => notices,
                    _ => 0,
                };
                noted.delivery = Delivery::FannedOut { notices: before + written, at: now };
            })
            .await?;
        }
        Ok(next)
    }

    /// A page of the investor's inbox, newest first, with their unread count.
    pub async fn inbox(&self, investor: &str, limit: usize, after: Option<Cursor>) -> Result<Inbox, StoreError> {
        let page = self
            .store
            .query(&Query::secondary(inbox_partition(investor)).descending().limit(limit).after(after))
            .await?;
        let notices = page.items.iter().map(Item::decode).collect::<Result<_, _>>()?;
        let unread = match self.store.get(&unread_key(investor)).await? {
            Some(item) => item.decode::<Unread>()?.unread,
            None => 0,
        };
        Ok(Inbox { notices, next: page.next, unread })
    }

    /// The investor's notice `id`; `None` for another's, or one not in the inbox yet.
    pub async fn of_investor(&self, investor: &str, id: &str) -> Result<Option<Noted>, StoreError> {
        Ok(self
            .get(id)
            .await?
            .map(|(noted, _)| noted)
            .filter(|n| n.investor() == Some(investor) && !matches!(n.delivery, Delivery::Pending | Delivery::Queued)))
    }

    /// Marks the investor's notice read (once: the unread count falls once).
    pub async fn mark_read(&self, investor: &str, id: &str) -> Result<Option<Noted>, StoreError> {
        let mut contention = Contention::default();
        loop {
            let Some((mut noted, version)) = self.get(id).await? else { return Ok(None) };
            if noted.investor() != Some(investor) || matches!(noted.delivery, Delivery::Pending | Delivery::Queued) {
                return Ok(None);
            }
            if noted.read_at.is_some() {
                return Ok(Some(noted));
            }
            noted.read_at = Some(self.clock.now());
            let writes =
                vec![Write::put(noted.item()?, Condition::VersionIs(version)), self.unread_change(investor, -1).await?];
            match self.store.transact(writes).await {
                Ok(()) => return Ok(Some(noted)),
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => contention.lost().await?,
                Err(e) => return Err(e),
            }
        }
    }

    pub async fn preferences(&self, user_id: &str) -> Result<Preferences, StoreError> {
        let stored = self.store.get(&preferences_key(user_id)).await?;
        Ok(stored.map(|i| i.decode::<Subscriber>()).transpose()?.map(|s| s.preferences).unwrap_or_default())
    }

    /// Sets the investor's preferences (the last write wins).
    pub async fn set_preferences(&self, user_id: &str, preferences: Preferences) -> Result<(), StoreError> {
        let item = Item::new(preferences_key(user_id), &Subscriber { user_id: user_id.to_owned(), preferences })?;
        let item = if preferences.offering_news { item.with_index(NEWS_SUBSCRIBERS, user_id) } else { item };
        self.store.put(item, Condition::None).await
    }
}

/// What a fan-out notice becomes for one person, if anything (they no longer qualify, or
/// there is nothing to tell them).
#[async_trait::async_trait]
pub trait FanOut: Send + Sync {
    async fn notice_for(&self, parent: &Noted, user: &User) -> Result<Option<Notice>, StoreError>;
}
