//! The `Mailer` port on SES v2, sending the same raw MIME the mail folder writes.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sesv2::Client;
use aws_sdk_sesv2::primitives::Blob;
use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage};
use tracing::instrument;

use crate::adapters::mime;
use crate::ports::mailer::{Email, MailError, Mailer};
use crate::ports::{Clock, Ids};

#[derive(Clone)]
pub struct SesMailer {
    client: Client,
    clock: Arc<dyn Clock>,
    ids: Arc<dyn Ids>,
}

impl SesMailer {
    pub fn new(client: Client, clock: Arc<dyn Clock>, ids: Arc<dyn Ids>) -> Self {
        Self { client, clock, ids }
    }
}

#[async_trait]
impl Mailer for SesMailer {
    #[instrument(skip_all, fields(recipients = email.to.len()))]
    async fn send(&self, email: &Email) -> Result<String, MailError> {
        email.validate()?;
        let id = self.ids.new_id("mail");
        let raw = mime::render(email, &format!("{id}@mail"), self.clock.now())?;
        let raw = RawMessage::builder().data(Blob::new(raw)).build().map_err(|e| MailError::Invalid(e.to_string()))?;
        let output = self
            .client
            .send_email()
            .from_email_address(&email.from)
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(email.to.iter().map(|r| r.address.clone()).collect()))
                    .build(),
            )
            .content(EmailContent::builder().raw(raw).build())
            .send()
            .await
            .map_err(|e| {
                let e = e.into_service_error();
                if e.is_message_rejected() || e.is_mail_from_domain_not_verified_exception() {
                    MailError::Refused(e.to_string())
                } else {
                    MailError::unavailable(e)
                }
            })?;
        Ok(output.message_id.unwrap_or(id))
    }
}
