//! RFC 5322 / MIME rendering of an [`Email`] with `mail-builder`: encoded words (RFC 2047)
//! for a subject or a name that is not ASCII, encoded parameters for such a file name,
//! and the one-click unsubscribe headers (RFC 8058) where the email carries them. Shared by
//! the SES adapter (raw content) and the mail folder (`.eml` files).

use chrono::{DateTime, Utc};
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::raw::Raw;
use mail_builder::headers::url::URL;

use crate::ports::mailer::{Email, MailError};

/// Renders a validated email.
pub fn render(email: &Email, message_id: &str, date: DateTime<Utc>) -> Result<Vec<u8>, MailError> {
    let to = email.to.iter().map(|r| Address::new_address(r.name.as_deref(), r.address.as_str())).collect();
    let mut message = MessageBuilder::new()
        .from(email.from.as_str())
        .to(Address::new_list(to))
        .subject(email.subject.as_str())
        .date(date.timestamp())
        .message_id(message_id)
        .text_body(email.text.as_str());
    if let Some(html) = &email.html {
        message = message.html_body(html.as_str());
    }
    if let Some(url) = &email.unsubscribe {
        message = message
            .header("List-Unsubscribe", URL::new(url.as_str()))
            .header("List-Unsubscribe-Post", Raw::new("List-Unsubscribe=One-Click"));
    }
    for a in &email.attachments {
        message = message.attachment(a.content_type.as_str(), a.filename.as_str(), a.bytes.as_slice());
    }
    message.write_to_vec().map_err(MailError::unavailable)
}
