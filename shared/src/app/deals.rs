//! Deals: registered by a deal operator for an approved issuer, edited as their state
//! allows (nothing economic once published), published by maker-checker, opened and
//! closed by their window (or closed early by finance), cancelled before close. Every
//! change is one conditional write with its audit entry, which records what changed.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::audit::{AuditLog, Event};
use super::issuers::{IssuerStatus, StoredIssuer, issuer_key};
use super::ledger::{Ledger, LedgerError, sortable};
use super::notices::{self, Audience, Notice};
use crate::domain::deal::{self, BadTransition, Building, BuildingType, DealState, Step, Terms};
use crate::domain::ledger::{Account, Amount, Kind, SGD};
use crate::ports::store::{Condition, Contention, Cursor, Item, Key, Query, StoreError, Write};
use crate::ports::{Clock, Ids, Store};

const INDEX: &str = "DEALS";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deal {
    pub id: String,
    pub issuer_id: String,
    pub terms: Terms,
    pub state: DealState,
    /// The DABS asset investors' holdings of this deal are in.
    pub asset: String,
    /// The ledger account subscriptions are held in.
    pub escrow_account: String,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// A cancelled deal whose every hold was released: the sweep has nothing left to do.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub holds_released: bool,
}

/// What an edit may change; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DealPatch {
    pub building_name: Option<String>,
    pub building_address: Option<String>,
    pub building_type: Option<BuildingType>,
    pub documents: Option<Vec<String>>,
    /// Economic terms: only before publication.
    pub valuation: Option<Amount>,
    pub supply: Option<u64>,
    pub unit_price: Option<Amount>,
    pub min_units: Option<u64>,
    pub max_units: Option<u64>,
    pub opens_at: Option<DateTime<Utc>>,
    pub closes_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DealError {
    #[error("invalid terms")]
    Invalid(Vec<(&'static str, String)>),
    #[error("no such deal")]
    NotFound,
    #[error("the issuer is not approved")]
    IssuerNotApproved,
    #[error("{0} cannot change once the deal is published")]
    Frozen(&'static str),
    #[error("nothing can change once the deal closed")]
    Closed,
    /// The checker approves exactly what was proposed: no edit while publication waits.
    #[error("the deal awaits approval for publication")]
    AwaitingApproval,
    /// A published deal is edited or cancelled only through an approved change request.
    #[error("a published deal changes only with a second operator's approval")]
    NeedsApproval,
    #[error(transparent)]
    Transition(#[from] BadTransition),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl super::failure::Permanence for DealError {
    fn is_permanent(&self) -> bool {
        match self {
            Self::Ledger(e) => e.is_permanent(),
            Self::Store(e) => e.is_permanent(),
            // The rest are about the deal itself: delivering the message again changes none.
            _ => true,
        }
    }
}

/// What [`Deals::follow_windows`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Windows {
    pub opened: usize,
    pub closed: usize,
    /// Closed deals whose allocation should start.
    pub to_allocate: Vec<String>,
    /// Cancelled deals whose holds are not all released yet.
    pub to_release: Vec<String>,
}

pub fn deal_key(id: &str) -> Key {
    Key::new(format!("DEAL#{id}"), "DEAL")
}

pub fn deal_item(deal: &Deal) -> Result<Item, StoreError> {
    Ok(Item::new(deal_key(&deal.id), deal)?.with_index(INDEX, format!("{}#{}", sortable(deal.created_at), deal.id)))
}

/// The fields that differ between two JSON documents, as `path: before -> after`.
pub fn differences(before: &Value, after: &Value) -> String {
    fn walk(path: &str, before: &Value, after: &Value, out: &mut Vec<String>) {
        match (before, after) {
            (Value::Object(b), Value::Object(a)) => {
                let mut keys: Vec<&String> = b.keys().chain(a.keys()).collect();
                keys.sort();
                keys.dedup();
                for key in keys {
                    let path = if path.is_empty() { key.clone() } else { format!("{path}.{key}") };
                    walk(&path, b.get(key).unwrap_or(&Value::Null), a.get(key).unwrap_or(&Value::Null), out);
                }
            }
            (b, a) if b != a => out.push(format!("{path}: {b} -> {a}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk("", before, after, &mut out);
    out.join("; ")
}

pub struct Deals {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    ledger: Ledger,
    audit: AuditLog,
}

impl Deals {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn Ids>,
        ledger: Ledger,
        audit: AuditLog,
    ) -> Self {
        Self { store, clock, ids, ledger, audit }
    }

    pub async fn get(&self, id: &str) -> Result<Option<Deal>, StoreError> {
        self.store.get(&deal_key(id)).await?.map(|item| item.decode()).transpose()
    }

    /// Registers a draft deal for an approved issuer and opens its escrow account.
    pub async fn register(&self, actor: &str, issuer_id: &str, terms: Terms) -> Result<Deal, DealError> {
        let problems = deal::check_terms(&terms);
        if !problems.is_empty() {
            return Err(DealError::Invalid(problems));
        }
        let issuer: Option<StoredIssuer> =
            self.store.get(&issuer_key(issuer_id)).await?.map(|i| i.decode()).transpose()?;
        if issuer.is_none_or(|i| i.status != IssuerStatus::Approved) {
            return Err(DealError::IssuerNotApproved);
        }
        let now = self.clock.now();
        let id = self.ids.new_id("deal");
        let escrow = Account::of(Kind::Escrow, &id, SGD);
        let deal = Deal {
            asset: format!("DABS-{id}"),
            escrow_account: escrow.id.clone(),
            id,
            issuer_id: issuer_id.to_owned(),
            terms,
            state: DealState::Draft,
            created_by: actor.to_owned(),
            created_at: now,
            updated_at: now,
            holds_released: false,
        };
        self.ledger.open(escrow).await?;
        self.write(actor, "deal.register", None, &deal, &[]).await?;
        Ok(deal)
    }

    /// Edits a draft deal; a published one's edits go through [`crate::app::changes`].
    pub async fn update(&self, actor: &str, id: &str, patch: &DealPatch) -> Result<Deal, DealError> {
        let mut contention = Contention::default();
        loop {
            let (before, version) = self.load(id).await?;
            if before.state == DealState::PendingApproval {
                return Err(DealError::AwaitingApproval);
            }
            if !before.state.accepts_edits() {
                return Err(DealError::Closed);
            }
            if before.state.is_public() {
                return Err(DealError::NeedsApproval);
            }
            let after = apply_patch(&before, patch, self.clock.now())?;
            match self.write(actor, "deal.update", Some((&before, version)), &after, &[]).await {
                Ok(()) => return Ok(after),
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Moves a deal by one step, exactly once: the write is conditioned on the version
    /// the step was decided on. Cancelling a published deal is refused here: it needs a
    /// change request (which closing early needs too, and no caller closes through here
    /// but the window).
    pub async fn step(&self, actor: &str, id: &str, step: Step) -> Result<Deal, DealError> {
        let mut contention = Contention::default();
        loop {
            let (before, version) = self.load(id).await?;
            let mut after = before.clone();
            after.state = deal::next(before.state, step)?;
            if step == Step::Cancel && before.state.is_public() {
                return Err(DealError::NeedsApproval);
            }
            after.updated_at = self.clock.now();
            let action = format!("deal.{}", after.state.as_str());
            let effects = match after.state {
                DealState::Open => vec![opened_notice(&after, after.updated_at)?],
                _ => Vec::new(),
            };
            match self.write(actor, &action, Some((&before, version)), &after, &effects).await {
                Ok(()) => return Ok(after),
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Opens and closes the deals whose window says so; answers how many, the closed deals
    /// whose allocation has not started (closed by the window just now, or early with
    /// approval, or a start message lost) and the cancelled deals with holds to release.
    pub async fn follow_windows(&self) -> Result<Windows, DealError> {
        let now = self.clock.now();
        let mut windows = Windows::default();
        let mut cursor = None;
        loop {
            let page = self.store.query(&Query::secondary(INDEX).limit(100).after(cursor)).await?;
            for item in &page.items {
                let d: Deal = item.decode()?;
                let due = match d.state {
                    DealState::Published if d.terms.opens_at <= now => Some(Step::Open),
                    DealState::Open if d.terms.closes_at <= now => Some(Step::Close),
                    // Closed early with approval, or its start message was lost: the
                    // allocation's start is idempotent, and moves the deal on at once.
                    DealState::Closed => {
                        windows.to_allocate.push(d.id.clone());
                        None
                    }
                    // Cancelled with approval: the holds follow here.
                    DealState::Cancelled if !d.holds_released => {
                        windows.to_release.push(d.id.clone());
                        None
                    }
                    _ => None,
                };
                let Some(step) = due else { continue };
                match self.step("system", &d.id, step).await {
                    Ok(_) if step == Step::Open => windows.opened += 1,
                    Ok(_) => {
                        windows.closed += 1;
                        windows.to_allocate.push(d.id.clone());
                    }
                    // Someone else moved it first (an early close, a cancel).
                    Err(DealError::Transition(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(windows),
            }
        }
    }

    /// Deals oldest first, those in `states` only.
    pub async fn list(
        &self,
        states: &[DealState],
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<(Vec<Deal>, Option<Cursor>), StoreError> {
        let page = self.store.query(&Query::secondary(INDEX).limit(limit).after(cursor)).await?;
        let deals: Vec<Deal> = page.items.iter().map(Item::decode).collect::<Result<_, _>>()?;
        Ok((deals.into_iter().filter(|d| states.contains(&d.state)).collect(), page.next))
    }

    async fn load(&self, id: &str) -> Result<(Deal, u64), DealError> {
        let item = self.store.get(&deal_key(id)).await?.ok_or(DealError::NotFound)?;
        Ok((item.decode()?, item.version))
    }

    /// Writes `after` (new, or over `before` at its version) with an audit entry naming
    /// every field that changed.
    async fn write(
        &self,
        actor: &str,
        action: &str,
        before: Option<(&Deal, u64)>,
        after: &Deal,
        effects: &[Write],
    ) -> Result<(), StoreError> {
        let json = |d: &Deal| serde_json::to_value(d).map_err(|e| StoreError::Codec(e.to_string()));
        let before_json = before.map(|(d, _)| json(d)).transpose()?.unwrap_or(Value::Null);
        let event =
            Event::applied(actor, action, &format!("deal:{}", after.id), differences(&before_json, &json(after)?));
        let mut contention = Contention::default();
        loop {
            let condition = before.map_or(Condition::NotExists, |(_, version)| Condition::VersionIs(version));
            let mut writes = vec![Write::put(deal_item(after)?, condition)];
            writes.extend(effects.iter().cloned());
            writes.extend(self.audit.prepare(&event).await?);
            match self.store.transact(writes).await {
                // The audit head moved, not the deal: prepare the entry again.
                Err(StoreError::ConditionFailed { index, .. }) if index > 0 => contention.lost().await?,
                other => return other,
            }
        }
    }
}

/// The news of a deal's offering opening, for the investors who asked for it.
fn opened_notice(deal: &Deal, at: DateTime<Utc>) -> Result<Write, StoreError> {
    let notice = Notice::DealPublished {
        deal_id: deal.id.clone(),
        deal_name: deal.terms.building.name.clone(),
        unit_price: deal.terms.unit_price,
        supply: deal.terms.supply,
        opens_at: deal.terms.opens_at,
        closes_at: deal.terms.closes_at,
    };
    notices::write(&format!("deal:{}:open", deal.id), Audience::OfferingNews, notice, at)
}

/// The deal as the patch leaves it, or the first field the state or the rules refuse.
pub(crate) fn apply_patch(deal: &Deal, patch: &DealPatch, now: DateTime<Utc>) -> Result<Deal, DealError> {
    let frozen = deal.state.terms_frozen();
    let economic = [
        ("valuation", patch.valuation.is_some()),
        ("supply", patch.supply.is_some()),
        ("unit_price", patch.unit_price.is_some()),
        ("min_units", patch.min_units.is_some()),
        ("max_units", patch.max_units.is_some()),
        ("opens_at", patch.opens_at.is_some()),
        ("closes_at", patch.closes_at.is_some()),
    ];
    if frozen && let Some((field, _)) = economic.iter().find(|(_, present)| *present) {
        return Err(DealError::Frozen(field));
    }
    let mut next = deal.clone();
    let t = &mut next.terms;
    let b: &mut Building = &mut t.building;
    if let Some(v) = &patch.building_name {
        b.name = v.clone();
    }
    if let Some(v) = &patch.building_address {
        b.address = v.clone();
    }
    if let Some(v) = patch.building_type {
        b.kind = v;
    }
    if let Some(v) = patch.valuation {
        b.valuation = v;
    }
    if let Some(v) = &patch.documents {
        t.documents = v.clone();
    }
    t.supply = patch.supply.unwrap_or(t.supply);
    t.unit_price = patch.unit_price.unwrap_or(t.unit_price);
    t.min_units = patch.min_units.unwrap_or(t.min_units);
    t.max_units = patch.max_units.unwrap_or(t.max_units);
    t.opens_at = patch.opens_at.unwrap_or(t.opens_at);
    t.closes_at = patch.closes_at.unwrap_or(t.closes_at);
    let problems = deal::check_terms(t);
    if !problems.is_empty() {
        return Err(DealError::Invalid(problems));
    }
    next.updated_at = now;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn differences_name_each_changed_field_with_its_values() {
        let before = json!({"state": "draft", "terms": {"supply": 100, "documents": ["a"]}});
        let after = json!({"state": "draft", "terms": {"supply": 200, "documents": ["a", "b"]}});
        assert_eq!(differences(&before, &after), "terms.documents: [\"a\"] -> [\"a\",\"b\"]; terms.supply: 100 -> 200");
        assert_eq!(differences(&before, &before), "");
    }
}
