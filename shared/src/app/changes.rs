//! Maker-checker: a sensitive operator action is a change request that one operator
//! proposes and a different operator with the checker permission approves or rejects.
//! The decision, the change and the audit entry are written in one transaction.

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::accounts::{User, user_item, user_key};
use super::audit::{AuditLog, Event};
use super::deals::{Deal, DealPatch, apply_patch, deal_item, deal_key, differences};
use super::issuers::{IssuerStatus, StoredIssuer, issuer_item, issuer_key};
use super::notices::{self, Audience, Notice};
use super::reconcile::{BreakStatus, TrackedBreak, break_item, break_key};
use super::trading::Market;
use crate::domain::access::{self, Action, LEVEL_ACCREDITED, Resource, Role, Subject};
use crate::domain::deal::{DealState, Step};
use crate::domain::reconcile::Pair;
use crate::ports::store::{Condition, Contention, Cursor, Item, Key, Query, StoreError, Write};
use crate::ports::{Clock, Ids, Store};

/// A request not decided this long after it was proposed can no longer be approved.
pub const REQUEST_LIFETIME: TimeDelta = TimeDelta::hours(24);
const INDEX: &str = "CHANGE-REQUESTS";

/// What a review the platform proposes carries from the investor's Myinfo assessment:
/// nothing a checker should not see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReviewAttachment {
    pub outcome: crate::domain::accreditation::Outcome,
    pub met: Vec<crate::domain::accreditation::Criterion>,
    pub nric_masked: String,
    pub assessed_at: chrono::DateTime<chrono::Utc>,
}

/// The sensitive changes that need a second operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    GrantRole {
        user_id: String,
        role: Role,
    },
    RevokeRole {
        user_id: String,
        role: Role,
    },
    /// Verification level 3 after a manual review of the investor's documents.
    SetLevel {
        user_id: String,
        level: u8,
        /// The Myinfo assessment behind a review the platform proposed (the decrypted
        /// data is read through break-glass).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        myinfo: Option<ReviewAttachment>,
    },
    /// Approves or rejects an issuer's onboarding.
    DecideIssuer {
        issuer_id: String,
        approve: bool,
    },
    /// Publishes a deal: it becomes visible, and its economic terms freeze.
    PublishDeal {
        deal_id: String,
    },
    /// Edits a published deal's descriptions or documents (what investors read).
    EditDeal {
        deal_id: String,
        patch: DealPatch,
    },
    /// Closes an open deal before its window ends; its allocation follows.
    CloseDeal {
        deal_id: String,
    },
    /// Cancels a published deal; every subscription's hold is released.
    CancelDeal {
        deal_id: String,
    },
    /// Accepts a reconciliation break as explained: later runs that find the same
    /// difference report it as accepted, not as a break.
    AcceptBreak {
        pair: Pair,
        account: String,
        asset: String,
        note: String,
    },
    /// Halts an asset's market: no order is taken or matched until it resumes.
    HaltMarket {
        asset: String,
        reason: String,
    },
    ResumeMarket {
        asset: String,
    },
    /// Sets an asset's market rules (session, tick, lot, band, fee) from the next order on.
    SetMarketRules {
        asset: String,
        rules: crate::domain::market::Rules,
    },
}

impl Change {
    /// The item the change applies to.
    fn target(&self) -> Key {
        match self {
            Self::GrantRole { user_id, .. } | Self::RevokeRole { user_id, .. } | Self::SetLevel { user_id, .. } => {
                user_key(user_id)
            }
            Self::DecideIssuer { issuer_id, .. } => issuer_key(issuer_id),
            Self::PublishDeal { deal_id }
            | Self::EditDeal { deal_id, .. }
            | Self::CloseDeal { deal_id }
            | Self::CancelDeal { deal_id } => deal_key(deal_id),
            Self::AcceptBreak { pair, account, asset, .. } => break_key(*pair, account, asset),
            Self::HaltMarket { asset, .. } | Self::ResumeMarket { asset } | Self::SetMarketRules { asset, .. } => {
                crate::app::trading::market_key(asset)
            }
        }
    }

