//! Issuers (building owners): an issuer user submits the company's onboarding; a deal
//! operator proposes approval or rejection and a second operator decides it
//! (maker-checker, [`crate::app::changes`]). Only approved issuers can have deals.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::accounts::{User, user_item, user_key};
use crate::ports::store::{Condition, Cursor, Item, Key, Query, StoreError, Write};
use crate::ports::{Clock, Ids, Store};

const INDEX: &str = "ISSUERS";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Contact {
    pub name: String,
    pub email: String,
    pub phone: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BankDetails {
    pub bank_name: String,
    pub account_name: String,
    pub account_number: String,
}

/// What an issuer user submits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Onboarding {
    pub company_name: String,
    /// Singapore Unique Entity Number, like `201912345K`.
    pub uen: String,
    pub contact: Contact,
    pub bank: BankDetails,
    /// References to supporting documents held elsewhere.
    #[serde(default)]
    pub documents: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IssuerStatus {
    PendingReview,
    Approved,
    Rejected,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Issuer {
    pub id: String,
    #[serde(flatten)]
    pub onboarding: Onboarding,
    pub status: IssuerStatus,
    pub submitted_by: String,
    pub submitted_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("invalid onboarding")]
    Invalid(Vec<(&'static str, String)>),
    #[error("the caller already acts for an issuer")]
    AlreadyOnboarded,
    #[error("an issuer with this UEN exists")]
    UenTaken,
    #[error("no such user")]
    NoUser,
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub fn issuer_key(id: &str) -> Key {
    Key::new(format!("ISSUER#{id}"), "PROFILE")
}

pub fn issuer_item(issuer: &Issuer) -> Result<Item, StoreError> {
    Ok(Item::new(issuer_key(&issuer.id), issuer)?
        .with_index(INDEX, format!("{}#{}", issuer.submitted_at.to_rfc3339(), issuer.id)))
}

fn uen_key(uen: &str) -> Key {
    Key::new(format!("UEN#{uen}"), "ISSUER")
}

/// A Singapore UEN: 8 digits and a letter (businesses), 9 digits and a letter (local
/// companies), or `T`/`S`/`R`, 2 digits, 2 letters, 4 digits and a letter (other entities).
pub fn is_uen(text: &str) -> bool {
    let b = text.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let upper = |c: &u8| c.is_ascii_uppercase();
    match b.len() {
        9 => digits(&b[..8]) && upper(&b[8]),
        10 if digits(&b[..9]) => upper(&b[9]),
        10 => {
            matches!(b[0], b'T' | b'S' | b'R')
                && digits(&b[1..3])
                && b[3..5].iter().all(upper)
                && digits(&b[5..9])
                && upper(&b[9])
        }
        _ => false,
    }
}

/// Every problem with an onboarding, by field.
pub fn check(onboarding: &Onboarding) -> Vec<(&'static str, String)> {
    let mut problems = Vec::new();
    let text = |s: &str, max: usize| !s.trim().is_empty() && s.chars().count() <= max;
    let mut need = |ok: bool, field: &'static str, message: &str| {
        if !ok {
            problems.push((field, message.to_owned()));
        }
    };
    need(text(&onboarding.company_name, 200), "company_name", "1 to 200 characters");
    need(is_uen(&onboarding.uen), "uen", "a Singapore UEN, like 201912345K");
    need(text(&onboarding.contact.name, 200), "contact.name", "1 to 200 characters");
    let email = &onboarding.contact.email;
    need(
        email.len() <= 254 && email.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.')),
        "contact.email",
        "an email address",
    );
    let phone_digits = onboarding.contact.phone.chars().filter(char::is_ascii_digit).count();
    need(
        (8..=15).contains(&phone_digits)
            && onboarding.contact.phone.chars().all(|c| c.is_ascii_digit() || "+ -".contains(c)),
        "contact.phone",
        "8 to 15 digits, with + - or spaces",
    );
    need(text(&onboarding.bank.bank_name, 100), "bank.bank_name", "1 to 100 characters");
    need(text(&onboarding.bank.account_name, 200), "bank.account_name", "1 to 200 characters");
    let number = &onboarding.bank.account_number;
    need(
        (6..=20).contains(&number.len()) && number.chars().all(|c| c.is_ascii_digit() || c == '-'),
        "bank.account_number",
        "6 to 20 digits or dashes",
    );
    need(
        onboarding.documents.len() <= 20 && onboarding.documents.iter().all(|d| text(d, 500)),
        "documents",
        "up to 20 references of 1 to 500 characters",
    );
    problems
}

pub struct Issuers {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
}

impl Issuers {
    pub fn for_platform(platform: &crate::Platform) -> Self {
        Self { store: platform.store.clone(), clock: platform.clock.clone(), ids: platform.ids.clone() }
    }

    /// Records the onboarding and makes the submitting user act for the new issuer.
    pub async fn submit(&self, user_id: &str, onboarding: Onboarding) -> Result<Issuer, IssuerError> {
        let problems = check(&onboarding);
        if !problems.is_empty() {
            return Err(IssuerError::Invalid(problems));
        }
        let issuer = Issuer {
            id: self.ids.new_id("iss"),
            onboarding,
            status: IssuerStatus::PendingReview,
            submitted_by: user_id.to_owned(),
            submitted_at: self.clock.now(),
            decided_at: None,
        };
        loop {
            let profile = self.store.get(&user_key(user_id)).await?.ok_or(IssuerError::NoUser)?;
            let mut user: User = profile.decode()?;
            if user.issuer_id.is_some() {
                return Err(IssuerError::AlreadyOnboarded);
            }
            user.issuer_id = Some(issuer.id.clone());
            let writes = vec![
                Write::put(Item::new(uen_key(&issuer.onboarding.uen), &issuer.id)?, Condition::NotExists),
                Write::put(issuer_item(&issuer)?, Condition::NotExists),
                Write::put(user_item(&user)?, Condition::VersionIs(profile.version)),
            ];
            match self.store.transact(writes).await {
                Ok(()) => return Ok(issuer),
                Err(StoreError::ConditionFailed { index: 0, .. }) => return Err(IssuerError::UenTaken),
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<Issuer>, StoreError> {
        self.store.get(&issuer_key(id)).await?.map(|item| item.decode()).transpose()
    }

    /// Oldest first.
    pub async fn list(
        &self,
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<(Vec<Issuer>, Option<Cursor>), StoreError> {
        let page = self.store.query(&Query::secondary(INDEX).limit(limit).after(cursor)).await?;
        Ok((page.items.iter().map(Item::decode).collect::<Result<_, _>>()?, page.next))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uens_of_each_form_are_recognised() {
        for good in ["53312345D", "201912345K", "T08LL1234A", "S99AB0001Z"] {
            assert!(is_uen(good), "{good}");
        }
        for bad in ["", "5331234D", "201912345k", "X08LL1234A", "T08L11234A", "2019123456K"] {
            assert!(!is_uen(bad), "{bad}");
        }
    }
}
