//! Investor onboarding with Singpass Myinfo: the authorization (PAR) and its callback,
//! the accredited-investor assessment from the verified data and the investor's
//! declaration, the explicit opt-in to accredited-investor status (and opting out), the
//! encrypted transaction log of every exchange with Singpass, break-glass reading and
//! erasure of a person's data, and the re-wrap of their data keys.

pub mod client;
pub mod keys;
pub mod rewrap;
pub mod vault;

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::client::{Exchange, FapiClient, FapiError, Pushed};
use self::keys::{KeysError, MyinfoKeys};
use self::vault::{Sealed, Vault, VaultError};
use crate::app::accounts::{User, user_key};
use crate::app::audit::{AuditLog, Event};
use crate::app::changes::{Change, ChangeError, ChangeRequests, ReviewAttachment};
use crate::domain::access::{self, Action, LEVEL_ACCREDITED, LEVEL_SECOND_FACTOR, Resource, Role, Subject};
use crate::domain::accreditation::{self, Assessment, Criterion, Declaration, Inputs, Outcome, Verified};
use crate::ports::store::{Condition, Item, Key, Query, StoreError};
use crate::ports::{Clock, Ids, Keyring, Store};

/// How long an authorization may take from start to callback; its state is used once.
pub const FLOW_LIFE: TimeDelta = TimeDelta::minutes(10);

/// The accredited-investor notice an investor opts in to; a new text takes a new version.
pub const NOTICE_VERSION: &str = "2026-12-01";
pub const NOTICE_TEXT: &str = "As an accredited investor you will be offered investments that are not \
available to retail investors. Such offers are exempt from the prospectus requirements of the \
Securities and Futures Act (s275): you will not receive a prospectus registered with the Monetary \
Authority of Singapore, and several investor protections that apply to retail investors will not \
apply to you. You may withdraw this consent at any time; from then on you will not be able to \
subscribe to new offerings on this platform.";