    /// What the change is about; one pending request per subject.
    fn subject(&self) -> String {
        match self {
            Self::GrantRole { user_id, role } | Self::RevokeRole { user_id, role } => {
                format!("user:{user_id}:role:{}", role.as_str())
            }
            Self::SetLevel { user_id, .. } => format!("user:{user_id}:level"),
            Self::DecideIssuer { issuer_id, .. } => format!("issuer:{issuer_id}:decision"),
            Self::PublishDeal { deal_id } => format!("deal:{deal_id}:publish"),
            Self::EditDeal { deal_id, .. } => format!("deal:{deal_id}:edit"),
            // One pending request may end the deal, by either road.
            Self::CloseDeal { deal_id } | Self::CancelDeal { deal_id } => format!("deal:{deal_id}:end"),
            Self::AcceptBreak { pair, account, asset, .. } => {
                format!("reconciliation:{}:{account}:{asset}:accept", pair.other_book())
            }
            Self::HaltMarket { asset, .. } | Self::ResumeMarket { asset } => format!("market:{asset}:state"),
            Self::SetMarketRules { asset, .. } => format!("market:{asset}:rules"),
        }
    }

    /// The user the change is about, if it is about one.
    fn user(&self) -> Option<&str> {
        match self {
            Self::GrantRole { user_id, .. } | Self::RevokeRole { user_id, .. } | Self::SetLevel { user_id, .. } => {
                Some(user_id)
            }
            _ => None,
        }
    }

    fn action(&self) -> Action {
        match self {
            Self::GrantRole { .. } | Self::RevokeRole { .. } => Action::ProposeRoleChange,
            Self::SetLevel { .. } => Action::ProposeAccreditation,
            Self::DecideIssuer { .. } => Action::ReviewIssuers,
            Self::PublishDeal { .. } | Self::EditDeal { .. } | Self::CancelDeal { .. } => Action::ManageDeals,
            Self::HaltMarket { .. } | Self::ResumeMarket { .. } | Self::SetMarketRules { .. } => Action::ManageDeals,
            Self::CloseDeal { .. } => Action::ManageSettlement,
            Self::AcceptBreak { .. } => Action::ManageReconciliation,
        }
    }

    /// What the checker needs: the general checker permission for user changes, the
    /// deal operators' own for issuer decisions (never the maker's).
    fn checker_action(&self) -> Action {
        match self {
            Self::DecideIssuer { .. } => Action::ReviewIssuers,
            Self::PublishDeal { .. } | Self::EditDeal { .. } | Self::CancelDeal { .. } => Action::ManageDeals,
            Self::HaltMarket { .. } | Self::ResumeMarket { .. } | Self::SetMarketRules { .. } => Action::ManageDeals,
            Self::CloseDeal { .. } => Action::ManageSettlement,
            Self::AcceptBreak { .. } => Action::ManageReconciliation,
            _ => Action::DecideChangeRequest,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Self::GrantRole { .. } => "grant-role",
            Self::RevokeRole { .. } => "revoke-role",
            Self::SetLevel { .. } => "set-level",
            Self::DecideIssuer { approve: true, .. } => "approve-issuer",
            Self::DecideIssuer { approve: false, .. } => "reject-issuer",
            Self::PublishDeal { .. } => "publish-deal",
            Self::EditDeal { .. } => "edit-deal",
            Self::CloseDeal { .. } => "close-deal",
            Self::CancelDeal { .. } => "cancel-deal",
            Self::AcceptBreak { .. } => "accept-break",
            Self::HaltMarket { .. } => "halt-market",
            Self::ResumeMarket { .. } => "resume-market",
            Self::SetMarketRules { .. } => "set-market-rules",
        }
    }

