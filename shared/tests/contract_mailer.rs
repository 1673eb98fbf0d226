//! The `Mailer` contract, run against the mail folder and SES v2; each fixture reads back
//! what was really sent (the `.eml` files, or the emulator's record of sent mail).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::PathBuf;
use std::sync::Arc;

use mail_parser::{MessageParser, MimeHeaders};
use shared::adapters::clock::UlidIds;
use shared::ports::Mailer;
use shared::ports::mailer::{Attachment, Email, MailError, Recipient};

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
                // The emulator builds its state while other tests change it, and now and
                // then answers 500 instead: asked again.
                let mut answer = reqwest::get(format!("{endpoint}/moto-api/data.json")).await.unwrap();
                for _ in 0..10 {
                    if answer.status().is_success() {
                        break;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    answer = reqwest::get(format!("{endpoint}/moto-api/data.json")).await.unwrap();
                }
                let data: serde_json::Value = answer.json().await.unwrap();
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

contract!(
    an_email_with_html_and_an_attachment_is_sent_as_mime,
    names_subjects_and_file_names_in_any_script_arrive_as_written,
    news_carries_a_one_click_unsubscribe_and_transactional_mail_none,
    an_invalid_email_is_refused_and_nothing_is_sent
);

fn notice(to: &str) -> Email {
    Email {
        from: FROM.into(),
        to: vec![Recipient::address(to)],
        subject: "Your allocation for Marina Tower".into(),
        text: "You were allocated 12 DABS.".into(),
        html: Some("<p>You were allocated <b>12</b> DABS.</p>".into()),
        attachments: vec![Attachment {
            filename: "notice.pdf".into(),
            content_type: "application/pdf".into(),
            bytes: b"%PDF-1.7 allocation notice".to_vec(),
        }],
        unsubscribe: None,
    }
}

/// The message `id` as it was sent, as a mail client reads it.
async fn sent(f: &Fixture, id: &str) -> String {
    let sent = f.outbox.sent().await;
    sent.into_iter().find(|(sent_id, _)| sent_id == id).expect("the sent message").1
}

async fn an_email_with_html_and_an_attachment_is_sent_as_mime(f: Fixture) {
    let id = f.mailer.send(&notice("investor@example.com")).await.unwrap();
    let raw = sent(&f, &id).await;
    let message = MessageParser::default().parse(raw.as_bytes()).expect("a MIME message");
    let to: Vec<_> = message.to().unwrap().iter().filter_map(|m| m.address()).collect();
    assert_eq!(to, ["investor@example.com"]);
    assert_eq!(message.subject(), Some("Your allocation for Marina Tower"));
    assert_eq!(message.body_text(0).as_deref(), Some("You were allocated 12 DABS."));
    assert_eq!(message.body_html(0).as_deref(), Some("<p>You were allocated <b>12</b> DABS.</p>"));
    let attachments: Vec<_> =
        message.attachments().map(|a| (a.attachment_name().map(str::to_owned), a.contents().to_vec())).collect();
    assert_eq!(attachments, [(Some("notice.pdf".to_owned()), b"%PDF-1.7 allocation notice".to_vec())]);
}

async fn names_subjects_and_file_names_in_any_script_arrive_as_written(f: Fixture) {
    let mut email = notice("zoe@example.com");
    email.to = vec![Recipient::named("Zoë Tán 陈", "zoe@example.com")];
    email.subject = "Zuteilung für Zoë: 12 DABS à S$1,000.00 — 分配".into();
    email.text = "Grüße, Zoë".into();
    email.attachments[0].filename = "Bestätigung für Zoë.pdf".into();
    let id = f.mailer.send(&email).await.unwrap();
    let raw = sent(&f, &id).await;
    assert!(raw.is_ascii(), "headers are encoded, not sent raw: {raw}");
    let message = MessageParser::default().parse(raw.as_bytes()).expect("a MIME message");
    let recipient = message.to().unwrap().first().unwrap();
    assert_eq!((recipient.name(), recipient.address()), (Some("Zoë Tán 陈"), Some("zoe@example.com")));
    assert_eq!(message.subject(), Some(email.subject.as_str()));
    assert_eq!(message.body_text(0).as_deref(), Some("Grüße, Zoë"));
    let names: Vec<_> = message.attachments().filter_map(|a| a.attachment_name().map(str::to_owned)).collect();
    assert_eq!(names, ["Bestätigung für Zoë.pdf"]);
}

async fn news_carries_a_one_click_unsubscribe_and_transactional_mail_none(f: Fixture) {
    let mut news = notice("investor@example.com");
    news.unsubscribe = Some("https://dabs.example.sg/v1/unsubscribe?token=abc".into());
    let raw = sent(&f, &f.mailer.send(&news).await.unwrap()).await;
    let message = MessageParser::default().parse(raw.as_bytes()).expect("a MIME message");
    let header = |name: &str| message.header_raw(name).map(|value| value.trim().to_owned());
    assert_eq!(header("List-Unsubscribe").as_deref(), Some("<https://dabs.example.sg/v1/unsubscribe?token=abc>"));
    assert_eq!(header("List-Unsubscribe-Post").as_deref(), Some("List-Unsubscribe=One-Click"));

    let raw = sent(&f, &f.mailer.send(&notice("investor@example.com")).await.unwrap()).await;
    let message = MessageParser::default().parse(raw.as_bytes()).expect("a MIME message");
    assert!(message.header_raw("List-Unsubscribe").is_none(), "{raw}");

    news.unsubscribe = Some("http://dabs.example.sg/unsubscribe".into());
    assert!(matches!(f.mailer.send(&news).await, Err(MailError::Invalid(_))), "only https");
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
