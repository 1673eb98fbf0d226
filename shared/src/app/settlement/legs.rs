//! A settlement's external calls: each a leg with a reference the partner knows it by and
//! a deadline, retried while the error is one to retry, stuck for an operator after.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::{Next, SettlementError, Settlements};
use crate::app::notices::{self, Audience, Notice};
use crate::domain::access::Role;
use crate::domain::settlement::{LegKind, LegStatus};
use crate::ports::partner::PartnerError;
use crate::ports::store::{Condition, Contention, Item, Key, StoreError, Write};

/// How long an external leg may stay unconfirmed before it is surfaced as stuck.
pub const LEG_DEADLINE: TimeDelta = TimeDelta::minutes(15);

/// An external call of a settlement, pending until the partner confirms it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leg {
    pub id: String,
    pub deal_id: String,
    pub kind: LegKind,
    /// The reference the partner knows it by.
    pub reference: String,
    pub status: LegStatus,
    pub attempts: u32,
    pub deadline: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub(super) fn leg_key(id: &str) -> Key {
    Key::new(format!("LEG#{id}"), "LEG")
}

fn leg_item(leg: &Leg) -> Result<Item, StoreError> {
    Ok(Item::new(leg_key(&leg.id), leg)?.with_index(format!("LEGS#{}", leg.deal_id), &leg.id))
}

pub(super) fn leg_id(deal_id: &str, kind: LegKind) -> String {
    match kind {
        LegKind::Proceeds => format!("{deal_id}.proceeds"),
        LegKind::Distribution => format!("{deal_id}.distribution"),
    }
}

/// The reference the partner knows a leg by.
pub(super) fn leg_reference(id: &str) -> String {
    id.replace('.', ":")
}

/// Finance's notice that a leg waits for them (one per time it gets stuck).
fn stuck_notice(leg: &Leg) -> Result<Write, StoreError> {
    let notice = Notice::SettlementLegStuck {
        deal_id: leg.deal_id.clone(),
        leg_id: leg.id.clone(),
        leg: leg.kind,
        error: leg.last_error.clone().unwrap_or_default(),
        since: leg.updated_at,
    };
    let id = format!("leg:{}:stuck:{}", leg.id, leg.attempts);
    notices::write(&id, Audience::Operators(Role::Finance), notice, leg.updated_at)
}

impl Settlements {
    /// The leg of `kind`, made pending with a deadline on first use.
    pub(super) async fn open_leg(&self, deal_id: &str, kind: LegKind) -> Result<Leg, SettlementError> {
        let id = leg_id(deal_id, kind);
        if let Some(leg) = self.leg(&id).await? {
            return Ok(leg);
        }
        let now = self.clock.now();
        let leg = Leg {
            reference: leg_reference(&id),
            id: id.clone(),
            deal_id: deal_id.to_owned(),
            kind,
            status: LegStatus::Pending,
            attempts: 0,
            deadline: now + LEG_DEADLINE,
            last_error: None,
            created_at: now,
            updated_at: now,
        };
        match self.store.put(leg_item(&leg)?, Condition::NotExists).await {
            Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        self.leg(&id).await?.ok_or(SettlementError::NotFound)
    }

    /// Records what became of a leg's call.
    pub(super) async fn mark_leg(&self, id: &str, change: impl Fn(&mut Leg)) -> Result<Leg, SettlementError> {
        let mut contention = Contention::default();
        loop {
            let item = self.store.get(&leg_key(id)).await?.ok_or(SettlementError::NotFound)?;
            let mut leg: Leg = item.decode()?;
            let was_stuck = leg.status == LegStatus::Stuck;
            change(&mut leg);
            leg.updated_at = self.clock.now();
            let mut writes = vec![Write::put(leg_item(&leg)?, Condition::VersionIs(item.version))];
            if leg.status == LegStatus::Stuck && !was_stuck {
                writes.push(stuck_notice(&leg)?);
            }
            match self.store.transact(writes).await {
                Ok(()) => return Ok(leg),
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A failed call: try again on the next advance if the error is one to retry and the
    /// deadline has not passed; otherwise the leg waits for an operator.
    pub(super) async fn leg_failed(&self, leg: &Leg, error: &PartnerError) -> Result<Next, SettlementError> {
        let stuck = LegStatus::stuck_after_failure(error.is_retryable(), leg.deadline, self.clock.now());
        let message = error.to_string();
        self.mark_leg(&leg.id, |l| {
            l.attempts += 1;
            l.last_error = Some(message.clone());
            if stuck {
                l.status = LegStatus::Stuck;
            }
        })
        .await?;
        tracing::warn!(leg = %leg.id, %error, stuck, "settlement leg not confirmed");
        Ok(Next::Wait)
    }

    /// A leg that waits for an operator: marked stuck once its deadline passed.
    pub(super) async fn waits_for_operator(&self, leg: &Leg) -> Result<bool, SettlementError> {
        match leg.status {
            LegStatus::Stuck | LegStatus::Rejected => Ok(true),
            LegStatus::Pending if leg.deadline <= self.clock.now() => {
                self.mark_leg(&leg.id, |l| {
                    l.status = LegStatus::Stuck;
                    l.last_error.get_or_insert_with(|| "past its deadline".into());
                })
                .await?;
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