    /// A deal moved by `step`, as an item; `Err` when the step does not apply.
    fn step_deal(target: &Item, step: Step, now: DateTime<Utc>) -> Result<Item, ChangeError> {
        let mut deal: Deal = target.decode()?;
        deal.state = crate::domain::deal::next(deal.state, step).map_err(|t| ChangeError::Deal(t.into()))?;
        deal.updated_at = now;
        Ok(deal_item(&deal)?)
    }

    /// A publication's step, where a deal that moved on meanwhile is left as it is.
    fn step_if_applies(target: &Item, step: Step, now: DateTime<Utc>) -> Result<Option<Item>, ChangeError> {
        match Self::step_deal(target, step, now) {
            Ok(item) => Ok(Some(item)),
            Err(ChangeError::Deal(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A digest of what the checker is asked to approve, taken when the change is
    /// proposed: for a deal, its terms (building, documents, economics, window), so an
    /// edit, close or cancel is approved on the deal the maker saw. Approval is refused if
    /// the target no longer matches.
    fn snapshot(&self, target: &Item) -> Result<Option<String>, StoreError> {
        match self {
            Self::PublishDeal { .. } | Self::EditDeal { .. } | Self::CloseDeal { .. } | Self::CancelDeal { .. } => {
                let terms = serde_json::to_vec(&target.decode::<Deal>()?.terms)
                    .map_err(|e| StoreError::Codec(e.to_string()))?;
                let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &terms);
                Ok(Some(data_encoding::HEXLOWER.encode(digest.as_ref())))
            }
            _ => Ok(None),
        }
    }

    /// What proposing changes on the target (a deal goes to pending approval); `Err` when
    /// the target is not in a state the change can apply to.
    fn on_propose(&self, target: &Item, now: DateTime<Utc>) -> Result<Option<Item>, ChangeError> {
        match self {
            Self::DecideIssuer { .. } if target.decode::<StoredIssuer>()?.status != IssuerStatus::PendingReview => {
                Err(ChangeError::Invalid("the issuer was already decided"))
            }
            Self::PublishDeal { .. } => match target.decode::<Deal>()?.state {
                DealState::Draft => Ok(Some(Self::step_deal(target, Step::SubmitForApproval, now)?)),
                // A request that expired left it pending: proposing again is allowed.
                DealState::PendingApproval => Ok(None),
                _ => Err(ChangeError::Invalid("only a draft deal can be proposed for publication")),
            },
            Self::EditDeal { patch, .. } => {
                let deal: Deal = target.decode()?;
                if !matches!(deal.state, DealState::Published | DealState::Open) {
                    return Err(ChangeError::Invalid("only a published or open deal's edits need approval"));
                }
                match apply_patch(&deal, patch, now) {
                    Ok(after) if after.terms == deal.terms => Err(ChangeError::Invalid("the edit changes nothing")),
                    Ok(_) => Ok(None),
                    Err(e) => Err(ChangeError::Deal(e)),
                }
            }
            Self::CloseDeal { .. } if target.decode::<Deal>()?.state != DealState::Open => {
                Err(ChangeError::Invalid("only an open deal can be closed early"))
            }
            Self::CancelDeal { .. }
                if !matches!(target.decode::<Deal>()?.state, DealState::Published | DealState::Open) =>
            {
                Err(ChangeError::Invalid("only a published or open deal's cancellation needs approval"))
            }
            Self::AcceptBreak { note, .. } if note.trim().is_empty() => {
                Err(ChangeError::Invalid("accepting a break needs a note"))
            }
            Self::AcceptBreak { .. } if target.decode::<TrackedBreak>()?.status != BreakStatus::Open => {
                Err(ChangeError::Invalid("only an open break can be accepted"))
            }
            Self::HaltMarket { reason, .. } if reason.trim().is_empty() => {
                Err(ChangeError::Invalid("halting a market needs a reason"))
            }
            Self::HaltMarket { .. } if target.decode::<Market>()?.halted => {
                Err(ChangeError::Invalid("the market is halted already"))
            }
            Self::ResumeMarket { .. } if !target.decode::<Market>()?.halted => {
                Err(ChangeError::Invalid("the market is not halted"))
            }
            Self::SetMarketRules { rules, .. } => match crate::domain::market::check_rules(rules) {
                Ok(()) => Ok(None),
                Err((_, why)) => Err(ChangeError::Invalid(why)),
            },
            _ => Ok(None),
        }
    }

    /// What rejecting changes on the target (a deal returns to draft).
    fn on_reject(&self, target: &Item, now: DateTime<Utc>) -> Result<Option<Item>, ChangeError> {
        match self {
            Self::PublishDeal { .. } => Self::step_if_applies(target, Step::ReturnToDraft, now),
            _ => Ok(None),
        }
    }

    /// The target as the change leaves it; `None` when it would change nothing, `Err` when
    /// the target moved on so that the change no longer applies (the deal closed before
    /// its cancellation was approved).
    fn apply(&self, target: &Item, now: DateTime<Utc>) -> Result<Option<Item>, ChangeError> {
        match self {
            Self::PublishDeal { .. } => return Self::step_if_applies(target, Step::Publish, now),
            Self::EditDeal { patch, .. } => {
                let after = apply_patch(&target.decode()?, patch, now).map_err(ChangeError::Deal)?;
                return Ok(Some(deal_item(&after)?));
            }
            Self::CloseDeal { .. } => return Self::step_deal(target, Step::Close, now).map(Some),
            Self::CancelDeal { .. } => return Self::step_deal(target, Step::Cancel, now).map(Some),
            _ => {}
        }
        if let Self::AcceptBreak { note, .. } = self {
            let mut tracked: TrackedBreak = target.decode()?;
            if tracked.status != BreakStatus::Open {
                return Ok(None);
            }
            tracked.status = BreakStatus::Accepted;
            tracked.note = Some(note.clone());
            return Ok(Some(break_item(&tracked)?));
        }
        if let Self::HaltMarket { .. } | Self::ResumeMarket { .. } | Self::SetMarketRules { .. } = self {
            let mut market: Market = target.decode()?;
            match self {
                Self::HaltMarket { reason, .. } if !market.halted => {
                    market.halted = true;
                    market.halt_reason = Some(reason.clone());
                }
                Self::ResumeMarket { .. } if market.halted => {
                    market.halted = false;
                    market.halt_reason = None;
                }
                Self::SetMarketRules { rules, .. } if market.rules != *rules => market.rules = rules.clone(),
                _ => return Ok(None),
            }
            market.updated_at = now;
            return Ok(Some(market.item()?));
        }
        if let Self::DecideIssuer { approve, .. } = self {
            let mut issuer: StoredIssuer = target.decode()?;
            if issuer.status != IssuerStatus::PendingReview {
                return Ok(None);
            }
            issuer.status = if *approve { IssuerStatus::Approved } else { IssuerStatus::Rejected };
            issuer.decided_at = Some(now);
            return Ok(Some(issuer_item(&issuer)?));
        }
        let mut user: User = target.decode()?;
        if self.apply_to_user(&mut user) { Ok(Some(user_item(&user)?)) } else { Ok(None) }
    }

    /// Applies a user change; `false` when it would change nothing.
    fn apply_to_user(&self, user: &mut User) -> bool {
        match self {
            Self::GrantRole { role, .. } if !user.roles.iter().any(|r| r == role.as_str()) => {
                user.roles.push(role.as_str().to_owned());
                true
            }
            Self::RevokeRole { role, .. } if user.roles.iter().any(|r| r == role.as_str()) => {
                user.roles.retain(|r| r != role.as_str());
                true
            }
            Self::SetLevel { level, .. } if user.level != *level => {
                user.level = *level;
                true
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = ChangeStatus)]
pub enum Status {
    Pending,
    Approved,
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChangeRequest {
    pub id: String,
    pub change: Change,
    pub status: Status,
    pub proposed_by: String,
    pub proposed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub decided_by: Option<String>,
    pub decided_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
    /// SHA-256 (hex) of what was proposed, where the change is about content (a deal's
    /// terms): the checker approves exactly this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_sha256: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("not allowed: {0}")]
    Forbidden(&'static str),
    #[error("no such user or change request")]
    NotFound,
    #[error("invalid change: {0}")]
    Invalid(&'static str),
    #[error("a request for the same change is already pending")]
    DuplicatePending,
    #[error("the request was already decided")]
    AlreadyDecided,
    #[error("the request expired before it was approved")]
    Expired,
    /// The deal refuses the change (a frozen field, a state it cannot leave that way).
    #[error(transparent)]
    Deal(super::deals::DealError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

fn request_key(id: &str) -> Key {
    Key::new(format!("CHANGE#{id}"), "REQUEST")
}

fn pending_key(subject: &str) -> Key {
    Key::new(format!("PENDING#{subject}"), "LOCK")
}

fn request_item(request: &ChangeRequest) -> Result<Item, StoreError> {
    Ok(Item::new(request_key(&request.id), request)?
        .with_index(INDEX, format!("{}#{}", request.proposed_at.to_rfc3339(), request.id)))
}

pub struct ChangeRequests {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    audit: AuditLog,
}

impl ChangeRequests {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, ids: Arc<dyn Ids>) -> Self {
        Self { audit: AuditLog::new(store.clone(), clock.clone()), store, clock, ids }
    }

    async fn refuse(&self, actor: &Subject<'_>, action: &str, target: &str, reason: &'static str) -> ChangeError {
        let event = Event::denied(actor.user_id, action, target, reason);
        if let Err(error) = self.audit.append(event).await {
            tracing::error!(%error, "could not audit a refusal");
        }
        ChangeError::Forbidden(reason)
    }

    /// Proposes a change (the maker's step).
    pub async fn propose(&self, actor: &Subject<'_>, change: Change) -> Result<ChangeRequest, ChangeError> {
        let action = format!("change-request.propose.{}", change.name());
        let decision = access::decide(actor, change.action(), Resource::None);
        if !decision.is_allowed() {
            return Err(self.refuse(actor, &action, &change.subject(), decision.reason()).await);
        }
        if let Change::SetLevel { level, .. } = change
            && level != LEVEL_ACCREDITED
        {
            return Err(ChangeError::Invalid("only level 3 is set by manual review"));
        }
        let Some(target) = self.store.get(&change.target()).await? else {
            return Err(ChangeError::NotFound);
        };
        if let Change::SetLevel { user_id, .. } = &change
            && !super::mfa::enrolled(self.store.as_ref(), user_id).await?
        {
            return Err(ChangeError::Invalid("level 3 needs an enrolled second factor"));
        }
        let proposed = change.on_propose(&target, self.clock.now())?;
        let snapshot_sha256 = change.snapshot(&target)?;
        let now = self.clock.now();
        let request = ChangeRequest {
            id: self.ids.new_id("chg"),
            change,
            status: Status::Pending,
            proposed_by: actor.user_id.to_owned(),
            proposed_at: now,
            expires_at: now + REQUEST_LIFETIME,
            decided_by: None,
            decided_at: None,
            note: None,
            snapshot_sha256,
        };
        let lock = Item::new(pending_key(&request.change.subject()), &request.id)?.expiring_at(request.expires_at);
        let mut contention = Contention::default();
        loop {
            let event = Event {
                actor: actor.user_id.into(),
                action: action.clone(),
                target: request.change.subject(),
                decision: "proposed".into(),
                reason: format!("request {}", request.id),
            };
            let mut writes = vec![
                Write::put(lock.clone(), Condition::NotExists),
                Write::put(request_item(&request)?, Condition::NotExists),
            ];
            if let Some(item) = &proposed {
                writes.push(Write::put(item.clone(), Condition::VersionIs(target.version)));
            }
            if let Some(role) = access::responsible_role(request.change.checker_action()) {
                let notice = Notice::ChangeAwaitingChecker {
                    change_id: request.id.clone(),
                    summary: format!("{} {}", request.change.name(), request.change.subject()),
                    proposed_at: now,
                };
                writes.push(notices::write(&format!("change:{}", request.id), Audience::Operators(role), notice, now)?);
            }
            writes.extend(self.audit.prepare(&event).await?);
            match self.store.transact(writes).await {
                Ok(()) => return Ok(request),
                Err(StoreError::ConditionFailed { index: 0, .. }) => return Err(ChangeError::DuplicatePending),
                // The audit head moved: prepare the entry again.
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Approves (the checker's step): applies the change.
    pub async fn approve(&self, actor: &Subject<'_>, id: &str) -> Result<ChangeRequest, ChangeError> {
        self.decide(actor, id, true, None).await
    }

    /// Rejects with a note.
    pub async fn reject(
        &self,
        actor: &Subject<'_>,
        id: &str,
        note: Option<String>,
    ) -> Result<ChangeRequest, ChangeError> {
        self.decide(actor, id, false, note).await
    }

    async fn decide(
        &self,
        actor: &Subject<'_>,
        id: &str,
        approve: bool,
        note: Option<String>,
    ) -> Result<ChangeRequest, ChangeError> {
        let verb = if approve { "approve" } else { "reject" };
        let mut contention = Contention::default();
        loop {
            let item = self.store.get(&request_key(id)).await?.ok_or(ChangeError::NotFound)?;
            let mut request: ChangeRequest = item.decode()?;
            let action = format!("change-request.{verb}.{}", request.change.name());
            let resource = Resource::Change { proposed_by: &request.proposed_by, about: request.change.user() };
            let decision = access::decide(actor, request.change.checker_action(), resource);
            if !decision.is_allowed() {
                return Err(self.refuse(actor, &action, &request.change.subject(), decision.reason()).await);
            }
            if request.status != Status::Pending {
                return Err(ChangeError::AlreadyDecided);
            }
            let now = self.clock.now();
            if approve && now >= request.expires_at {
                return Err(ChangeError::Expired);
            }
            request.status = if approve { Status::Approved } else { Status::Rejected };
            request.decided_by = Some(actor.user_id.to_owned());
            request.decided_at = Some(now);
            request.note = note.clone();
            let mut writes = vec![
                Write::put(request_item(&request)?, Condition::VersionIs(item.version)),
                Write::delete(pending_key(&request.change.subject()), Condition::None),
            ];
            let mut outcome = if approve { "approved" } else { "rejected" }.to_owned();
            let target = self.store.get(&request.change.target()).await?.ok_or(ChangeError::NotFound)?;
            if approve && request.change.snapshot(&target)? != request.snapshot_sha256 {
                return Err(ChangeError::Invalid("the target changed since the request was proposed; reject it"));
            }
            let mut reason = format!("request {} proposed by {}", request.id, request.proposed_by);
            if approve {
                match request.change.apply(&target, now)? {
                    Some(changed) => {
                        // An edit's entry names each changed field with its old and new value.
                        if let Change::EditDeal { .. } = request.change {
                            let (before, after) = (target.decode()?, changed.decode()?);
                            reason = format!("{reason}: {}", differences(&before, &after));
                        }
                        writes.push(Write::put(changed, Condition::VersionIs(target.version)));
                    }
                    None => outcome = "approved; nothing to change".into(),
                }
            } else if let Some(changed) = request.change.on_reject(&target, now)? {
                writes.push(Write::put(changed, Condition::VersionIs(target.version)));
            }
            let event = Event {
                actor: actor.user_id.into(),
                action,
                target: request.change.subject(),
                decision: outcome,
                reason,
            };
            writes.extend(self.audit.prepare(&event).await?);
            match self.store.transact(writes).await {
                Ok(()) => return Ok(request),
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Newest first.
    pub async fn list(
        &self,
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<(Vec<ChangeRequest>, Option<Cursor>), StoreError> {
        let page = self.store.query(&Query::secondary(INDEX).descending().limit(limit).after(cursor)).await?;
        Ok((page.items.iter().map(Item::decode).collect::<Result<_, _>>()?, page.next))
    }
}
