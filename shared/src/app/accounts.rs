//! Accounts: sign-up with email and password, and email verification by a code sent
//! through the `Mailer`. Answers never reveal whether an address is registered.
//!
//! No item key holds an address: a user is found by a keyed blind index of it
//! ([`EmailIndex`], HMAC-SHA256 under a key sealed by the data key), and the address itself
//! is sealed in the user item like other personal data.

use std::sync::Arc;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::passwords;
use crate::domain::credentials::{EmailAddress, Password};
use crate::http::FieldError;
use crate::ports::envelope::{EncryptionContext, Envelope, Sealing, random_bytes};
use crate::ports::keyring::KeyringError;
use crate::ports::mailer::{Email, MailError, Recipient};
use crate::ports::store::{Condition, Contention, Item, Key, StoreError, Write};
use crate::ports::{Clock, Ids, Keyring, Mailer, Store};

/// How long an emailed code is valid.
pub const CODE_LIFETIME: TimeDelta = TimeDelta::minutes(15);
/// Wrong codes accepted before the code is dead (sign up again for a new one).
pub const CODE_ATTEMPTS: u8 = 5;

/// A user as stored under `USER#<id>` / `PROFILE`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    /// The address, sealed by the data key ([`email_of`] opens it).
    pub email: Envelope,
    pub password_hash: String,
    pub email_verified: bool,
    /// Investor verification level: 1 registered, 2 second factor, 3 accredited.
    pub level: u8,
    pub roles: Vec<String>,
    /// For issuer users: the issuer they act for.
    #[serde(default)]
    pub issuer_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EmailOwner {
    user_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct EmailCode {
    /// SHA-256 of the user id and the code, hex.
    code_hash: String,
    attempts: u8,
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("invalid input")]
    Invalid(Vec<FieldError>),
    #[error("invalid or expired code")]
    InvalidCode,
    #[error("wrong email or password")]
    WrongCredentials,
    #[error("the email address is not verified yet")]
    EmailNotVerified,
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Mail(#[from] MailError),
    #[error(transparent)]
    Hash(#[from] passwords::HashError),
    #[error(transparent)]
    Keyring(#[from] KeyringError),
}

pub fn user_key(id: &str) -> Key {
    Key::new(format!("USER#{id}"), "PROFILE")
}

/// Every user item is also listed, oldest first, under the `USERS` index partition.
pub const USERS_INDEX: &str = "USERS";

/// The stored form of a user; always with its listing index.
pub fn user_item(user: &User) -> Result<Item, StoreError> {
    Ok(Item::new(user_key(&user.id), user)?
        .with_index(USERS_INDEX, format!("{}#{}", user.created_at.to_rfc3339(), user.id)))
}

/// Where the owner of an address is found: by its blind index, never the address.
fn email_key(blind: &str) -> Key {
    Key::new(format!("EMAIL#{blind}"), "USER")
}

fn email_context(user_id: &str) -> EncryptionContext {
    EncryptionContext::from([("purpose".to_owned(), "user-email".to_owned()), ("user".to_owned(), user_id.to_owned())])
}

/// `email` sealed for the user `user_id`.
pub async fn seal_email(keyring: &dyn Keyring, user_id: &str, email: &EmailAddress) -> Result<Envelope, KeyringError> {
    keyring.encrypt(email.as_str().as_bytes(), &email_context(user_id)).await
}

/// The user's address, unsealed.
pub async fn email_of(keyring: &dyn Keyring, user: &User) -> Result<EmailAddress, KeyringError> {
    let bytes = keyring.decrypt(&user.email, &email_context(&user.id)).await?;
    let text = String::from_utf8(bytes).map_err(|_| KeyringError::Crypto("a sealed address is not UTF-8".into()))?;
    EmailAddress::parse(&text).map_err(|_| KeyringError::Crypto("a sealed address does not parse".into()))
}

/// The keyed blind index of email addresses: HMAC-SHA256 of the trimmed, lower-cased
/// address under a random key kept in the table sealed by the data key, so that neither
/// item keys nor throttle scopes carry an address, and a copy of the table alone does
/// not tell whether an address is registered.
pub struct EmailIndex {
    key: aws_lc_rs::hmac::Key,
}

#[derive(Serialize, Deserialize)]
struct SealedSecret {
    sealed: Envelope,
}

fn index_key_key() -> Key {
    Key::new("EMAIL-INDEX", "KEY")
}

fn index_key_context() -> EncryptionContext {
    EncryptionContext::from([("purpose".to_owned(), "email-index".to_owned())])
}

impl EmailIndex {
    /// Unseals the index key, making it on first use (the first writer wins a race).
    pub async fn load(store: &dyn Store, keyring: &dyn Keyring) -> Result<Self, AccountError> {
        let secret = sealed_secret(store, keyring, index_key_key(), &index_key_context()).await?;
        Ok(Self { key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret) })
    }

    /// The blind index of `address` (hex).
    pub fn blind(&self, address: &str) -> String {
        let tag = aws_lc_rs::hmac::sign(&self.key, address.trim().to_lowercase().as_bytes());
        data_encoding::HEXLOWER.encode(tag.as_ref())
    }
}

/// A random 32-byte secret kept under `key` sealed by the data key with `context`, made on
/// first use (the first writer wins a race), unsealed.
pub async fn sealed_secret(
    store: &dyn Store,
    keyring: &dyn Keyring,
    key: Key,
    context: &EncryptionContext,
) -> Result<Vec<u8>, AccountError> {
    let stored = match store.get(&key).await? {
        Some(item) => item.decode::<SealedSecret>()?,
        None => {
            let made = SealedSecret { sealed: keyring.encrypt(&random_bytes::<32>()?, context).await? };
            match store.put(Item::new(key.clone(), &made)?, Condition::NotExists).await {
                Ok(()) => made,
                Err(StoreError::ConditionFailed { .. }) => {
                    store.get(&key).await?.ok_or(StoreError::Conflict)?.decode()?
                }
                Err(e) => return Err(e.into()),
            }
        }
    };
    Ok(keyring.decrypt(&stored.sealed, context).await?)
}

fn code_key(user_id: &str) -> Key {
    Key::new(format!("USER#{user_id}"), "EMAIL-CODE")
}

fn code_hash(user_id: &str, code: &str) -> String {
    let bytes = digest(&SHA256, format!("{user_id}:{code}").as_bytes());
    data_encoding::HEXLOWER.encode(bytes.as_ref())
}

/// The account use cases, over the ports they need.
pub struct Accounts {
    store: Arc<dyn Store>,
    keyring: Arc<dyn Keyring>,
    index: tokio::sync::OnceCell<EmailIndex>,
    mailer: Arc<dyn Mailer>,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
    mail_from: String,
}

impl Accounts {
    /// Mail goes out from `mail_from`.
    pub fn new(
        store: Arc<dyn Store>,
        keyring: Arc<dyn Keyring>,
        mailer: Arc<dyn Mailer>,
        clock: Arc<dyn Clock>,
        ids: Arc<dyn Ids>,
        mail_from: String,
    ) -> Self {
        Self { store, keyring, index: tokio::sync::OnceCell::new(), mailer, clock, ids, mail_from }
    }

    /// The blind index of `address`, for item keys and throttle scopes.
    pub async fn blind(&self, address: &str) -> Result<String, AccountError> {
        let index = self.index.get_or_try_init(|| EmailIndex::load(self.store.as_ref(), self.keyring.as_ref())).await?;
        Ok(index.blind(address))
    }

    /// The owner of `email`, if registered.
    async fn owner(&self, email: &EmailAddress) -> Result<Option<EmailOwner>, AccountError> {
        let key = email_key(&self.blind(email.as_str()).await?);
        Ok(self.store.get(&key).await?.map(|item| item.decode()).transpose()?)
    }

    /// The user's address, unsealed.
    pub async fn email_of(&self, user: &User) -> Result<EmailAddress, AccountError> {
        Ok(email_of(self.keyring.as_ref(), user).await?)
    }

    /// A new user's item and the index item that finds it by address, both to be created.
    async fn new_user_writes(&self, user: &User, email: &EmailAddress) -> Result<Vec<Write>, AccountError> {
        let owner = Item::new(email_key(&self.blind(email.as_str()).await?), &EmailOwner { user_id: user.id.clone() })?;
        Ok(vec![Write::put(user_item(user)?, Condition::NotExists), Write::put(owner, Condition::NotExists)])
    }

    /// Registers `email` with `password` and mails a verification code. For an address
    /// already registered and verified it mails a notice instead; for one registered but
    /// not verified it mails a fresh code. The caller cannot tell these apart.
    pub async fn sign_up(&self, email: &str, password: &str) -> Result<(), AccountError> {
        let email = EmailAddress::parse(email).map_err(|e| AccountError::Invalid(vec![e]))?;
        let password = Password::parse(password, &email).map_err(|e| AccountError::Invalid(vec![e]))?;
        // Hash first, whatever happens next, so every branch costs the same.
        let password_hash = passwords::hash(&password).await?;
        let mut contention = Contention::default();
        loop {
            if let Some(owner) = self.owner(&email).await? {
                let user = self.user(&owner.user_id).await?;
                return match user {
                    Some(user) if user.email_verified => self.mail_already_registered(&email).await,
                    Some(user) => self.issue_code(&user, &email).await,
                    None => Err(StoreError::Codec("email index points to no user".into()).into()),
                };
            }
            let id = self.ids.new_id("usr");
            let user = User {
                email: seal_email(self.keyring.as_ref(), &id, &email).await?,
                id,
                password_hash: password_hash.clone(),
                email_verified: false,
                level: 1,
                roles: Vec::new(),
                issuer_id: None,
                created_at: self.clock.now(),
            };
            match self.store.transact(self.new_user_writes(&user, &email).await?).await {
                Ok(()) => return self.issue_code(&user, &email).await,
                // The address was registered meanwhile: answer as for a known address.
                Err(StoreError::ConditionFailed { .. }) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Marks the address verified if `code` is the one mailed for it, and sets the account's
    /// password to `password`, given with the code. Whoever registered the address first
    /// (perhaps not its owner) chose a password the owner never sees: only the one who
    /// holds the mailed code chooses the password the account is opened with.
    pub async fn verify_email(&self, email: &str, code: &str, password: &str) -> Result<(), AccountError> {
        let email = EmailAddress::parse(email).map_err(|e| AccountError::Invalid(vec![e]))?;
        let password = Password::parse(password, &email).map_err(|e| AccountError::Invalid(vec![e]))?;
        let Some(owner) = self.owner(&email).await? else { return Err(AccountError::InvalidCode) };
        let Some(stored) = self.store.get(&code_key(&owner.user_id)).await? else {
            return Err(AccountError::InvalidCode);
        };
        let record: EmailCode = stored.decode()?;
        if record.attempts >= CODE_ATTEMPTS {
            return Err(AccountError::InvalidCode);
        }
        let matches: bool = code_hash(&owner.user_id, code.trim()).as_bytes().ct_eq(record.code_hash.as_bytes()).into();
        if !matches {
            self.count_wrong_code(&owner.user_id).await?;
            return Err(AccountError::InvalidCode);
        }
        let password_hash = passwords::hash(&password).await?;
        let Some(profile) = self.store.get(&user_key(&owner.user_id)).await? else {
            return Err(AccountError::InvalidCode);
        };
        let mut user: User = profile.decode()?;
        user.email_verified = true;
        user.password_hash = password_hash;
        let writes = vec![
            Write::put(user_item(&user)?, Condition::VersionIs(profile.version)),
            Write::delete(code_key(&user.id), Condition::Exists),
        ];
        match self.store.transact(writes).await {
            Ok(()) => Ok(()),
            Err(StoreError::ConditionFailed { .. }) => Err(AccountError::InvalidCode),
            Err(e) => Err(e.into()),
        }
    }

    /// Counts a wrong code against the mailed code; every racer's count lands.
    async fn count_wrong_code(&self, user_id: &str) -> Result<(), AccountError> {
        let spent = |c: &mut EmailCode| c.attempts = c.attempts.saturating_add(1);
        crate::ports::store::update(self.store.as_ref(), &code_key(user_id), spent).await?;
        Ok(())
    }

    /// Creates a verified account directly, for bootstrap and demo data (no email round
    /// trip). Refuses an address that is taken.
    pub async fn create_verified(
        &self,
        email: &str,
        password: &str,
        roles: &[&str],
        level: u8,
    ) -> Result<User, AccountError> {
        let email = EmailAddress::parse(email).map_err(|e| AccountError::Invalid(vec![e]))?;
        let password = Password::parse(password, &email).map_err(|e| AccountError::Invalid(vec![e]))?;
        let id = self.ids.new_id("usr");
        let user = User {
            email: seal_email(self.keyring.as_ref(), &id, &email).await?,
            id,
            password_hash: passwords::hash(&password).await?,
            email_verified: true,
            level,
            roles: roles.iter().map(|r| (*r).to_owned()).collect(),
            issuer_id: None,
            created_at: self.clock.now(),
        };
        self.store.transact(self.new_user_writes(&user, &email).await?).await.map_err(|e| match e {
            StoreError::ConditionFailed { .. } => {
                AccountError::Invalid(vec![FieldError::refused("email", "already registered")])
            }
            e => e.into(),
        })?;
        Ok(user)
    }

    /// The user whose email and password these are. An unknown address costs the same
    /// time as a wrong password and gets the same answer.
    pub async fn check_password(&self, email: &str, password: &str) -> Result<User, AccountError> {
        // Two reads either way: an unknown address reads a user that cannot exist, so the
        // store's latency does not tell the two apart.
        let owner = match EmailAddress::parse(email) {
            Ok(email) => self.owner(&email).await?,
            Err(_) => None,
        };
        let user = match owner {
            Some(owner) => self.user(&owner.user_id).await?,
            None => self.user("none").await?.filter(|_| false),
        };
        let matches =
            passwords::verify(&Password::attempt(password), user.as_ref().map(|u| u.password_hash.clone())).await;
        match user {
            Some(user) if matches && user.email_verified => Ok(user),
            Some(_) if matches => Err(AccountError::EmailNotVerified),
            _ => Err(AccountError::WrongCredentials),
        }
    }

    /// Replaces the password of `user_id` after checking the current one.
    pub async fn change_password(&self, user_id: &str, current: &str, new: &str) -> Result<(), AccountError> {
        let mut contention = Contention::default();
        loop {
            let Some(item) = self.store.get(&user_key(user_id)).await? else {
                return Err(AccountError::WrongCredentials);
            };
            let mut user: User = item.decode()?;
            if !passwords::verify(&Password::attempt(current), Some(user.password_hash.clone())).await {
                return Err(AccountError::Invalid(vec![FieldError::refused(
                    "current_password",
                    "is not your password",
                )]));
            }
            let new = Password::parse(new, &self.email_of(&user).await?).map_err(|mut e| {
                e.field = "new_password".into();
                AccountError::Invalid(vec![e])
            })?;
            user.password_hash = passwords::hash(&new).await?;
            match self.store.put(user_item(&user)?, Condition::VersionIs(item.version)).await {
                Ok(()) => return Ok(()),
                Err(StoreError::ConditionFailed { .. }) => contention.lost().await?,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub async fn user(&self, id: &str) -> Result<Option<User>, AccountError> {
        Ok(self.store.get(&user_key(id)).await?.map(|item| item.decode()).transpose()?)
    }

    async fn issue_code(&self, user: &User, email: &EmailAddress) -> Result<(), AccountError> {
        let mut digits = [0u8; 4];
        SystemRandom::new().fill(&mut digits).map_err(|_| StoreError::Codec("no randomness".into()))?;
        let code = format!("{:06}", u32::from_le_bytes(digits) % 1_000_000);
        let record = EmailCode { code_hash: code_hash(&user.id, &code), attempts: 0 };
        let item = Item::new(code_key(&user.id), &record)?.expiring_at(self.clock.now() + CODE_LIFETIME);
        self.store.put(item, Condition::None).await?;
        let email = Email {
            from: self.mail_from.clone(),
            to: vec![Recipient::address(email.as_str())],
            subject: "Your verification code".into(),
            text: format!(
                "Your verification code is {code}.\n\nIt expires in {} minutes. If you did not sign up, ignore this email.\n",
                CODE_LIFETIME.num_minutes()
            ),
            html: None,
            attachments: Vec::new(),
            unsubscribe: None,
        };
        self.mailer.send(&email).await?;
        Ok(())
    }

    async fn mail_already_registered(&self, email: &EmailAddress) -> Result<(), AccountError> {
        let notice = Email {
            from: self.mail_from.clone(),
            to: vec![Recipient::address(email.as_str())],
            subject: "Someone tried to sign up with your address".into(),
            text: "Someone tried to create an account with this email address, which already has one.\n\
                   If it was you, log in instead. If not, you can ignore this email.\n"
                .into(),
            html: None,
            attachments: Vec::new(),
            unsubscribe: None,
        };
        self.mailer.send(&notice).await?;
        Ok(())
    }
}
