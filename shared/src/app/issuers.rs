//! Issuers (building owners): an issuer user submits the company's onboarding; a deal
//! operator proposes approval or rejection and a second operator decides it
//! (maker-checker, [`crate::app::changes`]). Only approved issuers can have deals.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::accounts::{User, user_item, user_key};
use crate::ports::envelope::{EncryptionContext, Envelope, Sealing};
use crate::ports::keyring::KeyringError;
use crate::ports::store::{Condition, Contention, Cursor, Item, Key, Query, StoreError, Write};
use crate::ports::{Clock, Ids, Keyring, Store};

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

/// An issuer as its users and the reviewing operators read it.
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

/// The contact person and the bank account: personal and financial data, stored sealed
/// by the data keyring (KMS in AWS) under a context naming the issuer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Private {
    contact: Contact,
    bank: BankDetails,
}

/// An issuer as stored: the private part sealed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredIssuer {
    pub id: String,
    pub company_name: String,
    pub uen: String,
    pub documents: Vec<String>,
    pub status: IssuerStatus,
    pub submitted_by: String,
    pub submitted_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    sealed: Envelope,
}

fn context(issuer_id: &str) -> EncryptionContext {
    EncryptionContext::from([
        ("purpose".to_owned(), "issuer-private".to_owned()),
        ("issuer".to_owned(), issuer_id.to_owned()),
    ])
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
    Keyring(#[from] KeyringError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

pub fn issuer_key(id: &str) -> Key {
    Key::new(format!("ISSUER#{id}"), "PROFILE")
}

pub fn issuer_item(issuer: &StoredIssuer) -> Result<Item, StoreError> {
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
    keyring: Arc<dyn Keyring>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
}

impl Issuers {
    pub fn new(store: Arc<dyn Store>, keyring: Arc<dyn Keyring>, clock: Arc<dyn Clock>, ids: Arc<dyn Ids>) -> Self {
        Self { store, keyring, clock, ids }
    }

    async fn seal(&self, issuer: &Issuer) -> Result<StoredIssuer, IssuerError> {
        let private = Private { contact: issuer.onboarding.contact.clone(), bank: issuer.onboarding.bank.clone() };
        let plaintext = serde_json::to_vec(&private).map_err(|e| StoreError::Codec(e.to_string()))?;
        Ok(StoredIssuer {
            id: issuer.id.clone(),
            company_name: issuer.onboarding.company_name.clone(),
            uen: issuer.onboarding.uen.clone(),
            documents: issuer.onboarding.documents.clone(),
            status: issuer.status,
            submitted_by: issuer.submitted_by.clone(),
            submitted_at: issuer.submitted_at,
            decided_at: issuer.decided_at,
            sealed: self.keyring.encrypt(&plaintext, &context(&issuer.id)).await?,
        })
    }

    async fn open(&self, stored: StoredIssuer) -> Result<Issuer, IssuerError> {
        let plaintext = self.keyring.decrypt(&stored.sealed, &context(&stored.id)).await?;
        let private: Private = serde_json::from_slice(&plaintext).map_err(|e| StoreError::Codec(e.to_string()))?;
        Ok(Issuer {
            id: stored.id,
            onboarding: Onboarding {
                company_name: stored.company_name,
                uen: stored.uen,
                contact: private.contact,
                bank: private.bank,
                documents: stored.documents,
            },
            status: stored.status,
            submitted_by: stored.submitted_by,
            submitted_at: stored.submitted_at,
            decided_at: stored.decided_at,
        })
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
        let stored = self.seal(&issuer).await?;
        let mut contention = Contention::default();
        loop {
            let profile = self.store.get(&user_key(user_id)).await?.ok_or(IssuerError::NoUser)?;
            let mut user: User = profile.decode()?;
            if user.issuer_id.is_some() {
                return Err(IssuerError::AlreadyOnboarded);
            }
            user.issuer_id = Some(issuer.id.clone());
            let writes = vec![
                Write::put(Item::new(uen_key(&issuer.onboarding.uen), &issuer.id)?, Condition::NotExists),
                Write::put(issuer_item(&stored)?, Condition::NotExists),
                Write::put(user_item(&user)?, Condition::VersionIs(profile.version)),
            ];
            match self.store.transact(writes).await {
                Ok(()) => return Ok(issuer),
                Err(StoreError::ConditionFailed { index: 0, .. }) => return Err(IssuerError::UenTaken),
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub async fn get(&self, id: &str) -> Result<Option<Issuer>, IssuerError> {
        match self.store.get(&issuer_key(id)).await? {
            Some(item) => Ok(Some(self.open(item.decode()?).await?)),
            None => Ok(None),
        }
    }

    /// Oldest first.
    pub async fn list(
        &self,
        limit: usize,
        cursor: Option<Cursor>,
    ) -> Result<(Vec<Issuer>, Option<Cursor>), IssuerError> {
        let page = self.store.query(&Query::secondary(INDEX).limit(limit).after(cursor)).await?;
        let mut issuers = Vec::with_capacity(page.items.len());
        for item in &page.items {
            issuers.push(self.open(item.decode()?).await?);
        }
        Ok((issuers, page.next))
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
