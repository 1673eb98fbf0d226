//! RFC 5322 / MIME rendering of an [`Email`], shared by the SES adapter (raw content)
//! and the mail folder (`.eml` files), so both send byte-for-byte the same message.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};

use crate::ports::mailer::Email;

/// Renders the message. `boundary_seed` makes the MIME boundaries unique per message.
pub fn render(email: &Email, message_id: &str, date: DateTime<Utc>, boundary_seed: &str) -> Vec<u8> {
    let mut out = String::new();
    let header = |out: &mut String, name: &str, value: &str| {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    };
    header(&mut out, "From", &email.from);
    header(&mut out, "To", &email.to.join(", "));
    header(&mut out, "Subject", &encode_word(&email.subject));
    header(&mut out, "Date", &date.to_rfc2822());
    header(&mut out, "Message-ID", &format!("<{message_id}>"));
    header(&mut out, "MIME-Version", "1.0");

    let alternative = format!("alt-{boundary_seed}");
    let mixed = format!("mix-{boundary_seed}");
    let body = match &email.html {
        None => part("text/plain; charset=utf-8", email.text.as_bytes()),
        Some(html) => {
            let mut body = format!("Content-Type: multipart/alternative; boundary=\"{alternative}\"\r\n\r\n");
            for (content_type, content) in
                [("text/plain; charset=utf-8", &email.text), ("text/html; charset=utf-8", html)]
            {
                body.push_str(&format!("--{alternative}\r\n"));
                body.push_str(&part(content_type, content.as_bytes()));
            }
            body.push_str(&format!("--{alternative}--\r\n"));
            body
        }
    };
    if email.attachments.is_empty() {
        out.push_str(&body);
    } else {
        out.push_str(&format!("Content-Type: multipart/mixed; boundary=\"{mixed}\"\r\n\r\n--{mixed}\r\n"));
        out.push_str(&body);
        for attachment in &email.attachments {
            out.push_str(&format!("--{mixed}\r\n"));
            out.push_str(&format!("Content-Disposition: attachment; filename=\"{}\"\r\n", attachment.filename));
            out.push_str(&part(&attachment.content_type, &attachment.bytes));
        }
        out.push_str(&format!("--{mixed}--\r\n"));
    }
    out.into_bytes()
}

/// One base64-encoded MIME part, lines of 76 characters.
fn part(content_type: &str, content: &[u8]) -> String {
    let encoded = STANDARD.encode(content);
    let mut out = format!("Content-Type: {content_type}\r\nContent-Transfer-Encoding: base64\r\n\r\n");
    for line in encoded.as_bytes().chunks(76) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push_str("\r\n");
    }
    out
}

/// RFC 2047 encoding for a header that is not plain ASCII.
fn encode_word(text: &str) -> String {
    if text.is_ascii() { text.to_owned() } else { format!("=?utf-8?B?{}?=", STANDARD.encode(text)) }
}