#[derive(Debug, thiserror::Error)]
pub enum OnboardingError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeysError),
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Singpass(#[from] FapiError),
    /// The callback's `state` is unknown, used or expired.
    #[error("the authorization is unknown, already used or expired")]
    UnknownFlow,
    #[error("{0}")]
    Conflict(&'static str),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Forbidden(&'static str),
    #[error(transparent)]
    Change(#[from] ChangeError),
}

/// NRIC or FIN as a person reads it: the first letter, the last three digits and the
/// check letter (`S****567A`).
pub fn mask_nric(nric: &str) -> String {
    let chars: Vec<char> = nric.chars().collect();
    if chars.len() < 5 {
        return "*".repeat(chars.len());
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{}{}{tail}", chars[0], "*".repeat(chars.len() - 5))
}

/// Exact cents from a Myinfo amount (a JSON number or string, at most two decimals), read
/// from its decimal text: never through a float.
fn cents(value: Option<&Value>) -> Option<u64> {
    let text = match value? {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    crate::domain::money::parse_cents(&text).ok()
}

/// What the assessment takes from the verified person data.
pub fn verified_of(person: &Value) -> Verified {
    let noa = person.get("noa-basic");
    let income = cents(noa.and_then(|n| n.pointer("/amount/value")));
    let year = noa
        .and_then(|n| n.pointer("/yearofassessment/value"))
        .and_then(|v| v.as_str().map(str::to_owned).or_else(|| v.as_i64().map(|y| y.to_string())))
        .and_then(|y| y.parse::<i32>().ok());
    let cpf = person.get("cpfbalances").map(|balances| {
        ["oa", "sa", "ma", "ra"].iter().filter_map(|a| cents(balances.pointer(&format!("/{a}/value")))).sum()
    });
    let owns_private = person.pointer("/ownerprivate/value").and_then(Value::as_bool).unwrap_or(false);
    let owns_hdb = person.get("hdbownership").and_then(Value::as_array).is_some_and(|a| !a.is_empty());
    Verified { income: income.zip(year), cpf_balances: cpf, owns_property: owns_private || owns_hdb }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Flow {
    id: String,
    user_id: String,
    pushed: Pushed,
    declared: Option<Declaration>,
    expires_at: DateTime<Utc>,
}

fn flow_key(state: &str) -> Key {
    let hash = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, state.as_bytes());
    Key::new(format!("MYINFO#FLOW#{}", data_encoding::HEXLOWER.encode(hash.as_ref())), "FLOW")
}

/// One exchange with Singpass as logged: personal data sealed under the person's key.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LogEntry {
    pub id: String,
    pub user_id: String,
    pub flow_id: String,
    /// `par`, `token`, `userinfo`, or `callback` (the redirect back from Singpass).
    pub step: String,
    pub method: String,
    pub url: String,
    /// The HTTP status Singpass answered (0: no answer).
    pub status: u16,
    /// `ok`, or the OAuth error or the check that failed.
    pub outcome: String,
    pub at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub personal: Option<Sealed>,
}

fn log_partition(user_id: &str) -> String {
    format!("MYINFO#LOG#{user_id}")
}

/// An investor's accredited-investor record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accreditation {
    pub user_id: String,
    pub flow_id: String,
    pub assessed_at: DateTime<Utc>,
    pub outcome: Outcome,
    pub met: Vec<Criterion>,
    pub nric_masked: String,
    /// The person data, the inputs and the figures, sealed under the person's key.
    pub sealed: Sealed,
    pub opted_in: Option<OptIn>,
    pub opted_out_at: Option<DateTime<Utc>>,
    /// The manual review proposed for an investor who did not pass.
    pub review: Option<String>,
    /// The person's key was erased (PDPA): `sealed` can no longer be opened.
    #[serde(default)]
    pub erased_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct OptIn {
    pub notice_version: String,
    pub at: DateTime<Utc>,
}

fn accreditation_key(user_id: &str) -> Key {
    Key::new(format!("USER#{user_id}"), "ACCREDITATION")
}

const SEALED_LABEL: &str = "accreditation";

/// What a callback came to.
#[derive(Debug, Clone)]
pub struct Completed {
    pub user_id: String,
    pub outcome: Outcome,
    pub met: Vec<Criterion>,
    pub nric_masked: String,
}

/// The result of opting in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptedIn {
    /// Level 3 now.
    Accredited,
    /// Not passed: a manual review was proposed.
    InReview,
}

/// The onboarding use cases.
pub struct Onboarding {
    pub store: Arc<dyn Store>,
    pub keyring: Arc<dyn Keyring>,
    pub clock: Arc<dyn Clock>,
    pub ids: Arc<dyn Ids>,
    pub client: Arc<FapiClient>,
}

impl Onboarding {
    fn vault(&self) -> Vault {
        Vault { store: self.store.clone(), keyring: self.keyring.clone(), clock: self.clock.clone() }
    }

    fn audit(&self) -> AuditLog {
        AuditLog::new(self.store.clone(), self.clock.clone())
    }

    async fn keys(&self) -> Result<client::ClientKeys, KeysError> {
        MyinfoKeys::load(self.store.as_ref(), self.keyring.as_ref(), self.clock.as_ref(), self.ids.as_ref()).await
    }

    /// Writes the exchanges to the transaction log, sealing their personal data.
    async fn log(&self, user_id: &str, flow_id: &str, exchanges: Vec<Exchange>) -> Result<(), OnboardingError> {
        let vault = self.vault();
        for exchange in exchanges {
            let id = self.ids.new_id("mil");
            let personal = match &exchange.personal {
                Some(data) => Some(vault.seal(user_id, &id, data).await?),
                None => None,
            };
            let entry = LogEntry {
                user_id: user_id.to_owned(),
                flow_id: flow_id.to_owned(),
                step: exchange.step.to_owned(),
                method: exchange.method.to_owned(),
                url: exchange.url,
                status: exchange.status,
                outcome: exchange.outcome,
                at: exchange.at,
                personal,
                id,
            };
            let key = Key::new(log_partition(user_id), format!("{}#{}", entry.at.to_rfc3339(), entry.id));
            self.store.put(Item::new(key, &entry)?, Condition::NotExists).await?;
        }
        Ok(())
    }

    /// Starts onboarding: pushes the authorization request and answers where to send the
    /// investor, and until when.
    pub async fn start(
        &self,
        user_id: &str,
        declared: Option<Declaration>,
    ) -> Result<(String, DateTime<Utc>), OnboardingError> {
        let keys = self.keys().await?;
        let now = self.clock.now();
        let flow_id = self.ids.new_id("mif");
        let mut exchanges = Vec::new();
        let pushed = self.client.push(&keys, now, &mut exchanges).await;
        self.log(user_id, &flow_id, exchanges).await?;
        let pushed = pushed?;
        let flow = Flow {
            id: flow_id,
            user_id: user_id.to_owned(),
            declared,
            expires_at: now + FLOW_LIFE,
            pushed: pushed.clone(),
        };
        let item = Item::new(flow_key(&pushed.state), &flow)?.expiring_at(flow.expires_at);
        self.store.put(item, Condition::NotExists).await?;
        tracing::info!(flow = %flow.id, "myinfo authorization pushed");
        Ok((pushed.authorize_url, flow.expires_at))
    }

    /// Takes the flow of `state` once: a second callback with it finds nothing.
    async fn take_flow(&self, state: &str) -> Result<Flow, OnboardingError> {
        let key = flow_key(state);
        let item = self.store.get(&key).await?.ok_or(OnboardingError::UnknownFlow)?;
        let flow: Flow = item.decode()?;
        match self.store.delete(key, Condition::VersionIs(item.version)).await {
            Ok(()) if flow.expires_at > self.clock.now() => Ok(flow),
            Ok(()) | Err(StoreError::ConditionFailed { .. }) => Err(OnboardingError::UnknownFlow),
            Err(e) => Err(e.into()),
        }
    }

    /// The investor came back from Singpass with an error (they cancelled, or Singpass
    /// refused): logged, the flow is spent.
    pub async fn refused(&self, state: &str, error: &str) -> Result<(), OnboardingError> {
        let flow = self.take_flow(state).await?;
        let exchange = Exchange {
            step: "callback",
            method: "GET",
            url: self.client.config().redirect_uri.clone(),
            status: 0,
            outcome: error.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '_').take(64).collect(),
            at: self.clock.now(),
            personal: None,
        };
        self.log(&flow.user_id, &flow.id, vec![exchange]).await
    }

    /// Completes onboarding: exchanges the code, verifies and decrypts the ID token and
    /// the person data, and stores the assessment.
    pub async fn callback(&self, code: &str, state: &str) -> Result<Completed, OnboardingError> {
        let flow = self.take_flow(state).await?;
        let keys = self.keys().await?;
        let now = self.clock.now();
        let mut exchanges = Vec::new();
        let obtained = self.client.obtain(&keys, code, &flow.pushed, now, &mut exchanges).await;
        self.log(&flow.user_id, &flow.id, exchanges).await?;
        let obtained = match obtained {
            Ok(obtained) => obtained,
            Err(error) => {
                tracing::warn!(flow = %flow.id, outcome = %error.code(), "myinfo exchange failed");
                return Err(error.into());
            }
        };
        let nric = obtained.person.pointer("/uinfin/value").and_then(Value::as_str).unwrap_or_default();
        let nric_masked = mask_nric(nric);
        let inputs = Inputs { verified: verified_of(&obtained.person), declared: flow.declared };
        let assessment = accreditation::assess(&inputs, now.date_naive());
        let sealed = self
            .vault()
            .seal(
                &flow.user_id,
                SEALED_LABEL,
                &serde_json::json!({ "person": obtained.person, "inputs": inputs, "assessment": assessment }),
            )
            .await?;
        let previous = self.accreditation(&flow.user_id).await?;
        let record = Accreditation {
            user_id: flow.user_id.clone(),
            flow_id: flow.id.clone(),
            assessed_at: now,
            outcome: assessment.outcome,
            met: assessment.met.clone(),
            nric_masked: nric_masked.clone(),
            sealed,
            // An opt-in stands until an opt-out clears it.
            opted_in: previous.as_ref().and_then(|p| p.opted_in.clone()),
            opted_out_at: previous.as_ref().and_then(|p| p.opted_out_at),
            review: None,
            erased_at: None,
        };
        self.store.put(Item::new(accreditation_key(&flow.user_id), &record)?, Condition::None).await?;
        self.event(&flow.user_id, "myinfo.assessed", &format!("{:?}", assessment.outcome).to_lowercase()).await?;
        tracing::info!(flow = %flow.id, outcome = ?assessment.outcome, "myinfo assessment stored");
        Ok(Completed { user_id: flow.user_id, outcome: assessment.outcome, met: assessment.met, nric_masked })
    }

    async fn event(&self, user_id: &str, action: &str, decision: &str) -> Result<(), StoreError> {
        self.audit()
            .append(Event {
                actor: user_id.to_owned(),
                action: action.to_owned(),
                target: format!("user:{user_id}"),
                decision: decision.to_owned(),
                reason: String::new(),
            })
            .await
    }

    pub async fn accreditation(&self, user_id: &str) -> Result<Option<Accreditation>, StoreError> {
        self.store.get(&accreditation_key(user_id)).await?.map(|i| i.decode()).transpose()
    }

    /// Opts in to accredited-investor status under the notice `notice_version`: level 3 if
    /// the assessment passed; otherwise the manual review is proposed, with the
    /// assessment's summary attached.
    pub async fn opt_in(&self, user_id: &str, notice_version: &str) -> Result<OptedIn, OnboardingError> {
        if notice_version != NOTICE_VERSION {
            return Err(OnboardingError::Conflict("the notice has a newer version: read it again"));
        }
        let key = accreditation_key(user_id);
        let item = self.store.get(&key).await?.ok_or(OnboardingError::NotFound)?;
        let mut record: Accreditation = item.decode()?;
        let now = self.clock.now();
        record.opted_in = Some(OptIn { notice_version: notice_version.to_owned(), at: now });
        record.opted_out_at = None;
        let passed = record.outcome == Outcome::Passed;
        if !passed && record.review.is_none() {
            let system = Subject {
                user_id: "system:myinfo",
                roles: &[Role::MemberManagement],
                level: LEVEL_SECOND_FACTOR,
                issuer_id: None,
                second_factor: true,
            };
            let attachment = ReviewAttachment {
                outcome: record.outcome,
                met: record.met.clone(),
                nric_masked: record.nric_masked.clone(),
                assessed_at: record.assessed_at,
            };
            let change =
                Change::SetLevel { user_id: user_id.to_owned(), level: LEVEL_ACCREDITED, myinfo: Some(attachment) };
            let changes = ChangeRequests::new(self.store.clone(), self.clock.clone(), self.ids.clone());
            match changes.propose(&system, change).await {
                Ok(request) => record.review = Some(request.id),
                Err(ChangeError::DuplicatePending) => {}
                Err(e) => return Err(e.into()),
            }
        }
        match self.store.put(Item::new(key, &record)?, Condition::VersionIs(item.version)).await {
            Err(StoreError::ConditionFailed { .. }) => {
                return Err(OnboardingError::Conflict("changed meanwhile: retry"));
            }
            other => other?,
        }
        self.event(user_id, "accreditation.opt-in", &format!("notice {notice_version}")).await?;
        if passed {
            self.set_level(user_id, LEVEL_ACCREDITED).await?;
            Ok(OptedIn::Accredited)
        } else {
            Ok(OptedIn::InReview)
        }
    }

    /// Opts out: level 3 is withdrawn at once; new subscriptions are refused (open ones
    /// stay).
    pub async fn opt_out(&self, user_id: &str) -> Result<(), OnboardingError> {
        let now = self.clock.now();
        crate::ports::store::update(self.store.as_ref(), &accreditation_key(user_id), |record: &mut Accreditation| {
            record.opted_in = None;
            record.opted_out_at = Some(now);
        })
        .await?;
        self.set_level(user_id, LEVEL_SECOND_FACTOR).await?;
        self.event(user_id, "accreditation.opt-out", "withdrawn").await?;
        Ok(())
    }

    async fn set_level(&self, user_id: &str, level: u8) -> Result<(), StoreError> {
        crate::ports::store::update(self.store.as_ref(), &user_key(user_id), |user: &mut User| {
            // Opting out lowers only an accredited investor; opting in raises only a
            // verified one (level 2: second factor enrolled).
            if level == LEVEL_ACCREDITED && user.level == LEVEL_SECOND_FACTOR
                || level == LEVEL_SECOND_FACTOR && user.level == LEVEL_ACCREDITED
            {
                user.level = level;
            }
        })
        .await
        .map(|_| ())
    }

    /// Checks a break-glass action and audits it, allowed or denied, with its reason.
    async fn break_glass(
        &self,
        actor: &Subject<'_>,
        action: &str,
        user_id: &str,
        reason: &str,
    ) -> Result<(), OnboardingError> {
        let decision = access::decide(actor, Action::RevealPersonalData, Resource::None);
        self.audit()
            .append(Event {
                actor: actor.user_id.to_owned(),
                action: action.to_owned(),
                target: format!("user:{user_id}"),
                decision: if decision.is_allowed() { "allowed".into() } else { "denied".into() },
                reason: reason.to_owned(),
            })
            .await?;
        if decision.is_allowed() { Ok(()) } else { Err(OnboardingError::Forbidden(decision.reason())) }
    }

    /// Break-glass: a data-protection operator reads a person's decrypted Myinfo record,
    /// with a reason; audited whether allowed or not.
    pub async fn reveal(&self, actor: &Subject<'_>, user_id: &str, reason: &str) -> Result<Value, OnboardingError> {
        self.break_glass(actor, "myinfo.reveal", user_id, reason).await?;
        let record = self.accreditation(user_id).await?.ok_or(OnboardingError::NotFound)?;
        Ok(self.vault().open(user_id, SEALED_LABEL, &record.sealed).await?)
    }

    /// PDPA erasure: the person's data key is deleted, so their Myinfo data and every log
    /// entry's personal part are unreadable; the record keeps only what is not personal.
    pub async fn erase(&self, actor: &Subject<'_>, user_id: &str, reason: &str) -> Result<bool, OnboardingError> {
        self.break_glass(actor, "myinfo.erase", user_id, reason).await?;
        let erased = self.vault().erase(user_id).await?;
        let now = self.clock.now();
        crate::ports::store::update(self.store.as_ref(), &accreditation_key(user_id), |record: &mut Accreditation| {
            record.erased_at.get_or_insert(now);
        })
        .await?;
        Ok(erased)
    }

    pub fn rewrap(&self, queue: Arc<dyn crate::ports::Queue>) -> rewrap::Rewrap {
        rewrap::Rewrap { vault: self.vault(), queue, clock: self.clock.clone(), ids: self.ids.clone() }
    }

    /// The investor's transaction log, newest first (personal parts stay sealed).
    pub async fn log_of(&self, user_id: &str, limit: usize) -> Result<Vec<LogEntry>, StoreError> {
        let page = self.store.query(&Query::partition(log_partition(user_id)).descending().limit(limit)).await?;
        page.items.iter().map(Item::decode).collect()
    }
}

