//! Delivery: a notice from the notify queue rendered, addressed and sent once (see
//! [`shared::app::notices`] for the states and the bound on resending), and fan-out
//! notices written out one per person, a page per message.

use std::sync::Arc;

use async_trait::async_trait;
use shared::app::accounts::{USERS_INDEX, User, email_of, user_key};
use shared::app::consumer::{BatchHandler, each_message};
use shared::app::failure::Permanence;
use shared::app::notices::{Audience, Claim, NoticeError, Notices, NotifyMessage};
use shared::ports::keyring::KeyringError;
use shared::ports::mailer::{Email, MailError, Recipient};
use shared::ports::queue::{Message, QueueName};
use shared::ports::store::{Query, StoreError, each};
use shared::ports::{Keyring, Mailer, Queue, Store};

use crate::render::{RenderError, Renderer};
use crate::statements::Audiences;
use crate::unsubscribe::Unsubscribe;

/// Per-person notices written per fan-out message.
pub const FAN_OUT_PAGE: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Notice(#[from] NoticeError),
    #[error(transparent)]
    Render(#[from] RenderError),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("the recipient's address does not open: {0}")]
    Keyring(#[from] KeyringError),
    #[error("{0}")]
    Account(shared::app::accounts::AccountError),
    #[error("the mail service is unavailable: {0}")]
    Mail(MailError),
    /// Claimed twice without an answer recorded: not sent a third time.
    #[error("notice {0} was not sent again after two claims; see its record")]
    GaveUp(String),
}

impl Permanence for DeliveryError {
    fn is_permanent(&self) -> bool {
        match self {
            Self::Notice(e) => e.is_permanent(),
            Self::Store(e) => e.is_permanent(),
            // A template that does not render will not render on the next try either.
            Self::Render(_) | Self::GaveUp(_) => true,
            Self::Keyring(_) | Self::Mail(_) | Self::Account(_) => false,
        }
    }
}

/// The notify queue's consumer.
pub struct Notifier {
    pub(crate) notices: Notices,
    pub(crate) renderer: Arc<Renderer>,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) keyring: Arc<dyn Keyring>,
    pub(crate) mailer: Arc<dyn Mailer>,
    pub(crate) queue: Arc<dyn Queue>,
    pub(crate) mail_from: String,
    pub(crate) audiences: Audiences,
    pub(crate) unsubscribe: Arc<Unsubscribe>,
}

#[async_trait]
impl BatchHandler for Notifier {
    async fn handle(&self, batch: &[Message]) -> Vec<String> {
        each_message(self.queue.as_ref(), QueueName::Notify, batch, |message| self.handle_one(message)).await
    }
}

impl Notifier {
    pub async fn handle_one(&self, message: NotifyMessage) -> Result<(), DeliveryError> {
        match message {
            NotifyMessage::Deliver { id } => self.deliver(&id).await,
            NotifyMessage::FanOut { id, after } => {
                let Some((parent, _)) = self.notices.get(&id).await? else {
                    return Err(NoticeError::NotFound(id).into());
                };
                if let Some(next) = self.notices.fan_out_page(&parent, after, FAN_OUT_PAGE, &self.audiences).await? {
                    let more = NotifyMessage::FanOut { id, after: Some(next) };
                    self.queue.send(QueueName::Notify, vec![more.body()]).await.map_err(NoticeError::from)?;
                }
                Ok(())
            }
        }
    }

    /// Renders notice `id` (a template error sends nothing and changes nothing), claims
    /// it, sends it and records how that ended.
    async fn deliver(&self, id: &str) -> Result<(), DeliveryError> {
        let Some((noted, _)) = self.notices.get(id).await? else {
            return Err(NoticeError::NotFound(id.to_owned()).into());
        };
        let rendered = self.renderer.email(&noted.notice)?;
        let noted = match self.notices.claim(id).await? {
            Claim::Send(noted) => noted,
            Claim::Done => return Ok(()),
            Claim::GaveUp(noted) => return Err(DeliveryError::GaveUp(noted.id)),
        };
        let to = self.recipients(&noted.audience).await?;
        if to.is_empty() {
            self.notices.finish(id, Err("no one to send it to".into())).await?;
            return Ok(());
        }
        // News may be stopped in one click; transactional notices may not.
        let unsubscribe = match (noted.notice.is_news(), noted.investor()) {
            (true, Some(investor)) => Some(self.unsubscribe.link(investor).await.map_err(DeliveryError::Account)?),
            _ => None,
        };
        let email = Email {
            from: self.mail_from.clone(),
            to,
            subject: rendered.subject,
            text: rendered.text,
            html: Some(rendered.html),
            attachments: Vec::new(),
            unsubscribe,
        };
        match self.mailer.send(&email).await {
            Ok(message_id) => self.notices.finish(id, Ok(message_id)).await?,
            // Refused for good (a suppressed or invalid address): recorded once, not retried.
            Err(MailError::Invalid(reason) | MailError::Refused(reason)) => {
                // The reason may name the address: it is recorded with the notice, not logged.
                tracing::warn!(notice = %id, kind = noted.notice.kind(), "the mail service refused the notice");
                self.notices.finish(id, Err(format!("refused: {reason}"))).await?;
            }
            Err(e) => return Err(DeliveryError::Mail(e)),
        }
        tracing::info!(notice = %id, kind = noted.notice.kind(), "notice sent");
        Ok(())
    }

    /// Where the notice goes: the investor's address, or every operator with the role.
    async fn recipients(&self, audience: &Audience) -> Result<Vec<Recipient>, DeliveryError> {
        let users = match audience {
            Audience::Investor(user_id) => match self.store.get(&user_key(user_id)).await? {
                Some(item) => vec![item.decode::<User>()?],
                None => Vec::new(),
            },
            Audience::Operators(role) => {
                let mut users = Vec::new();
                each(self.store.as_ref(), &Query::secondary(USERS_INDEX), |item| {
                    let user: User = item.decode()?;
                    if user.roles.iter().any(|r| r == role.as_str()) {
                        users.push(user);
                    }
                    Ok(())
                })
                .await?;
                users
            }
            Audience::OfferingNews | Audience::Investors => Vec::new(),
        };
        let mut to = Vec::with_capacity(users.len());
        for user in users.iter().filter(|u| u.email_verified) {
            to.push(Recipient::address(email_of(self.keyring.as_ref(), user).await?.as_str()));
        }
        Ok(to)
    }
}
