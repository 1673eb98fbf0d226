//! The `Mailer` port: outgoing email.

use async_trait::async_trait;

/// An email to send. Addresses are plain `local@domain` strings checked by [`Email::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    pub from: String,
    pub to: Vec<Recipient>,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    pub attachments: Vec<Attachment>,
    /// For news a reader may stop receiving: the `https` URL that stops it in one click
    /// (RFC 8058). Transactional mail has none.
    pub unsubscribe: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    /// The name to show beside the address, in any script.
    pub name: Option<String>,
    pub address: String,
}

impl Recipient {
    pub fn address(address: impl Into<String>) -> Self {
        Self { name: None, address: address.into() }
    }

    pub fn named(name: impl Into<String>, address: impl Into<String>) -> Self {
        Self { name: Some(name.into()), address: address.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub filename: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl Email {
    /// Refuses what no mail server would accept, or what would let a header be injected.
    pub fn validate(&self) -> Result<(), MailError> {
        let address_ok = |a: &str| {
            let mut parts = a.split('@');
            matches!((parts.next(), parts.next(), parts.next()), (Some(l), Some(d), None) if !l.is_empty() && d.contains('.'))
                && !a.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>' || c == ',')
        };
        if !address_ok(&self.from) {
            return Err(MailError::Invalid("from: not an email address".into()));
        }
        if self.to.is_empty() {
            return Err(MailError::Invalid("to: no recipient".into()));
        }
        if let Some(bad) = self.to.iter().position(|r| !address_ok(&r.address)) {
            return Err(MailError::Invalid(format!("to[{bad}]: not an email address")));
        }
        if let Some(bad) =
            self.to.iter().position(|r| r.name.as_deref().is_some_and(|n| n.chars().any(char::is_control)))
        {
            return Err(MailError::Invalid(format!("to[{bad}].name: control characters")));
        }
        if self.subject.chars().any(char::is_control) {
            return Err(MailError::Invalid("subject: control characters".into()));
        }
        // https, or http on this machine (the local runner).
        let secure = |url: &str| {
            url.starts_with("https://") || url.starts_with("http://127.0.0.1:") || url.starts_with("http://localhost:")
        };
        if let Some(url) = &self.unsubscribe
            && (!secure(url) || url.chars().any(|c| c.is_control() || c.is_whitespace() || c == '<' || c == '>'))
        {
            return Err(MailError::Invalid("unsubscribe: not an https URL (or http on loopback)".into()));
        }
        for (i, a) in self.attachments.iter().enumerate() {
            if a.filename.is_empty() || a.filename.chars().any(|c| c.is_control() || c == '"' || c == '/' || c == '\\')
            {
                return Err(MailError::Invalid(format!("attachments[{i}].filename: not a plain file name")));
            }
            if !a.content_type.contains('/') || a.content_type.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(MailError::Invalid(format!("attachments[{i}].content_type: not a media type")));
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid email: {0}")]
    Invalid(String),
    /// The mail service will not send it, for good (a suppressed address, a sender it does
    /// not send for): record it once; sending again will not help.
    #[error("the mail service refused the email: {0}")]
    Refused(String),
    #[error("mail service unavailable")]
    Unavailable(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl MailError {
    pub(crate) fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Unavailable(Box::new(e))
    }
}

#[async_trait]
pub trait Mailer: Send + Sync {
    /// Sends the email; returns the provider's message id.
    async fn send(&self, email: &Email) -> Result<String, MailError>;
}