/// The assessment a record holds, opened (for the investor's own view of their figures).
pub async fn assessment_of(vault: &Vault, record: &Accreditation) -> Result<Assessment, VaultError> {
    let opened = vault.open(&record.user_id, SEALED_LABEL, &record.sealed).await?;
    serde_json::from_value(opened.get("assessment").cloned().unwrap_or_default())
        .map_err(|e| VaultError::Store(StoreError::Codec(e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_nric_shows_its_first_letter_and_last_four_characters_only() {
        assert_eq!(mask_nric("S1234567A"), "S****567A");
        assert_eq!(mask_nric("T0112345C"), "T****345C");
        assert_eq!(mask_nric("S12"), "***");
    }

    #[test]
    fn myinfo_amounts_become_exact_cents_without_a_float() {
        let person = serde_json::json!({
            "noa-basic": { "amount": { "value": 350000.10 }, "yearofassessment": { "value": "2026" } },
            "cpfbalances": { "oa": { "value": 1000.05 }, "sa": { "value": "2000.10" }, "ma": { "value": 0 } },
            "ownerprivate": { "value": false }, "hdbownership": [{ "noofowners": { "value": 2 } }],
        });
        let verified = verified_of(&person);
        assert_eq!(verified.income, Some((35_000_010, 2026)));
        assert_eq!(verified.cpf_balances, Some(300_015));
        assert!(verified.owns_property, "an HDB flat counts");
        assert_eq!(verified_of(&serde_json::json!({})), Verified::default());
    }
}
