//! The second factor: TOTP enrolment (the secret sealed by the keyring), confirmation,
//! and the short-lived challenge that turns a correct password into a login.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::accounts::{User, user_item, user_key};
use super::audit::AuditLog;
use super::throttle::{self, Attempt, Throttle};
use crate::domain::totp;
use crate::ports::envelope::{EncryptionContext, Envelope, Sealing, random_bytes};
use crate::ports::keyring::KeyringError;
use crate::ports::store::{Condition, Item, Key, StoreError, Write};
use crate::ports::{Clock, Keyring, Store};

/// How long a login challenge waits for its code.
pub const CHALLENGE_LIFETIME: TimeDelta = TimeDelta::minutes(5);
/// Wrong codes a challenge takes before it is dead.
pub const CHALLENGE_ATTEMPTS: u8 = 5;
const ISSUER: &str = "DABS";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct TotpRecord {
    sealed: Envelope,
    confirmed: bool,
    last_step: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Challenge {
    user_id: String,
    attempts: u8,
}

/// What an authenticator app needs. The secret is shown once, at enrolment.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct Enrollment {
    pub secret: String,
    pub otpauth_uri: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MfaError {
    #[error("a second factor is already enrolled")]
    AlreadyEnrolled,
    #[error("no enrolment to confirm")]
    NotEnrolled,
    #[error("invalid code")]
    InvalidCode,
    #[error("invalid or expired challenge")]
    InvalidChallenge,
    /// Too many wrong codes for this account: no code is checked until then.
    #[error("too many wrong codes")]
    Locked { until: DateTime<Utc> },
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

fn totp_key(user_id: &str) -> Key {
    Key::new(format!("USER#{user_id}"), "TOTP")
}

fn challenge_key(id: &str) -> Key {
    Key::new(format!("CHALLENGE#{id}"), "LOGIN")
}

fn context(user_id: &str) -> EncryptionContext {
    EncryptionContext::from([("purpose".to_owned(), "totp".to_owned()), ("user".to_owned(), user_id.to_owned())])
}

/// Whether the user has a confirmed second factor.
pub async fn enrolled(store: &dyn Store, user_id: &str) -> Result<bool, StoreError> {
    Ok(match store.get(&totp_key(user_id)).await? {
        Some(item) => item.decode::<TotpRecord>()?.confirmed,
        None => false,
    })
}

fn throttle_scope(user_id: &str) -> String {
    format!("second-factor:{user_id}")
}

pub struct SecondFactor {
    store: Arc<dyn Store>,
    keyring: Arc<dyn Keyring>,
    clock: Arc<dyn Clock>,
    throttle: Throttle,
    audit: AuditLog,
}

impl SecondFactor {
    pub fn new(store: Arc<dyn Store>, keyring: Arc<dyn Keyring>, clock: Arc<dyn Clock>) -> Self {
        let throttle = Throttle::new(store.clone(), clock.clone());
        let audit = AuditLog::new(store.clone(), clock.clone());
        Self { store, keyring, clock, throttle, audit }
    }

    /// Starts (or restarts, while unconfirmed) a TOTP enrolment.
    pub async fn enroll(&self, user: &User) -> Result<Enrollment, MfaError> {
        let existing = self.store.get(&totp_key(&user.id)).await?;
        if let Some(item) = &existing
            && item.decode::<TotpRecord>()?.confirmed
        {
            return Err(MfaError::AlreadyEnrolled);
        }
        let secret = random_bytes::<20>()?;
        let record = TotpRecord {
            sealed: self.keyring.encrypt(&secret, &context(&user.id)).await?,
            confirmed: false,
            last_step: None,
        };
        let condition = existing.map_or(Condition::NotExists, |item| Condition::VersionIs(item.version));
        match self.store.put(Item::new(totp_key(&user.id), &record)?, condition).await {
            Ok(()) => {}
            Err(StoreError::ConditionFailed { .. }) => return Err(MfaError::AlreadyEnrolled),
            Err(e) => return Err(e.into()),
        }
        let secret = totp::base32(&secret);
        let email = super::accounts::email_of(self.keyring.as_ref(), user).await?;
        let otpauth_uri = totp::otpauth_uri(ISSUER, email.as_str(), &secret);
        Ok(Enrollment { secret, otpauth_uri })
    }

    /// Enrols a TOTP secret as already confirmed, for bootstrap and demo data; answers the
    /// secret in base32 for the seed file.
    pub async fn enroll_confirmed(&self, user_id: &str) -> Result<String, MfaError> {
        let secret = random_bytes::<20>()?;
        let record = TotpRecord {
            sealed: self.keyring.encrypt(&secret, &context(user_id)).await?,
            confirmed: true,
            last_step: None,
        };
        match self.store.put(Item::new(totp_key(user_id), &record)?, Condition::NotExists).await {
            Ok(()) => Ok(totp::base32(&secret)),
            Err(StoreError::ConditionFailed { .. }) => Err(MfaError::AlreadyEnrolled),
            Err(e) => Err(e.into()),
        }
    }

    /// Confirms the enrolment with a first code; the user reaches level 2.
    pub async fn confirm(&self, user_id: &str, code: &str) -> Result<(), MfaError> {
        let item = self.store.get(&totp_key(user_id)).await?.ok_or(MfaError::NotEnrolled)?;
        let record: TotpRecord = item.decode()?;
        if record.confirmed {
            return Err(MfaError::AlreadyEnrolled);
        }
        let step = self.checked(user_id, &record, code).await?;
        let profile = self.store.get(&user_key(user_id)).await?.ok_or(MfaError::NotEnrolled)?;
        let mut user: User = profile.decode()?;
        user.level = user.level.max(2);
        let confirmed = TotpRecord { confirmed: true, last_step: Some(step), ..record };
        self.store
            .transact(vec![
                Write::put(Item::new(totp_key(user_id), &confirmed)?, Condition::VersionIs(item.version)),
                Write::put(user_item(&user)?, Condition::VersionIs(profile.version)),
            ])
            .await
            .map_err(|e| match e {
                StoreError::ConditionFailed { .. } => MfaError::InvalidCode,
                e => e.into(),
            })
    }

    /// Whether the user must give a code to log in.
    pub async fn is_enrolled(&self, user_id: &str) -> Result<bool, MfaError> {
        Ok(enrolled(self.store.as_ref(), user_id).await?)
    }

    /// A challenge for a user whose password was right.
    pub async fn challenge(&self, user_id: &str) -> Result<String, MfaError> {
        let id = URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
        let item = Item::new(challenge_key(&id), &Challenge { user_id: user_id.to_owned(), attempts: 0 })?
            .expiring_at(self.clock.now() + CHALLENGE_LIFETIME);
        self.store.put(item, Condition::NotExists).await?;
        Ok(id)
    }

    /// Redeems a challenge with a code; answers the user id. A challenge is good once and
    /// dies after [`CHALLENGE_ATTEMPTS`] wrong codes; wrong codes also count against the
    /// account across challenges (see [`Self::checked`]).
    pub async fn redeem(&self, challenge: &str, code: &str) -> Result<String, MfaError> {
        let item = self.store.get(&challenge_key(challenge)).await?.ok_or(MfaError::InvalidChallenge)?;
        let state: Challenge = item.decode()?;
        if state.attempts >= CHALLENGE_ATTEMPTS {
            return Err(MfaError::InvalidChallenge);
        }
        let totp_item = self.store.get(&totp_key(&state.user_id)).await?.ok_or(MfaError::InvalidChallenge)?;
        let record: TotpRecord = totp_item.decode()?;
        match self.checked(&state.user_id, &record, code).await {
            Ok(step) => {
                let used = TotpRecord { last_step: Some(step), ..record };
                self.store
                    .transact(vec![
                        Write::delete(challenge_key(challenge), Condition::Exists),
                        Write::put(
                            Item::new(totp_key(&state.user_id), &used)?,
                            Condition::VersionIs(totp_item.version),
                        ),
                    ])
                    .await
                    .map_err(|e| match e {
                        StoreError::ConditionFailed { .. } => MfaError::InvalidChallenge,
                        e => e.into(),
                    })?;
                Ok(state.user_id)
            }
            Err(MfaError::InvalidCode) => {
                self.count_on_challenge(challenge).await?;
                Err(MfaError::InvalidCode)
            }
            Err(e) => Err(e),
        }
    }

    /// Counts a wrong code on its challenge; every racer's count lands.
    async fn count_on_challenge(&self, challenge: &str) -> Result<(), MfaError> {
        let counted = |c: &mut Challenge| c.attempts = c.attempts.saturating_add(1);
        crate::ports::store::update(self.store.as_ref(), &challenge_key(challenge), counted).await?;
        Ok(())
    }

    /// Checks a code under the account's second-factor throttle: the attempt is reserved
    /// first (refused while locked), a correct code resets the count, and a wrong one that
    /// reached the threshold is audited as a lockout.
    async fn checked(&self, user_id: &str, record: &TotpRecord, code: &str) -> Result<u64, MfaError> {
        let scope = throttle_scope(user_id);
        let locks = match self.throttle.reserve(&[(&scope, &throttle::SECOND_FACTOR)]).await? {
            Attempt::Refused { until } => return Err(MfaError::Locked { until }),
            Attempt::Allowed { locks } => locks,
        };
        match self.check(user_id, record, code).await {
            Ok(step) => {
                self.throttle.reset(&scope).await?;
                Ok(step)
            }
            Err(e) => {
                throttle::audit_locks(&self.audit, "mfa.lockout", &locks).await?;
                Err(e)
            }
        }
    }

    async fn check(&self, user_id: &str, record: &TotpRecord, code: &str) -> Result<u64, MfaError> {
        let secret = self.keyring.decrypt(&record.sealed, &context(user_id)).await?;
        totp::verify(&secret, code, self.clock.now().timestamp(), record.last_step).ok_or(MfaError::InvalidCode)
    }
}
