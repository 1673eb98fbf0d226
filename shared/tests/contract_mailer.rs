//! The `Mailer` contract, run against the mail folder and SES v2; each fixture reads back
//! what was really sent (the `.eml` files, or the emulator's record of sent mail).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use shared::adapters::clock::UlidIds;
use shared::ports::Mailer;
use shared::ports::mailer::{Attachment, Email, MailError};

const FROM: &str = "notices@dabs.example.sg";

enum Outbox {
    Folder(PathBuf),
    Emulator(String),
}

impl Outbox {
    /// (message id, raw MIME) of every sent email.
    async fn sent(&self) -> Vec<(String, String)> {
        match self {
            Self::Folder(dir) => {
                let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
                let mut sent: Vec<(String, String)> = entries
                    .map(|e| e.unwrap().path())
                    .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                    .map(|p| {
                        (p.file_stem().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap())
                    })
                    .collect();
                sent.sort();
                sent
            }
            Self::Emulator(endpoint) => {
                let data: serde_json::Value =
                    reqwest::get(format!("{endpoint}/moto-api/data.json")).await.unwrap().json().await.unwrap();
                data["ses"]["RawMessage"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|m| {
                        (
                            m["id"].as_str().unwrap_or_default().to_owned(),
                            m["raw_data"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            }
        }
    }
}

struct Fixture {
    mailer: Arc<dyn Mailer>,
    outbox: Outbox,
    _dir: tempfile::TempDir,
}

mod fixtures {
    use super::*;
    use shared::adapters::aws::SesMailer;
    use shared::adapters::embedded::FolderMailer;

    pub async fn embedded() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("mail");
        let mailer = FolderMailer::new(folder.clone(), support::clock(), Arc::new(UlidIds::default()));
        Fixture { mailer: Arc::new(mailer), outbox: Outbox::Folder(folder), _dir: dir }
    }

    pub async fn aws() -> Fixture {
        let client = aws_sdk_sesv2::Client::new(&support::aws_config().await);
        client.create_email_identity().email_identity(FROM).send().await.expect("verify the sender in the emulator");
        let mailer = SesMailer::new(client, support::clock(), Arc::new(UlidIds::default()));
        Fixture {
            mailer: Arc::new(mailer),
            outbox: Outbox::Emulator(support::endpoint()),
            _dir: tempfile::tempdir().unwrap(),
        }
    }
}

contract!(an_email_with_html_and_an_attachment_is_sent_as_mime, an_invalid_email_is_refused_and_nothing_is_sent);

fn notice(to: &str) -> Email {
    Email {
        from: FROM.into(),
        to: vec![to.into()],
        subject: "Your allocation for Marina Tower".into(),
        text: "You were allocated 12 DABS.".into(),
        html: Some("<p>You were allocated <b>12</b> DABS.</p>".into()),
        attachments: vec![Attachment {
            filename: "notice.pdf".into(),
            content_type: "application/pdf".into(),
            bytes: b"%PDF-1.7 allocation notice".to_vec(),
        }],
    }
}

/// The decoded base64 parts of a MIME message, in order.
fn decoded_parts(raw: &str) -> Vec<Vec<u8>> {
    raw.split("Content-Transfer-Encoding: base64\r\n\r\n")
        .skip(1)
        .map(|part| {
            let encoded: String = part.lines().take_while(|l| !l.is_empty() && !l.starts_with("--")).collect();
            STANDARD.decode(encoded).unwrap()
        })
        .collect()
}

async fn an_email_with_html_and_an_attachment_is_sent_as_mime(f: Fixture) {
    let id = f.mailer.send(&notice("investor@example.com")).await.unwrap();
    let sent = f.outbox.sent().await;
    let raw = &sent.iter().find(|(sent_id, _)| *sent_id == id).expect("the sent message").1;
    assert!(raw.contains("To: investor@example.com\r\n"), "{raw}");
    assert!(raw.contains("Subject: Your allocation for Marina Tower\r\n"), "{raw}");
    assert!(raw.contains("Content-Disposition: attachment; filename=\"notice.pdf\""), "{raw}");
    let parts = decoded_parts(raw);
    assert_eq!(
        parts,
        [
            b"You were allocated 12 DABS.".to_vec(),
            b"<p>You were allocated <b>12</b> DABS.</p>".to_vec(),
            b"%PDF-1.7 allocation notice".to_vec()
        ]
    );
}

async fn an_invalid_email_is_refused_and_nothing_is_sent(f: Fixture) {
    // Other tests share the emulator's outbox: count only this test's messages.
    let marker = support::unique("refused");
    let mine = |sent: Vec<(String, String)>| sent.iter().filter(|(_, raw)| raw.contains(&marker)).count();
    let with_marker = |to: &str| Email { subject: marker.clone(), ..notice(to) };
    for bad in ["not-an-address", "investor@example.com\r\nBcc: all@example.com", ""] {
        let err = f.mailer.send(&with_marker(bad)).await.unwrap_err();
        assert!(matches!(err, MailError::Invalid(_)), "{err:?}");
    }
    let mut injected = with_marker("investor@example.com");
    injected.subject = format!("{marker}\r\nBcc: all@example.com");
    assert!(matches!(f.mailer.send(&injected).await, Err(MailError::Invalid(_))));
    assert_eq!(mine(f.outbox.sent().await), 0);
    // The control: the same email with a valid address is sent and counted.
    f.mailer.send(&with_marker("investor@example.com")).await.unwrap();
    assert_eq!(mine(f.outbox.sent().await), 1);
}
